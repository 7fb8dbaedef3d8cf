"""Train one config under several attention settings and compare them side by side.

This is the main job's engine (LS-FA vs LS-CA on the same data with the same seed): each variant is an
ordinary ``lsfa train`` run in ``<output_dir>/<variant>/``; a variant whose ``metrics.json`` exists is
not trained again, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsfa.experiments.grid import safe_name
from lsfa.runs import RunFolder
from lsfa.training.config import TrainConfig

VARIANT_NAMES = {"full": "LS-FA", "causal": "LS-CA"}


def variant_dir(output_dir: str | Path, attention: str) -> Path:
    """Folder of one variant: the attention setting, made filesystem-safe."""
    return Path(output_dir) / safe_name(attention)


def compare_attention(
    config: TrainConfig, attentions: Sequence[str], log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Train (or reuse) one run per attention setting; return each run's metrics."""
    from lsfa.training.runner import train  # lazy: torch and transformers; the table helpers below need neither

    results: dict[str, dict[str, Any]] = {}
    for attention in attentions:
        folder = variant_dir(config.output_dir, attention)
        metrics_file = RunFolder(folder).metrics
        if metrics_file.exists():
            log(f"{attention}: finished run found in {folder}, not training again")
            results[attention] = json.loads(metrics_file.read_text())
            continue
        log(f"== training attention={attention} -> {folder}")
        variant = config.model_copy(update={"attention": attention, "output_dir": str(folder)})
        results[attention] = train(variant, resume=folder.exists(), log=log)
    return results


def comparison_rows(results: dict[str, dict[str, Any]], split: str = "dev") -> list[dict[str, Any]]:
    """One row per variant: P/R/F1 on ``split``, epochs, time per epoch."""
    rows = []
    for attention, metrics in results.items():
        micro = metrics[split]["micro"]
        rows.append(
            {
                "system": VARIANT_NAMES.get(attention, f"layers {attention}"),
                "attention": attention,
                "precision": micro["precision"],
                "recall": micro["recall"],
                "f1": micro["f1"],
                "epochs": metrics.get("epochs_run"),
                "seconds_per_epoch": metrics.get("mean_epoch_seconds"),
            }
        )
    return rows


def comparison_markdown(rows: list[dict[str, Any]], split: str, config: TrainConfig) -> str:
    """The comparison as a Markdown table with the settings it came from."""
    lines = [
        f"Model `{config.model}`, corpus `{config.corpus}` ({split} split), finetune `{config.finetune}`, "
        f"train sentences: {config.train_limit or 'all'}, epochs: {config.epochs}, seed {config.seed}.",
        "",
        "| system | attention | precision | recall | F1 | epochs | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seconds = f"{row['seconds_per_epoch']:.0f}" if row["seconds_per_epoch"] else "-"
        lines.append(
            f"| {row['system']} | `{row['attention']}` | {row['precision']:.4f} | {row['recall']:.4f} "
            f"| {row['f1']:.4f} | {row['epochs']} | {seconds} |"
        )
    return "\n".join(lines) + "\n"

"""A training run's ``metrics.json`` as a Markdown report.

Result documents under ``docs/results/`` are generated from the committed ``metrics.json`` with
``lsfa report RUN``, so every number in them traces back to a results file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsfa.errors import LsfaError
from lsfa.runs import METRICS_FILE, RunMetrics
from lsfa.training.config import canonical_keys


def load_metrics(run: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a run folder (or the file itself)."""
    path = Path(run)
    path = path / METRICS_FILE if path.is_dir() else path
    if not path.is_file():
        raise LsfaError(f"{path}: no metrics.json (is this a finished `lsfa train` run?)")
    return RunMetrics.read(path).model_dump(exclude_unset=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _split_section(name: str, result: dict[str, Any]) -> list[str]:
    lines = [
        f"### {name}: {result['n_sentences']} sentences, {result['n_tokens']} tokens",
        "",
        "| | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, row in result["per_type"].items():
        lines.append(
            f"| {label} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | {row['support']} |"
        )
    micro = result["micro"]
    lines.append(
        f"| **micro (strict)** | **{_pct(micro['precision'])}** | **{_pct(micro['recall'])}** "
        f"| **{_pct(micro['f1'])}** | {micro['support']} |"
    )
    for key, title in (("set", "set (text, type)"), ("partial", "partial overlap")):
        row = result[key]
        lines.append(f"| {title} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | |")
    for bucket, row in result["by_length"].items():
        lines.append(
            f"| length {bucket} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} "
            f"| {row.get('support', '')} |"
        )
    lines += ["", "| error category | count |", "|---|---|"]
    lines += [f"| {category} | {count} |" for category, count in result["errors"].items()]
    if "ms_per_sentence" in result:
        lines += ["", f"Inference: {result['ms_per_sentence']:.2f} ms per sentence (batched, whole split)."]
    return [*lines, ""]


def run_markdown(metrics: dict[str, Any], title: str = "Run report") -> str:
    """Markdown for one run: settings, scores per split, timings and the machine it ran on."""
    config = canonical_keys(metrics.get("config", {}))  # records written before finetune: say mode:
    machine = metrics.get("machine", {})
    epochs = ", ".join(f"{s:.0f}" for s in metrics.get("train_seconds_per_epoch", []))
    lines = [
        f"## {title}",
        "",
        f"Model `{config.get('model')}`, corpus `{config.get('corpus')}`, attention `{metrics.get('attention')}`, "
        f"finetune `{config.get('finetune')}`, precision `{metrics.get('precision')}`, seed {config.get('seed')}.",
        "",
        f"- optimiser steps: {metrics.get('global_step')}, epochs run: {metrics.get('epochs_run')}, "
        f"best checkpoint (dev F1): `{Path(str(metrics.get('best_checkpoint'))).name}`",
        f"- training time per epoch (s): {epochs}; train tokens/s: {metrics.get('train_tokens_per_second') or 0:.0f}",
        f"- wall time (s): {metrics.get('wall_seconds', 0):.0f}; "
        f"peak memory: {metrics.get('peak_memory_mb', 0):.0f} MiB",
        f"- parameters: {metrics.get('parameters')}",
        f"- machine: {machine.get('processor')}, {machine.get('cpu_count')} cores, torch threads "
        f"{machine.get('torch_threads')}, GPU {machine.get('cuda')}; torch {machine.get('torch')}; "
        f"lsfa {machine.get('lsfa')} at commit `{machine.get('git_commit')}`",
        "",
    ]
    for log in metrics.get("epoch_log", []):
        lines.append(
            f"- epoch {log.get('epoch')}: {log.get('seconds', 0):.0f} s, dev F1 {_pct(log.get('eval_f1'))}, "
            f"dev loss {log.get('eval_loss', float('nan')):.4f}"
        )
    lines.append("")
    for split in ("dev", "test"):
        if split in metrics:
            lines += _split_section(split, metrics[split])
    return "\n".join(lines)

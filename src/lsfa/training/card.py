"""The model card written into every tagger folder that ``lsfa train`` saves (``README.md``): what the tagger
is, how it was made, how well it scored, and what it is not for, in the format the Hugging Face hub reads
(YAML front matter, then Markdown)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from lsfa.machine import cpu_label
from lsfa.models.catalogue import CATALOGUE
from lsfa.training.config import TrainConfig
from lsfa.version import __version__

CARD_FILE = "README.md"
ATTENTION_NAMES = {"full": "LS-FA (bidirectional attention in every layer)", "causal": "LS-CA (the causal mask kept)"}


def write_model_card(
    folder: str | Path, config: TrainConfig, metrics: dict[str, Any], command: list[str] | None = None
) -> Path:
    """Write ``folder/README.md`` from the run's config and metrics; returns its path."""
    path = Path(folder) / CARD_FILE
    path.write_text(model_card(config, metrics, command if command is not None else sys.argv))
    return path


def model_card(config: TrainConfig, metrics: dict[str, Any], command: list[str]) -> str:
    entry = CATALOGUE.get(config.model)
    licence = entry.license if entry is not None else "see the base model"
    front = {"library_name": "transformers", "pipeline_tag": "token-classification", "tags": ["lsfa", "ner"],
             "base_model": config.model, "license_note": licence}  # fmt: skip
    attention = metrics.get("attention", config.attention)
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {config.model} token classifier for {config.corpus} ({ATTENTION_NAMES.get(attention, attention)})", "",
        "A decoder-only language model with a token-classification head, trained with BIO labels (lsfa, after "
        "Yano & Takamura, BioNLP 2026).", "",
        "## Model", "",
        f"- base model: `{config.model}` (licence: {licence})",
        f"- attention: `{attention}`",
        f"- fine-tuning: {_tuning(config)}",
        f"- labels: {', '.join(metrics.get('labels', [])) or 'see config.json'}",
        f"- calibrated temperature: {metrics.get('temperature', 1.0):.3f} (entity confidences use it)", "",
        "## Training", "",
        f"- data: `{config.corpus}` ({_train_data(config)}); selection on `{config.dev_split}`",
        f"- schedule: {_schedule(config)}",
        *_distillation(metrics.get("distillation")),
        f"- precision: {metrics.get('precision', config.precision)}; epochs run: {metrics.get('epochs_run', '?')}",
        f"- command: `{shlex.join(command)}`",
        f"- lsfa {__version__}, commit {metrics.get('machine', {}).get('git_commit')}, machine "
        f"{_machine(metrics.get('machine', {}))}", "",
        "## Scores (seqeval-strict span micro P/R/F1)", "",
        "| split | precision | recall | F1 |", "|---|---|---|---|",
    ]  # fmt: skip
    for split in ("dev", "test"):
        if split in metrics:
            micro = metrics[split]["micro"]
            lines.append(f"| {split} | {micro['precision']:.4f} | {micro['recall']:.4f} | {micro['f1']:.4f} |")
    lines += [
        "", "## Use", "",
        "```python", "import lsfa", "", "tagger = lsfa.Tagger.load(\"path/to/this/folder\")",
        "tagger(\"EU rejects German call to boycott British lamb.\")", "```", "",
        "## Intended use and limits", "",
        f"- Named-entity tagging of text like `{config.corpus}`; other domains, languages or entity types need "
        "re-training and will score lower.",
        "- Scores above are on the stated splits only; entity confidences are calibrated on the dev split and "
        "drift on other data.",
        "- Inherits the base model's biases and licence terms. Not for decisions about people without review.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _tuning(config: TrainConfig) -> str:
    if config.finetune != "lora":
        return "full fine-tuning"
    lora = config.lora
    return f"LoRA r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, modules {lora.target_modules}"


def _train_data(config: TrainConfig) -> str:
    return config.train_split + (f", first {config.train_limit} sentences" if config.train_limit else "")


def _distillation(record: dict[str, Any] | None) -> list[str]:
    """The card line of a distilled student: its teacher and how much it weighed (nothing for other taggers)."""
    if not record:
        return []
    unlabelled = f"; unlabelled text: {', '.join(record['unlabelled'])}" if record.get("unlabelled") else ""
    return [
        f"- distilled from the tagger `{record['teacher']}` (sha256 {record['teacher_hash'][:12]}): KL weight "
        f"{record['weight']:g}, temperature {record['temperature']:g}{unlabelled}"
    ]


def _schedule(config: TrainConfig) -> str:
    return (
        f"up to {config.epochs:g} epochs, lr {config.learning_rate:g} ({config.scheduler}, warm-up "
        f"{config.warmup_ratio:g}), batch {config.batch_size}, early stopping patience "
        f"{config.early_stopping_patience}, seed {config.seed}"
    )


def _machine(machine: dict[str, Any]) -> str:
    """The training machine's CPU (with " with AMX" where it had it: bf16 times differ several-fold between Xeons
    of one model name); runs recorded before ``cpu_model`` existed name only ``processor``."""
    if machine.get("cpu_model"):
        return cpu_label(machine)
    return machine.get("processor") or "not recorded"

"""What fits where: `lsfa plan` of Llama-3.2-1B, Llama-3.2-3B and Llama-3.1-8B shapes (config.json alone, written
here from the hub's published shapes) for LoRA bf16 and QLoRA 4-bit, with and without gradient checkpointing, and
full fine-tuning with it, at the paper's batch 8 x 512, on a bf16 CUDA card, judged against 24, 40 and 80 GiB. The
table in docs/gpu.md is this script's output.

    .venv/bin/python scripts/plan_tables.py docs/results/plan-tables.json

It calls :func:`lsfa.training.plan.plan_run`, the function `lsfa plan` prints, once per row (one process: the
meta-device build of an 8B model takes seconds, a process start more on a busy machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from lsfa.models.estimate import GIB
from lsfa.training.config import load_config
from lsfa.training.plan import plan_record, plan_run

LLAMA = {"model_type": "llama", "vocab_size": 128256, "num_key_value_heads": 8, "dtype": "bfloat16"}
SHAPES = {
    "Llama-3.2-1B": {**LLAMA, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "head_dim": 64, "tie_word_embeddings": True},
    "Llama-3.2-3B": {**LLAMA, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "head_dim": 128, "tie_word_embeddings": True},
    "Llama-3.1-8B": {**LLAMA, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "head_dim": 128, "tie_word_embeddings": False},
}  # fmt: skip
"""The hub configs' shapes (meta-llama/*/config.json): all a plan reads."""
RECIPES = {
    "LoRA bf16": {"mode": "lora"},
    "LoRA bf16 + checkpointing": {"mode": "lora", "gradient_checkpointing": True},
    "QLoRA 4-bit": {"mode": "lora", "quantize": "4bit"},
    "QLoRA 4-bit + checkpointing": {"mode": "lora", "quantize": "4bit", "gradient_checkpointing": True},
    "full + checkpointing": {"mode": "full", "gradient_checkpointing": True},
}
CARDS_GIB = (24, 40, 80)
RUN = {"batch_size": 8, "max_length": 512, "precision": "auto", "attention": "full"}


def rows(folder: Path) -> list[dict]:
    """One plan per model and recipe, with the cards it fits."""
    out = []
    for name, shape in SHAPES.items():
        model = folder / name
        model.mkdir()
        (model / "config.json").write_text(json.dumps(shape))
        for recipe, keys in RECIPES.items():
            plan = plan_run(load_config(overrides={"model": str(model), **RUN, **keys}), "cuda-bf16", max(CARDS_GIB))
            record = plan_record(plan)
            record["model"] = name
            record["fits_gib"] = {str(card): plan.total <= card * GIB for card in CARDS_GIB}
            out.append({**record, "recipe": recipe, "plan_recipe": record["recipe"]})
    return out


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = rows(Path(folder))
    machine = subprocess.run([".venv/bin/lsfa", "env"], capture_output=True, text=True).stdout.splitlines()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "what": "lsfa plan per model and recipe, bf16 CUDA target, batch 8 x 512, LS-FA, 1.5 GiB CUDA reserve",
        "command": "python scripts/plan_tables.py",
        "machine": machine,
        "commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "rows": table,
    }
    Path(out).write_text(json.dumps(record, indent=2) + "\n")
    for row in table:
        fits = " ".join(f"{card}:{'yes' if ok else 'no'}" for card, ok in row["fits_gib"].items())
        print(f"{row['model']:14s} {row['recipe']:28s} {row['gib']['total']:7.2f} GiB  {fits}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/plan-tables.json")

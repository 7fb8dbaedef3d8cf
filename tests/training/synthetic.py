"""A synthetic NER corpus in CoNLL files, learnable in a few steps (for grid, peer and report tests)."""

from __future__ import annotations

import random
from pathlib import Path

ENTITIES = {"Peter": "PER", "Smith": "PER", "Paris": "LOC", "London": "LOC", "Acme": "ORG"}
FILLERS = ["the", "a", "visited", "in", ".", "met", "near"]


def synthetic_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """3-9 words; entity words are single-word entities, plus 'New York' as a two-word LOC."""
    words: list[tuple[str, str]] = []
    for _ in range(rng.randint(3, 9)):
        choice = rng.choice([*ENTITIES, "New York", *FILLERS, *FILLERS])
        if choice == "New York":
            words += [("New", "B-LOC"), ("York", "I-LOC")]
        elif choice in ENTITIES:
            words.append((choice, "B-" + ENTITIES[choice]))
        else:
            words.append((choice, "O"))
    return words


def write_synthetic_corpus(folder: Path, train: int = 40, dev: int = 12, test: int = 12, seed: int = 0) -> Path:
    """``folder/{train,dev,test}.txt`` in two-column CoNLL (IOB2)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("dev", dev), ("test", test)):
        lines = []
        for _ in range(count):
            lines += [f"{word} {tag}" for word, tag in synthetic_sentence(rng)]
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def tiny_grid_file(root: Path, attention: list[str], models: list[dict] | None = None, **base) -> Path:
    """A grid YAML over a tiny llama and the synthetic corpus, a couple of optimiser steps per cell.

    ``models`` defaults to the tiny decoder (saved under ``root/model`` once); ``base`` overrides config keys.
    """
    import yaml

    from tests.tiny import tiny_decoder_dir

    model = root / "model"
    if not (model / "config.json").exists():
        tiny_decoder_dir(model, "llama")
    corpus = root / "corpus"
    if not (corpus / "train.txt").exists():
        write_synthetic_corpus(corpus, train=16, dev=8, test=8)
    grid = {
        "name": "tiny",
        "output_dir": str(root / "grid"),
        "corpora": [{"name": "synth", "path": str(corpus)}],
        "seeds": [0],
        "models": models if models is not None else [{"name": "tiny", "path": str(model)}],
        "attention": attention,
        "modes": [{"name": "lora", "mode": "lora", "lora": {"r": 2, "alpha": 4}}],
        "epochs": 1,
        "max_steps": 2,
        "batch_size": 8,
        "eval_batch_size": 8,
        "learning_rate": 5.0e-3,
        "max_length": 64,
        "precision": "fp32",
        "early_stopping_patience": None,
        "logging_steps": 1,
        "threads": 1,
        **base,
    }
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path

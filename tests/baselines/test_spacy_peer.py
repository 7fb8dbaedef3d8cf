"""The spaCy peer: conversion to spaCy Docs, the train command, and (slow) a tiny real ``spacy train``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsfa.baselines.spacy_peer import spacy_words, train_command, word_pass_timing
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError
from lsfa.training.config import load_config
from tests.training.synthetic import write_synthetic_corpus

spacy = pytest.importorskip("spacy")


def test_words_spacy_cannot_hold_get_a_placeholder_one_per_word() -> None:
    assert spacy_words(["New", "", " ", "a b", "York"]) == ["New", "_", "_", "a_b", "York"]


def test_iob2_sentences_become_docs_with_the_same_entities_and_back() -> None:
    from lsfa.baselines.spacy_peer import doc_tags, sentences_to_docs

    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "B-LOC"]
    sentence = Sentence(["Peter", "Smith", "in", "", "Paris", "London"], tags)
    (doc,) = sentences_to_docs(spacy.blank("en").vocab, [sentence])
    assert [t.text for t in doc] == ["Peter", "Smith", "in", "_", "Paris", "London"]
    assert [(e.text, e.label_) for e in doc.ents] == [("Peter Smith", "PER"), ("Paris", "LOC"), ("London", "LOC")]
    assert doc_tags(doc) == sentence.tags


def test_train_command_maps_the_grid_config(tmp_path: Path) -> None:
    config = load_config(None, {"epochs": 2.5, "seed": 7})
    command = train_command(config, {"patience": 100, "overrides": {"training.dropout": 0.2}}, tmp_path)
    text = " ".join(command)
    assert command[1:4] == ["-m", "spacy", "train"]
    for expected in ("--system.seed 7", "--training.max_epochs 3", "--training.patience 100", "--training.dropout 0.2"):
        assert expected in text
    assert "spacy_logger.py" in text


def test_epoch_time_is_time_per_pass_over_the_training_words() -> None:
    progress = [
        {"epoch": 1, "step": 10, "words": 300, "seconds": 3.0},
        {"epoch": 3, "step": 20, "words": 600, "seconds": 6.0},
    ]
    timing = word_pass_timing(progress, train_words=200, train_seconds=7.0)
    assert timing["epochs_run"] == 3.0 and timing["mean_epoch_seconds"] == pytest.approx(2.0)
    assert word_pass_timing([], 200, 7.0)["mean_epoch_seconds"] is None


def test_unknown_options_are_user_errors(tmp_path: Path) -> None:
    from lsfa.baselines.spacy_peer import train_spacy

    config = load_config(None, {"corpus": str(tmp_path)})
    with pytest.raises(LsfaError, match="unknown option"):
        train_spacy(config, {"epochz": 3}, tmp_path / "run")


@pytest.mark.slow
def test_tiny_spacy_training_writes_lsfa_style_metrics(tmp_path: Path) -> None:
    corpus = write_synthetic_corpus(tmp_path / "corpus", train=60, dev=20, test=20)
    from lsfa.baselines.spacy_peer import train_spacy

    config = load_config(None, {"corpus": str(corpus), "epochs": 20, "threads": 1, "seed": 1})
    lines: list[str] = []
    metrics = train_spacy(config, {"max_steps": 40, "eval_frequency": 10}, tmp_path / "run", lines.append)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["system"] == "spacy"
    for key in ("dev", "test", "parameters", "mean_epoch_seconds", "epochs_run", "train_seconds", "machine"):
        assert written[key] is not None, key
    for split in ("dev", "test"):
        assert set(written[split]) >= {"micro", "set", "by_length", "errors", "ms_per_sentence"}
        assert ("latency_ms" in written[split]) == (split == "test"), "one-at-a-time timing on test only"
    assert metrics["test"]["micro"]["f1"] > 0.5, "a trivially learnable corpus should be learnt in 40 steps"
    assert written["epoch_log"][-1]["step"] == 40
    predictions = (tmp_path / "run" / "predictions" / "test.conll").read_text().split("\n\n")
    assert len([p for p in predictions if p.strip()]) == 20

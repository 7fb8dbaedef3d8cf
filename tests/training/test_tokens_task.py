"""A tokens task end to end on a tiny model: POS-like flat tags from another CoNLL column are detected, trained,
scored by accuracy, saved and loaded as a tagger that returns a tag per word; a bad tag column is a clear error."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import lsfa
from lsfa.data.corpora import load_corpus
from lsfa.errors import DataFormatError
from lsfa.runs import RunMetrics
from tests.tiny import tiny_decoder_dir

POS = {"Peter": "NNP", "Paris": "NNP", "visited": "VBD", "the": "DT", "dog": "NN", ".": "."}


def write_pos_corpus(folder: Path) -> Path:
    """Three columns (word, POS, NER) so the POS column is not the last one."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 32), ("dev", 8), ("test", 8)):
        lines = []
        for _ in range(count):
            for word in rng.choices(list(POS), k=rng.randint(3, 7)):
                lines.append(f"{word} {POS[word]} {'B-PER' if word == 'Peter' else 'O'}")
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_column_selection_detects_the_task(tmp_path: Path) -> None:
    corpus = write_pos_corpus(tmp_path / "c")
    assert load_corpus(corpus, tag_column=1).task == "tokens"
    assert load_corpus(corpus).task == "spans"  # the last column holds NER
    assert load_corpus(corpus, tag_column=1).label_list() == sorted(set(POS.values()))


def test_a_bad_tag_column_names_file_and_line(tmp_path: Path) -> None:
    corpus = write_pos_corpus(tmp_path / "c")
    with pytest.raises(DataFormatError, match=r"train\.txt:1: tag column 5 does not exist"):
        load_corpus(corpus, tag_column=5)
    with pytest.raises(DataFormatError, match=r"train\.txt:1: unknown tag '"):
        load_corpus(corpus, tag_column=1, task="spans")  # a column that is not span tags


def test_a_tokens_tagger_trains_scores_accuracy_and_returns_a_tag_per_word(tmp_path: Path) -> None:
    corpus = write_pos_corpus(tmp_path / "c")
    model = str(tiny_decoder_dir(tmp_path / "tiny"))
    run = str(tmp_path / "run")
    tagger = lsfa.train(model=model, corpus=str(corpus), tag_column=1, epochs=2, batch_size=8, max_length=64,
                        learning_rate=5e-3, precision="fp32", output_dir=run, log=lambda _: None)  # fmt: skip
    metrics = RunMetrics.read(tmp_path / "run").model_dump()
    assert metrics["task"] == "tokens" and "accuracy" in metrics["test"] and "per_tag" in metrics["test"]
    assert metrics["test"]["micro"]["f1"] == metrics["test"]["accuracy"]
    assert tagger.task == "tokens" and set(tagger.labels) == set(POS.values())
    words = tagger("Peter visited the dog .")
    assert [w.text for w in words] == ["Peter", "visited", "the", "dog", "."]  # every word, with its tag
    assert all(w.label in POS.values() and 0 < w.score <= 1 for w in words)
    reloaded = lsfa.Tagger.load(tmp_path / "run", precision="fp32")
    assert reloaded.task == "tokens" and len(reloaded("the dog")) == 2
    scores = lsfa.evaluate(reloaded, corpus=str(corpus), split="test", data_dir=None)
    assert "accuracy" in scores

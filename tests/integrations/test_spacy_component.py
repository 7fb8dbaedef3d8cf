"""The spaCy component: registered by entry point, entities on spaCy tokens with scores, nlp.pipe batches,
and a saved pipeline that loads with spacy.load alone (the tagger folder travels with it)."""

from __future__ import annotations

from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")


def test_blank_pipeline_tags_batches_and_round_trips(tiny_taggers, tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("lsfa_ner", config={"model": str(tiny_taggers["rule"]), "precision": "fp32", "batch_size": 2})
    doc = nlp("Yesterday Bob Carter met Bill in Berlin .")
    assert [(e.text, e.label_) for e in doc.ents] == [("Bob Carter", "PER"), ("Bill", "PER"), ("Berlin", "PER")]
    scores = doc.spans["lsfa"].attrs["scores"]
    assert len(scores) == 3 and all(0 < s <= 1 for s in scores)

    calls = []
    original = ner.tagger.predict_words
    ner.tagger.predict_words = lambda words, **kw: calls.append(len(words)) or original(words, **kw)
    docs = list(nlp.pipe(["Bob sat .", "the dog", "Cole Carter", "a cat"]))
    assert calls == [2, 2] and [len(d.ents) for d in docs] == [1, 0, 1, 0]

    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "lsfa_ner" / "tagger" / "lsfa.json").is_file()
    loaded = spacy.load(tmp_path / "pipeline")
    assert [(e.text, e.label_) for e in loaded("Bob Carter sat .").ents] == [("Bob Carter", "PER")]


def test_a_component_without_a_tagger_says_so(tmp_path: Path) -> None:
    from lsfa.errors import LsfaError

    nlp = spacy.blank("en")
    nlp.add_pipe("lsfa_ner")
    with pytest.raises(LsfaError, match="lsfa_ner has no tagger"):
        nlp("Bob")


def test_a_saved_pipeline_is_self_contained(tiny_taggers, tmp_path: Path, monkeypatch) -> None:
    """Issue #37 item 4: the original tagger folder moved away, spacy.load still works, from the copy, loading
    the tagger once; the saved config names no path."""
    import shutil

    from lsfa.inference.tagger import Tagger

    original = tmp_path / "tagger"
    shutil.copytree(tiny_taggers["rule"], original)
    nlp = spacy.blank("en")
    nlp.add_pipe("lsfa_ner", config={"model": str(original), "precision": "fp32"})
    nlp.to_disk(tmp_path / "pipeline")
    assert "tagger" not in (tmp_path / "pipeline" / "config.cfg").read_text().split("[components.lsfa_ner]")[1]
    original.rename(tmp_path / "moved")

    loads: list[Path] = []
    real_load = Tagger.load.__func__
    monkeypatch.setattr(Tagger, "load", classmethod(lambda cls, folder, *a, **k: loads.append(Path(folder))
                                                     or real_load(cls, folder, *a, **k)))  # fmt: skip
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.config["components"]["lsfa_ner"]["model"] is None
    assert [(e.text, e.label_) for e in loaded("Bob Carter sat .").ents] == [("Bob Carter", "PER")]
    assert loads == [tmp_path / "pipeline" / "lsfa_ner" / "tagger"]

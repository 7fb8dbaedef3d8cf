"""Hypothesis strategies and the seqeval oracle shared by the evaluation tests."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import strategies as st
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB1, IOB2, IOBES, Tokens

# "A-B" exercises hyphens inside a type, "_" collides with the type seqeval gives to O internally.
TYPES = ("PER", "LOC", "A-B", "_")
SEQEVAL_SCHEMES = {"IOB1": IOB1, "IOB2": IOB2, "IOBES": IOBES, "BIOES": IOBES}
TOLERANCE = 1e-9
PREFIXES = {"IOB1": "BIO", "IOB2": "BIO", "IOBES": "BIOES", "BIOES": "BIOES"}


def tag_strategy(prefixes: str) -> st.SearchStrategy[str]:
    """One tag: ``O`` or a prefix from ``prefixes`` with one of :data:`TYPES`."""
    entity_prefixes = st.sampled_from(prefixes.replace("O", ""))
    return st.one_of(st.just("O"), st.builds(lambda p, t: f"{p}-{t}", entity_prefixes, st.sampled_from(TYPES)))


def tags_strategy(prefixes: str, max_len: int = 12) -> st.SearchStrategy[list[str]]:
    """Arbitrary (mostly ill-formed) sentences over the given prefixes."""
    return st.lists(tag_strategy(prefixes), max_size=max_len)


@st.composite
def corpus_pair(draw, prefixes: str, max_sentences: int = 6) -> tuple[list[list[str]], list[list[str]]]:
    """Gold sentences and a prediction that copies gold with random flips (so some entities match)."""
    gold = draw(st.lists(tags_strategy(prefixes), min_size=1, max_size=max_sentences))  # seqeval needs one
    flip_rate = draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))
    pred = []
    for sentence in gold:
        flips = draw(st.lists(st.floats(0, 1), min_size=len(sentence), max_size=len(sentence)))
        pred.append(
            [draw(tag_strategy(prefixes)) if f < flip_rate else tag for tag, f in zip(sentence, flips, strict=True)]
        )
    return gold, pred


def seqeval_report(gold, pred, scheme: str, mode: str) -> dict:
    """seqeval's classification_report as a dict (zero-division warnings silenced; they mean 0.0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "strict":
            return classification_report(gold, pred, mode="strict", scheme=SEQEVAL_SCHEMES[scheme], output_dict=True)
        return classification_report(gold, pred, output_dict=True)


def seqeval_spans(tags: list[str], scheme: str, mode: str) -> list[tuple[int, int, str]]:
    """seqeval's entities of one sentence as (start, end exclusive, type)."""
    if mode == "strict":
        return [(e.start, e.end, e.tag) for e in Tokens(tags, SEQEVAL_SCHEMES[scheme]).entities]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(start, end + 1, kind) for kind, start, end in get_entities(list(tags))]


def assert_matches_seqeval(ours: dict, report: dict) -> None:
    """Micro and per-type precision/recall/F1/support agree with a seqeval output_dict report."""
    per_type_names = set(report) - {"micro avg", "macro avg", "weighted avg"}
    assert set(ours["per_type"]) == per_type_names
    for name, row in [("micro avg", ours["micro"]), *ours["per_type"].items()]:
        expected = report[name]
        assert row["precision"] == pytest.approx(expected["precision"], abs=TOLERANCE)
        assert row["recall"] == pytest.approx(expected["recall"], abs=TOLERANCE)
        assert row["f1"] == pytest.approx(expected["f1-score"], abs=TOLERANCE)
        assert row["support"] == expected["support"]

"""Scores: seqeval equivalence for strict_prf, hand-made cases for the set, partial and length metrics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsfa.errors import LsfaError
from lsfa.eval.metrics import by_length_prf, entity_set, partial_prf, set_prf, strict_prf
from tests.eval.oracle import PREFIXES, assert_matches_seqeval, corpus_pair, seqeval_report


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_strict_prf_equals_seqeval_strict(scheme, data):
    gold, pred = data.draw(corpus_pair(PREFIXES[scheme]))
    assert_matches_seqeval(strict_prf(gold, pred, scheme, "strict"), seqeval_report(gold, pred, scheme, "strict"))


@pytest.mark.parametrize("prefixes", ["BIO", "BIOES"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_conlleval_prf_equals_seqeval_default(prefixes, data):
    gold, pred = data.draw(corpus_pair(prefixes))
    ours = strict_prf(gold, pred, "IOB2", "conlleval")
    assert_matches_seqeval(ours, seqeval_report(gold, pred, "IOB2", "conlleval"))


def test_seqeval_docstring_example_and_zero_division():
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = strict_prf(gold, pred)
    assert scores["micro"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    empty = strict_prf([["O"]], [["O"]])
    assert empty == {"micro": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}, "per_type": {}}


def test_mismatched_lengths_are_clear_errors():
    with pytest.raises(LsfaError, match="2 sentences but prediction has 1"):
        strict_prf([["O"], ["O"]], [["O"]])
    with pytest.raises(LsfaError, match="sentence 0: gold has 2 tags but prediction has 1"):
        strict_prf([["O", "O"]], [["O"]])


def test_entity_set_joins_words_and_deduplicates():
    tokens = ["New", "York", "and", "New", "York", "."]
    tags = ["B-LOC", "I-LOC", "O", "B-LOC", "I-LOC", "O"]
    assert entity_set(tokens, tags) == {("New York", "LOC")}
    assert entity_set(["x"], ["I-PER"]) == set()  # strict IOB2: no entity
    assert entity_set(["x"], ["I-PER"], mode="conlleval") == {("x", "PER")}


def test_set_prf_is_micro_over_sentences():
    gold = [{("Paris", "LOC"), ("Obama", "PER")}, {("EU", "ORG")}, set()]
    pred = [{("Paris", "LOC"), ("Obama", "LOC")}, {("EU", "ORG")}, {("Paris", "LOC")}]
    # hits: Paris (s0), EU (s1) = 2; predicted 4; gold 3. The Paris of sentence 2 is not in its own gold.
    scores = set_prf(gold, pred)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert set_prf([set()], [set()]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(LsfaError, match="1 gold sentences but 2 predicted"):
        set_prf([set()], [set(), set()])


def test_partial_prf_counts_same_type_overlaps():
    gold = [["B-LOC", "I-LOC", "I-LOC", "O", "B-PER", "O", "B-ORG"]]
    pred = [["B-LOC", "B-LOC", "O", "O", "B-ORG", "I-ORG", "O"]]
    # predicted: LOC[0,1) and LOC[1,2) both overlap gold LOC[0,3) -> 2 of 3 predictions correct;
    # ORG[4,6) overlaps gold PER (wrong type). Gold: LOC found, PER and ORG not -> 1 of 3.
    scores = partial_prf(gold, pred)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * (1 / 3) / 1.0)


def test_partial_is_at_least_strict_on_a_mixed_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]
    strict, partial = strict_prf(gold, pred)["micro"], partial_prf(gold, pred)
    assert strict["f1"] == pytest.approx(2 / 3)
    assert partial == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_by_length_buckets_recall_by_gold_and_precision_by_prediction():
    gold = [["B-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "B-LOC", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"]]
    scores = by_length_prf(gold, pred)
    assert list(scores) == ["1", "2", "3+"]
    assert scores["1"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert scores["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["3+"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_by_length_buckets_add_up_to_micro(data):
    gold, pred = data.draw(corpus_pair("BIO"))
    micro = strict_prf(gold, pred)["micro"]
    buckets = by_length_prf(gold, pred)
    assert sum(row["support"] for row in buckets.values()) == micro["support"]
    hits = sum(round(row["recall"] * row["support"]) for row in buckets.values())
    assert hits == round(micro["recall"] * micro["support"])

"""Error taxonomy: one hand-made case per category, the resolution rules, and the counting invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsfa.eval.errors import ERROR_CATEGORIES, error_counts, overlap_category, sentence_errors
from lsfa.eval.spans import Span, get_spans
from tests.eval.oracle import corpus_pair


def categories(gold_tags: list[str], pred_tags: list[str]) -> list[str]:
    cases = sentence_errors(get_spans(gold_tags), get_spans(pred_tags))
    return [case.category for case in cases]


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"], ["exact_matches"]),
        (["B-PER", "I-PER", "O"], ["B-LOC", "I-LOC", "O"], ["correct_span_wrong_type"]),
        (["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "O"], ["too_short"]),
        (["B-PER", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"], ["too_short"]),
        (["O", "B-PER", "O"], ["B-PER", "I-PER", "O"], ["too_long"]),
        (["O", "B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER", "I-PER"], ["too_long"]),
        # shifted by one word, same length: neither boundary matches
        (["B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER"], ["boundary_off"]),
        # one word longer on both sides: lengths differ by exactly two
        (["O", "B-PER", "O"], ["B-PER", "I-PER", "I-PER"], ["boundary_off"]),
        # neither boundary, lengths 1 vs 4: too far apart
        (["O", "B-PER", "O", "O", "O"], ["B-PER", "I-PER", "I-PER", "I-PER", "O"], ["completely_wrong"]),
        # one boundary matches but the type is wrong too
        (["B-PER", "I-PER", "O"], ["B-LOC", "O", "O"], ["completely_wrong"]),
        (["O", "O", "O"], ["O", "B-PER", "O"], ["false_positives"]),
        (["O", "B-PER", "O"], ["O", "O", "O"], ["false_negatives"]),
    ],
)
def test_each_category(gold, pred, expected):
    assert categories(gold, pred) == expected


def test_type_must_match_for_boundary_categories():
    gold = Span(0, 3, "PER")
    assert overlap_category(Span(0, 2, "PER"), gold) == "too_short"
    assert overlap_category(Span(0, 2, "LOC"), gold) == "completely_wrong"
    assert overlap_category(Span(0, 4, "LOC"), gold) == "completely_wrong"
    assert overlap_category(Span(1, 2, "PER"), gold) == "boundary_off"  # inside, neither boundary


def test_split_gold_entity_gives_two_predicted_errors_and_no_false_negative():
    gold = ["B-LOC", "I-LOC", "I-LOC"]
    pred = ["B-LOC", "I-LOC", "B-LOC"]
    assert categories(gold, pred) == ["too_short", "too_short"]


def test_prediction_covering_two_gold_entities_is_judged_against_the_mildest():
    gold = ["B-LOC", "O", "B-PER", "I-PER"]
    pred = ["B-PER", "I-PER", "I-PER", "I-PER"]
    cases = sentence_errors(get_spans(gold), get_spans(pred))
    # against LOC[0,1) it would be completely_wrong (other type); against PER[2,4) it is too_long
    assert [(c.category, c.gold) for c in cases] == [("too_long", Span(2, 4, "PER"))]


def test_a_wrong_prediction_elsewhere_leaves_unoverlapped_gold_a_false_negative():
    gold = ["B-PER", "O", "B-LOC", "O"]
    pred = ["O", "O", "B-LOC", "B-ORG"]
    assert categories(gold, pred) == ["exact_matches", "false_positives", "false_negatives"]


def test_counts_totals_and_percentages():
    gold = [["B-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "O"], ["B-ORG", "O"]]
    result = error_counts(gold, pred)
    assert list(result["counts"]) == list(ERROR_CATEGORIES)
    assert result["counts"]["exact_matches"] == 1
    assert result["counts"]["false_negatives"] == 1
    assert result["counts"]["too_short"] == 1
    assert result["total"] == 3 and result["n_errors"] == 2
    assert result["pct_of_total"]["exact_matches"] == pytest.approx(100 / 3)
    assert result["pct_of_errors"]["too_short"] == pytest.approx(50.0)
    assert "exact_matches" not in result["pct_of_errors"]
    assert sum(result["pct_of_errors"].values()) == pytest.approx(100.0)


def test_no_entities_gives_zero_percentages():
    result = error_counts([["O"]], [["O"]])
    assert result["total"] == 0
    assert set(result["pct_of_errors"].values()) == {0.0}


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_every_prediction_gets_one_category(data):
    gold, pred = data.draw(corpus_pair("BIO"))
    counts = error_counts(gold, pred)["counts"]
    n_pred = sum(len(get_spans(tags)) for tags in pred)
    assert sum(n for category, n in counts.items() if category != "false_negatives") == n_pred
    exact = sum(len(set(get_spans(g)) & set(get_spans(p))) for g, p in zip(gold, pred, strict=True))
    assert counts["exact_matches"] == exact

"""evaluate_sentences: the key contract, consistency with the metric functions, and rendering."""

from __future__ import annotations

import pytest
from rich.console import Console

from lsfa.errors import LsfaError
from lsfa.eval.metrics import by_length_prf, partial_prf, strict_prf
from lsfa.eval.report import evaluate_sentences, render_report

PRF = {"precision", "recall", "f1"}
ERRORS = {
    "exact_matches",
    "too_short",
    "too_long",
    "boundary_off",
    "completely_wrong",
    "correct_span_wrong_type",
    "false_positives",
    "false_negatives",
}

TOKENS = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn", "of", "New", "York", "City"]]
GOLD = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"]]
PRED = [["B-ORG", "O", "I-MISC", "O"], ["B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC"]]


def test_result_has_exactly_the_documented_keys():
    result = evaluate_sentences(GOLD, PRED, TOKENS)
    assert set(result) == {
        "micro",
        "per_type",
        "set",
        "partial",
        "by_length",
        "errors",
        "errors_pct",
        "n_sentences",
        "n_tokens",
    }
    assert set(result["micro"]) == PRF | {"support"}
    assert set(result["per_type"]) == {"ORG", "MISC", "PER", "LOC"}
    assert all(set(row) == PRF | {"support"} for row in result["per_type"].values())
    assert set(result["set"]) == PRF and set(result["partial"]) == PRF
    assert set(result["by_length"]) == {"1", "2", "3+"}
    assert set(result["errors"]) == ERRORS
    assert set(result["errors_pct"]) == ERRORS - {"exact_matches"}
    assert (result["n_sentences"], result["n_tokens"]) == (2, 10)


def test_result_agrees_with_the_metric_functions():
    result = evaluate_sentences(GOLD, PRED, TOKENS, mode="conlleval")
    strict = strict_prf(GOLD, PRED, mode="conlleval")
    assert result["micro"] == strict["micro"] and result["per_type"] == strict["per_type"]
    assert result["partial"] == partial_prf(GOLD, PRED, mode="conlleval")
    assert result["by_length"] == by_length_prf(GOLD, PRED, mode="conlleval")
    # gold {EU/ORG, German/MISC}, {Peter Blackburn/PER, New York City/LOC}; pred misses Peter Blackburn
    assert result["set"]["recall"] == pytest.approx(3 / 4)
    assert result["errors"]["too_short"] == 1 and result["errors"]["exact_matches"] == 3


def test_identical_input_scores_one_everywhere():
    result = evaluate_sentences(GOLD, GOLD, TOKENS)
    for block in (result["micro"], result["set"], result["partial"]):
        assert (block["precision"], block["recall"], block["f1"]) == (1.0, 1.0, 1.0)
    assert result["errors"]["exact_matches"] == 4
    assert sum(result["errors"].values()) == 4


def test_set_metric_uses_the_words():
    # same tags, different words in prediction's sentence: the set metric only sees gold tokens, so the
    # surface comes from the shared tokens; a repeated mention counts once.
    tokens = [["Paris", "and", "Paris"]]
    gold = [["B-LOC", "O", "B-LOC"]]
    pred = [["B-LOC", "O", "O"]]
    result = evaluate_sentences(gold, pred, tokens)
    assert result["micro"]["recall"] == 0.5
    assert result["set"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_inconsistent_inputs_are_clear_errors():
    with pytest.raises(LsfaError, match="1 token sentences but 2 tag sentences"):
        evaluate_sentences(GOLD, PRED, TOKENS[:1])
    with pytest.raises(LsfaError, match="sentence 1: 5 tokens but 6 tags"):
        evaluate_sentences(GOLD, PRED, [TOKENS[0], TOKENS[1][:5]])
    with pytest.raises(LsfaError, match="sentence 0: gold has 4 tags but prediction has 3"):
        evaluate_sentences(GOLD, [PRED[0][:3], PRED[1]], TOKENS)
    with pytest.raises(LsfaError, match="sentence 1, word 0"):
        evaluate_sentences(GOLD, [PRED[0], ["S-PER", *PRED[1][1:]]], TOKENS)


def test_render_report_shows_types_scores_and_errors():
    console = Console(record=True, width=120)
    console.print(render_report(evaluate_sentences(GOLD, PRED, TOKENS), title="dev"))
    text = console.export_text()
    for expected in ("dev: 2 sentences, 10 tokens", "ORG", "LOC", "micro (strict)", "length 3+", "too short"):
        assert expected in text

"""Token-level scores for flat tag tasks (POS): accuracy, and per-tag P/R/F1 against a hand count."""

import pytest

from lsfa.errors import LsfaError
from lsfa.eval.tokens import token_scores


def test_accuracy_and_per_tag_scores_by_hand() -> None:
    gold = [["NN", "VB", "DT"], ["NN"]]
    pred = [["NN", "NN", "DT"], ["VB"]]
    scores = token_scores(gold, pred)
    assert scores["accuracy"] == pytest.approx(2 / 4) and scores["micro"]["f1"] == scores["accuracy"]
    assert scores["per_tag"]["NN"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["per_tag"]["VB"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_tag"]["DT"]["f1"] == 1.0 and scores["n_tokens"] == 4


def test_length_mismatches_are_errors() -> None:
    with pytest.raises(LsfaError, match="sentence 0: 2 gold tags but 1 predicted"):
        token_scores([["A", "B"]], [["A"]])
    with pytest.raises(LsfaError, match="1 gold sentences but 2 predicted"):
        token_scores([["A"]], [["A"], ["B"]])

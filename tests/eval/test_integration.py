"""End to end on the real CoNLL-2003 test split (skipped without LSFA_DATA_DIR)."""

from __future__ import annotations

import random

import pytest

from lsfa.data.conll import read_conll
from lsfa.eval.files import evaluate_files
from tests.eval.oracle import assert_matches_seqeval, seqeval_report

pytestmark = pytest.mark.integration

TAGS = ["O", *(f"{prefix}-{kind}" for prefix in "BI" for kind in ("PER", "ORG", "LOC", "MISC"))]


@pytest.fixture
def conll_test(data_dir):
    path = data_dir / "conll2003" / "test.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_gold_against_itself_is_perfect(conll_test):
    result = evaluate_files(conll_test, conll_test)
    assert result["micro"]["f1"] == 1.0
    assert result["micro"]["support"] == 1668 + 702 + 1661 + 1617  # README: test LOC, MISC, ORG, PER
    assert result["n_sentences"] == 3453
    assert result["errors"]["exact_matches"] == result["micro"]["support"]


@pytest.mark.parametrize("mode", ["strict", "conlleval"])
def test_perturbed_prediction_matches_seqeval(conll_test, tmp_path, mode):
    gold = read_conll(conll_test).sentences
    rng = random.Random(13)
    pred_tags = [[rng.choice(TAGS) if rng.random() < 0.1 else tag for tag in s.tags] for s in gold]
    pred_path = tmp_path / "pred.txt"
    with pred_path.open("w", encoding="utf-8") as stream:
        for sentence, tags in zip(gold, pred_tags, strict=True):
            stream.writelines(f"{token} {tag}\n" for token, tag in zip(sentence.tokens, tags, strict=True))
            stream.write("\n")

    result = evaluate_files(conll_test, pred_path, scheme="IOB2", mode=mode)
    expected = seqeval_report([s.tags for s in gold], pred_tags, "IOB2", mode)
    assert_matches_seqeval(result, expected)
    assert 0.5 < result["micro"]["f1"] < 1.0  # the flips really changed something

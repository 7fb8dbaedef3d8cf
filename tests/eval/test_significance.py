"""The paired bootstrap of two taggers' strict F1 (lsfa.eval.significance)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lsfa.eval.metrics import strict_prf
from lsfa.eval.significance import f1_of, paired_bootstrap, unit_counts

GOLD_SENTENCE = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]


def corrupt(tags: list[str], rng: random.Random, rate: float) -> list[str]:
    """Tags with each entity start turned into ``O`` (and its continuation dropped) with probability ``rate``."""
    out, dropping = [], False
    for tag in tags:
        if tag.startswith("B-"):
            dropping = rng.random() < rate
        out.append("O" if dropping and tag != "O" else tag)
        if tag == "O":
            dropping = False
    return out


def systems(n: int, rate_a: float, rate_b: float, seed: int = 0):
    rng = random.Random(seed)
    gold = [list(GOLD_SENTENCE) for _ in range(n)]
    return gold, [corrupt(g, rng, rate_a) for g in gold], [corrupt(g, rng, rate_b) for g in gold]


def test_unit_counts_sum_to_the_strict_micro_scores() -> None:
    gold, a, _ = systems(50, 0.3, 0.0)
    totals = unit_counts(gold, a).sum(axis=0)
    micro = strict_prf(gold, a)["micro"]
    assert float(f1_of(totals)) == pytest.approx(micro["f1"], abs=1e-12)
    assert totals[2] == micro["support"]


def test_groups_pool_their_sentences() -> None:
    gold, a, _ = systems(6, 0.5, 0.0)
    by_document = unit_counts(gold, a, groups=[0, 0, 1, 1, 1, 2])
    assert by_document.shape == (3, 3)
    assert (by_document.sum(axis=0) == unit_counts(gold, a).sum(axis=0)).all()
    with pytest.raises(ValueError, match="2 group ids for 6 sentences"):
        unit_counts(gold, a, groups=[0, 1])


def test_a_clear_gain_is_significant_and_its_interval_holds_it() -> None:
    gold, a, b = systems(400, 0.3, 0.1)
    result = paired_bootstrap(gold, a, b, samples=2000)
    assert result["delta"] == pytest.approx(result["f1_b"] - result["f1_a"])
    assert result["delta"] > 0.05
    low, high = result["ci95"]
    assert 0 < low < result["delta"] < high
    assert result["p_b_not_better"] < 0.01
    assert result["units"] == 400


def test_identical_systems_are_never_better() -> None:
    gold, a, _ = systems(100, 0.3, 0.0)
    result = paired_bootstrap(gold, a, a, samples=500)
    assert result["delta"] == 0 and result["ci95"] == [0.0, 0.0] and result["p_b_not_better"] == 1.0


def test_a_tiny_gain_on_few_sentences_is_not_significant() -> None:
    """Swapping two systems of equal error rate: the gain is noise, the interval straddles zero."""
    gold, a, b = systems(60, 0.2, 0.2, seed=3)
    result = paired_bootstrap(gold, a, b, samples=2000, seed=1)
    low, high = result["ci95"]
    assert low < 0 < high
    assert 0.05 < result["p_b_not_better"] < 0.95


def test_draws_are_reproducible() -> None:
    gold, a, b = systems(80, 0.3, 0.2)
    first = paired_bootstrap(gold, a, b, samples=700, seed=5)
    assert paired_bootstrap(gold, a, b, samples=700, seed=5) == first
    assert np.isfinite(first["ci95"]).all()
    with pytest.raises(ValueError, match="samples"):
        paired_bootstrap(gold, a, b, samples=0)

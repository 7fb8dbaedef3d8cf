"""Is tagger B's strict span F1 really better than tagger A's on the same test set? A paired bootstrap.

One test split gives one F1 per system; the difference between two systems carries sampling noise from which
sentences happen to be in the split. The paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012) draws
the test units (sentences, or whole documents when their sentences are not independent) with replacement,
scores both systems on every draw, and reads the spread of the F1 difference: a 95% interval and the share
of draws where B is not better than A (a one-sided p-value). Both systems are scored on the *same* draws,
which is what makes the test paired and much tighter than comparing two separate intervals.

Each unit is reduced once to its strict-match counts (true positives, predicted and gold entities), so a
draw costs a sum over integer arrays: 10,000 draws of a 5,000-sentence split take about a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lsfa.eval.metrics import decode_pair
from lsfa.eval.spans import Mode

CHUNK = 256
"""Draws computed at once (memory: CHUNK x units integers)."""


def unit_counts(
    gold_seqs: Sequence[Sequence[str]],
    pred_seqs: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
    groups: Sequence[int] | None = None,
) -> np.ndarray:
    """Per unit, ``[true positives, predicted entities, gold entities]`` of strict matching (an ``[n, 3]`` array).

    Units are sentences, or the groups given by ``groups`` (one id per sentence, e.g. document ids).
    """
    gold_spans, pred_spans = decode_pair(gold_seqs, pred_seqs, scheme, mode)
    ids = list(range(len(gold_seqs))) if groups is None else list(groups)
    if len(ids) != len(gold_seqs):
        raise ValueError(f"{len(ids)} group ids for {len(gold_seqs)} sentences")
    index = {unit: k for k, unit in enumerate(dict.fromkeys(ids))}
    counts = np.zeros((len(index), 3), dtype=np.int64)
    for unit, gold, pred in zip(ids, gold_spans, pred_spans, strict=True):
        gold_set, pred_set = set(gold), set(pred)
        counts[index[unit]] += (len(gold_set & pred_set), len(pred_set), len(gold_set))
    return counts


def f1_of(totals: np.ndarray) -> np.ndarray:
    """Micro F1 from summed ``[tp, predicted, gold]`` (last axis), with seqeval's zero conventions."""
    tp, predicted, gold = totals[..., 0], totals[..., 1], totals[..., 2]
    denominator = predicted + gold
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape, dtype=float), where=denominator > 0)


def paired_bootstrap(
    gold_seqs: Sequence[Sequence[str]],
    pred_a: Sequence[Sequence[str]],
    pred_b: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
    groups: Sequence[int] | None = None,
    samples: int = 10_000,
    seed: int = 0,
) -> dict[str, float | int | list[float]]:
    """F1 of A and B, their difference ``B - A``, its 95% bootstrap interval and ``p_b_not_better``: the share
    of draws in which B's F1 is not above A's (small: B's gain is unlikely to be an accident of the split)."""
    if samples < 1:
        raise ValueError("samples must be at least 1")
    a = unit_counts(gold_seqs, pred_a, scheme, mode, groups)
    b = unit_counts(gold_seqs, pred_b, scheme, mode, groups)
    rng = np.random.default_rng(seed)
    deltas = np.empty(samples)
    for start in range(0, samples, CHUNK):
        size = min(CHUNK, samples - start)
        draws = rng.integers(0, len(a), size=(size, len(a)))
        deltas[start : start + size] = f1_of(b[draws].sum(axis=1)) - f1_of(a[draws].sum(axis=1))
    f1_a, f1_b = float(f1_of(a.sum(axis=0))), float(f1_of(b.sum(axis=0)))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {
        "f1_a": f1_a,
        "f1_b": f1_b,
        "delta": f1_b - f1_a,
        "ci95": [float(low), float(high)],
        "p_b_not_better": float(np.mean(deltas <= 0)),
        "units": len(a),
        "samples": samples,
        "seed": seed,
    }

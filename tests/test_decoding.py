"""Constrained decoding, span confidences and calibration helpers (lsfa.decoding)."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from lsfa.data.schemes import to_spans
from lsfa.decoding import (
    check_threshold,
    expected_calibration_error,
    fit_confidence_temperature,
    fit_temperature,
    reliability_bins,
    span_confidences,
    threshold_curve,
    threshold_for_precision,
    transition_rules,
    viterbi,
)
from lsfa.errors import LsfaError

LABELS = {
    "IOB2": ("O", "B-A", "I-A", "B-B", "I-B"),
    "BIOES": ("O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"),
}


def _well_formed(tags: tuple[str, ...], scheme: str) -> bool:
    """The schemes' rules, written independently of lsfa.decoding so the brute force checks it."""
    prev = "O"
    for tag in tags:
        p, _, kind = tag.partition("-")
        q, _, prev_kind = prev.partition("-")
        if scheme == "IOB2" and p == "I" and not (q in ("B", "I") and prev_kind == kind):
            return False
        if scheme == "BIOES":
            inside = q in ("B", "I")
            if inside != (p in ("I", "E")) or (inside and prev_kind != kind):
                return False
        prev = tag
    return scheme == "IOB2" or prev.partition("-")[0] in ("O", "E", "S")


@functools.lru_cache
def _all_sequences(scheme: str, n: int) -> torch.Tensor:
    """Every well-formed sequence of n label indices, as an [S, n] tensor."""
    labels = LABELS[scheme]
    seqs = [
        s for s in itertools.product(range(len(labels)), repeat=n) if _well_formed(tuple(labels[i] for i in s), scheme)
    ]
    return torch.tensor(seqs, dtype=torch.long).reshape(len(seqs), n)


def _brute_force(log_probs: torch.Tensor, scheme: str) -> tuple[list[int], float]:
    n = log_probs.shape[0]
    if n == 0:
        return [], 0.0
    seqs = _all_sequences(scheme, n)
    scores = log_probs[torch.arange(n), seqs].sum(dim=-1)
    best = int(scores.argmax())
    return seqs[best].tolist(), float(scores[best])


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
@pytest.mark.parametrize("seed", range(25))
def test_viterbi_equals_brute_force_on_padded_batches(scheme: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = LABELS[scheme]
    rules = transition_rules(labels, scheme)
    time = int(torch.randint(1, 6, (1,), generator=gen))
    lengths = torch.randint(0, time + 1, (4,), generator=gen)
    lengths[0] = time
    log_probs = torch.log_softmax(2 * torch.randn(4, time, len(labels), generator=gen, dtype=torch.float64), -1)
    for row, n in enumerate(lengths.tolist()):
        log_probs[row, n:] = 50.0 * torch.randn(time - n, len(labels), generator=gen, dtype=torch.float64)
    decoded = viterbi(log_probs, lengths, rules)
    for row, n in enumerate(lengths.tolist()):
        expected, best = _brute_force(log_probs[row, :n], scheme)
        assert decoded[row] == expected
        assert math.isclose(float(log_probs[row, torch.arange(n), decoded[row]].sum()), best, abs_tol=1e-9)
        assert _well_formed(tuple(labels[i] for i in decoded[row]), scheme)


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
def test_rules_match_the_written_definition(scheme: str) -> None:
    labels = LABELS[scheme]
    rules = transition_rules(labels, scheme)
    for i, a in enumerate(labels):
        assert bool(rules.start[i] and rules.end[i]) == _well_formed((a,), scheme)
        for j, b in enumerate(labels):
            ok = bool(rules.allowed[i, j] and rules.start[i] and rules.end[j])
            assert ok == _well_formed((a, b), scheme)


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES", "IOBES"])
def test_viterbi_output_is_always_well_formed(scheme: str) -> None:
    labels = LABELS["IOB2" if scheme == "IOB2" else "BIOES"]
    rules = transition_rules(labels, scheme)
    gen = torch.Generator().manual_seed(7)
    log_probs = torch.log_softmax(3 * torch.randn(16, 12, len(labels), generator=gen), -1)
    lengths = torch.randint(0, 13, (16,), generator=gen)
    for row, n in zip(viterbi(log_probs, lengths, rules), lengths.tolist(), strict=True):
        assert len(row) == n
        assert _well_formed(tuple(labels[i] for i in row), rules.scheme)


def test_argmax_can_be_ill_formed_where_viterbi_repairs_it() -> None:
    labels = ("O", "B-PER", "I-PER")
    probs = torch.tensor([[[0.45, 0.40, 0.15], [0.10, 0.10, 0.80]]])
    assert probs.log().argmax(-1).tolist() == [[0, 2]]  # O I-PER: ill-formed
    assert viterbi(probs.log(), [2], transition_rules(labels, "IOB2")) == [[1, 2]]  # B-PER I-PER: 0.32 > 0.045
    assert viterbi(probs.log(), [0], transition_rules(labels, "IOB2")) == [[]]


def test_span_confidence_is_the_hand_computed_product() -> None:
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    probs = torch.tensor(
        [
            [0.10, 0.70, 0.10, 0.05, 0.05],
            [0.10, 0.10, 0.60, 0.10, 0.10],
            [0.80, 0.05, 0.10, 0.03, 0.02],
            [0.10, 0.05, 0.05, 0.70, 0.10],
        ]
    )
    got = span_confidences(probs, ["B-PER", "I-PER", "O", "B-LOC"], labels)
    assert [g[:3] for g in got] == [(0, 2, "PER"), (3, 4, "LOC")]
    assert got[0][3] == pytest.approx(0.7 * 0.6 * (1 - 0.1))
    assert got[1][3] == pytest.approx(0.7)  # sentence end: no continuation factor
    lenient = span_confidences(probs[:2], ["O", "I-PER"], labels)
    assert lenient == [(1, 2, "PER", pytest.approx(0.6))]


def test_bioes_span_confidence_subtracts_both_continuations() -> None:
    labels = ("O", "B-X", "I-X", "E-X", "S-X")
    probs = torch.tensor(
        [
            [0.1, 0.1, 0.1, 0.1, 0.6],
            [0.1, 0.5, 0.2, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.6, 0.1],
            [0.5, 0.1, 0.2, 0.1, 0.1],
        ]
    )
    got = span_confidences(probs, ["S-X", "B-X", "E-X", "O"], labels)
    assert [g[:3] for g in got] == [(0, 1, "X"), (1, 3, "X")]
    assert got[0][3] == pytest.approx(0.6 * (1 - 0.2 - 0.1))
    assert got[1][3] == pytest.approx(0.5 * 0.6 * (1 - 0.2 - 0.1))


def test_the_span_reader_of_span_confidences_is_lenient() -> None:
    assert to_spans(["I-A", "I-A", "I-B", "O", "B-A", "B-A"]) == [
        (0, 2, "A"),
        (2, 3, "B"),
        (4, 5, "A"),
        (5, 6, "A"),
    ]
    assert to_spans(["B-A", "E-A", "I-A", "S-B", "E-B"]) == [(0, 2, "A"), (2, 3, "A"), (3, 4, "B"), (4, 5, "B")]
    assert to_spans([]) == []


def _nll(logits: torch.Tensor, gold: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, gold))


def test_fit_temperature_recovers_over_confidence() -> None:
    gen = torch.Generator().manual_seed(0)
    true = 1.5 * torch.randn(20_000, 5, generator=gen)
    gold = torch.multinomial(torch.softmax(true, -1), 1, generator=gen).squeeze(1)
    model = 3 * true
    temperature = fit_temperature(model, gold)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert _nll(model, gold, temperature) < _nll(model, gold, 1.0)
    padded = torch.cat([gold[:100], torch.full((50,), -100)])
    noise = torch.cat([model[:100], 100 * torch.randn(50, 5, generator=gen)])
    assert fit_temperature(noise, padded) == pytest.approx(fit_temperature(model[:100], gold[:100]), rel=1e-4)
    assert fit_temperature(model[:3], torch.full((3,), -100)) == 1.0
    with torch.inference_mode():
        assert fit_temperature(model, gold) == pytest.approx(temperature)


def test_fit_temperature_is_clamped() -> None:
    logits = torch.tensor([[0.1, 0.0], [0.0, 0.1]])  # all right: T -> 0; all wrong: T -> infinity
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(0.05)
    assert fit_temperature(logits, torch.tensor([1, 0])) == pytest.approx(20.0)


def _over_confident_entities(true_t: float, n: int = 5_000):
    """Entities whose real chance of being right is p, reported as sigmoid(true_t * logit(p) / T)."""
    gen = torch.Generator().manual_seed(3)
    logit = 2.0 * torch.randn(n, generator=gen)
    right = (torch.rand(n, generator=gen) < torch.sigmoid(logit)).tolist()
    calls: list[float] = []

    def outcomes(temperature: float):
        calls.append(temperature)
        return torch.sigmoid(true_t * logit / temperature).tolist(), right

    return outcomes, calls


def test_fit_confidence_temperature_recovers_over_and_under_confidence() -> None:
    for true_t in (0.6, 1.0, 2.5):
        outcomes, calls = _over_confident_entities(true_t)
        temperature = fit_confidence_temperature(outcomes)
        assert temperature == pytest.approx(true_t, rel=0.1)
        assert len(calls) == 33 + 21  # the grid, then golden-section steps that each decode once
        assert min(calls) >= 0.25 - 1e-9 and max(calls) <= 8.0 + 1e-9
        confidences, right = outcomes(temperature)
        before, _ = outcomes(1.0)
        if true_t != 1.0:  # calibrating must lower the calibration error it was fitted to remove
            assert expected_calibration_error(confidences, right) < expected_calibration_error(before, right)


def test_fit_confidence_temperature_edges() -> None:
    assert fit_confidence_temperature(lambda t: ([], [])) == 1.0  # nothing predicted: leave T alone
    all_right = fit_confidence_temperature(lambda t: ([0.9**t] * 4, [True] * 4))  # sharper as T falls
    assert all_right == pytest.approx(0.25, rel=1e-6)  # degenerate sets stop at the search bounds
    with pytest.raises(ValueError, match="low < high"):
        fit_confidence_temperature(lambda t: ([0.5], [True]), low=2.0, high=1.0)
    with pytest.raises(ValueError, match="outcomes"):
        fit_confidence_temperature(lambda t: ([0.5, 0.6], [True]))


def test_expected_calibration_error() -> None:
    gen = torch.Generator().manual_seed(1)
    conf = torch.rand(20_000, generator=gen)
    calibrated = (torch.rand(20_000, generator=gen) < conf).tolist()
    assert expected_calibration_error(conf.tolist(), calibrated) < 0.03
    over = (0.5 + 0.5 * conf).tolist()
    assert expected_calibration_error(over, calibrated) > 0.2
    assert expected_calibration_error([0.9, 0.9, 0.1], [True, False, False]) == pytest.approx(0.3)
    assert expected_calibration_error([], []) == 0.0


def test_reliability_bins() -> None:
    table = reliability_bins([0.05, 0.15, 1.0, 0.95], [True, False, True, False], bins=10)
    assert len(table) == 10
    assert table[0] == pytest.approx((0.0, 0.1, 1, 0.05, 1.0))
    assert table[1] == pytest.approx((0.1, 0.2, 1, 0.15, 0.0))
    assert table[5] == (0.5, 0.6, 0, 0.0, 0.0)
    assert table[9] == pytest.approx((0.9, 1.0, 2, 0.975, 0.5))


def test_threshold_curve_and_threshold_for_precision() -> None:
    gold = [(0, (0, 2, "PER")), (0, (3, 4, "LOC")), (1, (1, 2, "ORG"))]
    predicted = [(0, (0, 2, "PER"), 0.9), (0, (3, 4, "PER"), 0.6), (1, (1, 2, "ORG"), 0.4)]
    curve = threshold_curve(predicted, gold, [0.0, 0.5, 0.8, 0.95])
    assert [row["kept"] for row in curve] == [3, 2, 1, 0]
    assert [row["correct"] for row in curve] == [2, 1, 1, 0]
    assert [row["precision"] for row in curve] == pytest.approx([2 / 3, 0.5, 1.0, 0.0])
    assert [row["recall"] for row in curve] == pytest.approx([2 / 3, 1 / 3, 1 / 3, 0.0])
    assert [row["f1"] for row in curve] == pytest.approx([2 / 3, 0.4, 0.5, 0.0])
    assert threshold_for_precision(curve, 0.9) == 0.8
    assert threshold_for_precision(curve, 0.6) == 0.0
    assert threshold_for_precision(curve[:2], 0.9) is None
    assert threshold_curve([], gold, [0.5])[0]["precision"] == 0.0
    with pytest.raises(LsfaError, match=r"thresholds\[1\]"):
        threshold_curve(predicted, gold, [0.1, 2.0])


@pytest.mark.parametrize("value", [-0.1, 1.5, "x", True, math.nan])
def test_check_threshold_rejects(value: object) -> None:
    with pytest.raises(LsfaError, match=r"min_confidence.*between 0 and 1"):
        check_threshold(value, "min_confidence")


def test_check_threshold_accepts() -> None:
    assert check_threshold(0, "t") == 0.0
    assert check_threshold(1, "t") == 1.0
    assert check_threshold(0.25, "t") == 0.25


def test_unknown_scheme_and_bad_labels_are_named() -> None:
    with pytest.raises(LsfaError, match=r"unknown tag scheme 'BILOU'"):
        transition_rules(["O"], "BILOU")
    with pytest.raises(LsfaError, match=r"'X-PER'"):
        transition_rules(["O", "X-PER"], "IOB2")
    with pytest.raises(LsfaError, match=r"'E-PER'"):
        transition_rules(["O", "B-PER", "E-PER"], "IOB2")
    with pytest.raises(LsfaError, match=r"'B-'"):
        transition_rules(["O", "B-"], "BIOES")
    assert transition_rules(["O", "S-PER"], "iobes").scheme == "BIOES"


def test_viterbi_refuses_mismatched_or_impossible_input() -> None:
    rules = transition_rules(["O", "B-A", "I-A"], "IOB2")
    with pytest.raises(LsfaError, match="3"):
        viterbi(torch.zeros(1, 2, 4), [2], rules)
    impossible = transition_rules(["I-A"], "IOB2")
    with pytest.raises(LsfaError, match="no well-formed"):
        viterbi(torch.zeros(1, 1, 1), [1], impossible)
    with pytest.raises(ValueError, match="lengths"):
        viterbi(torch.zeros(1, 2, 3), [3], rules)

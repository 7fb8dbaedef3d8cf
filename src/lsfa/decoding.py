"""Decoding per-word tag distributions of a BIO-style NER tagger, and calibrating its confidences.

A token classifier scores each word independently, so its argmax can be ill-formed (``O I-PER``). Constrained
Viterbi returns the most probable *well-formed* sequence instead; span confidences, temperature scaling, ECE and
threshold curves then let a caller trade recall for precision with numbers that mean what they say.
Everything here is a pure function of tensors and lists, so it can be tested without a model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lsfa.data.schemes import BIOES, IOB2, SCHEME_PREFIXES, Span, normalise_scheme, parse_tag, to_spans
from lsfa.errors import LsfaError

VITERBI_SCHEMES = (IOB2, BIOES)
"""The schemes with transition rules here (IOB1's ``B-`` depends on the previous entity's type, not a mask)."""


@dataclass(frozen=True, eq=False)
class TransitionRules:
    """Which tag sequences are well-formed: ``allowed[p, n]`` (tag p may precede tag n), ``start``, ``end``."""

    labels: tuple[str, ...]
    scheme: str
    allowed: Tensor
    start: Tensor
    end: Tensor


def _split(label: str, scheme: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")`` (:func:`lsfa.data.schemes.parse_tag`), refusing a
    prefix ``scheme`` does not have; a bad label is a user error."""
    prefixes = SCHEME_PREFIXES[scheme]
    try:
        prefix, kind = parse_tag(label)
    except ValueError:
        prefix, kind = "?", ""
    if prefix != "O" and prefix not in prefixes:
        raise LsfaError(f"label {label!r} is neither 'O' nor one of {'/'.join(prefixes)} followed by '-TYPE'")
    return prefix, kind


def _scheme_name(scheme: str) -> str:
    name = normalise_scheme(scheme)
    if name not in VITERBI_SCHEMES:
        raise LsfaError(f"tagging scheme {scheme!r} has no viterbi transitions here; supported: IOB2, BIOES")
    return name


def _may_follow(prev: tuple[str, str], nxt: tuple[str, str], scheme: str) -> bool:
    """The scheme's one-step rule, written out as the docs state it."""
    (p, p_kind), (n, n_kind) = prev, nxt
    if scheme == "IOB2":
        return n != "I" or (p in ("B", "I") and p_kind == n_kind)
    if p in ("B", "I"):
        return n in ("I", "E") and p_kind == n_kind
    return n in ("O", "B", "S")


def transition_rules(labels: Sequence[str], scheme: str) -> TransitionRules:
    """Build the constraint masks for ``labels`` under ``scheme`` (IOB2 or BIOES, alias IOBES)."""
    name = _scheme_name(scheme)
    if len(set(labels)) != len(labels):
        raise LsfaError(f"duplicate labels in {list(labels)!r}")
    parts = [_split(label, name) for label in labels]
    allowed = torch.tensor([[_may_follow(p, n, name) for n in parts] for p in parts], dtype=torch.bool)
    if name == "IOB2":
        start = torch.tensor([p != "I" for p, _ in parts], dtype=torch.bool)
        end = torch.ones(len(parts), dtype=torch.bool)
    else:
        start = torch.tensor([p in ("O", "B", "S") for p, _ in parts], dtype=torch.bool)
        end = torch.tensor([p in ("O", "E", "S") for p, _ in parts], dtype=torch.bool)
    return TransitionRules(tuple(labels), name, allowed.reshape(len(parts), len(parts)), start, end)


def _lengths(log_probs: Tensor, lengths: Tensor | Sequence[int]) -> Tensor:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [batch, time, labels], got shape {tuple(log_probs.shape)}")
    out = torch.as_tensor(lengths, dtype=torch.long, device=log_probs.device).reshape(-1)
    batch, time = log_probs.shape[:2]
    if out.numel() != batch or bool(((out < 0) | (out > time)).any()):
        raise ValueError(f"lengths {out.tolist()} do not fit log_probs of shape {tuple(log_probs.shape)}")
    return out


def _mask(ok: Tensor, like: Tensor) -> Tensor:
    """0 where allowed, -inf where forbidden: transitions constrain, they do not score."""
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    return torch.where(ok.to(like.device), zero, torch.full_like(zero, -math.inf))


def viterbi(log_probs: Tensor, lengths: Tensor | Sequence[int], rules: TransitionRules) -> list[list[int]]:
    """Most probable well-formed tag sequence per row (sum of per-word log-probabilities under ``rules``).

    Vectorised over the batch, looping over time only. Positions at or after a row's length are padding and are
    never read; the end constraint applies at each row's own last word. Raises LsfaError when a row has no
    well-formed sequence of finite score (e.g. labels without any allowed start).
    """
    lens = _lengths(log_probs, lengths)
    batch, time, n_labels = log_probs.shape
    if n_labels != len(rules.labels):
        raise LsfaError(f"log_probs have {n_labels} labels but the rules were built for {len(rules.labels)}")
    if time == 0:
        return [[] for _ in range(batch)]
    trans = _mask(rules.allowed, log_probs)
    score = log_probs[:, 0] + _mask(rules.start, log_probs)
    back = torch.zeros(batch, time, n_labels, dtype=torch.long, device=log_probs.device)
    for t in range(1, time):
        best, back[:, t] = (score.unsqueeze(2) + trans).max(dim=1)
        score = torch.where((t < lens).unsqueeze(1), best + log_probs[:, t], score)
    final, cur = (score + _mask(rules.end, log_probs)).max(dim=1)
    if bool((torch.isneginf(final) & (lens > 0)).any()):
        raise LsfaError(f"no well-formed {rules.scheme} tag sequence has a finite score")
    tags = torch.zeros(batch, time, dtype=torch.long, device=log_probs.device)
    for t in range(time - 1, -1, -1):
        tags[:, t] = cur
        cur = torch.where(t < lens, back[:, t].gather(1, cur.unsqueeze(1)).squeeze(1), cur)
    return [row[:n] for row, n in zip(tags.tolist(), lens.tolist(), strict=True)]


def span_confidences(probs: Tensor, tags: Sequence[str], labels: Sequence[str]) -> list[tuple[int, int, str, float]]:
    """``(start, end_exclusive, type, confidence)`` for each span of the decoded ``tags`` of one sentence.

    ``probs`` is ``[T, L]`` (probabilities, columns named by ``labels``; rows past ``len(tags)`` are ignored).
    confidence = product over the span's words of P(word = its decoded tag) × P(the next word does not continue
    the span), i.e. ``1 − P(I-type) − P(E-type)`` (the E term only where the labels have E-type, so IOB2 gives
    ``1 − P(I-type)``), and 1 when the span ends the sentence. It approximates the probability that exactly this
    span, with these boundaries, is an entity, treating words as independent as the tagger does.
    """
    if probs.dim() != 2 or probs.shape[1] != len(labels) or probs.shape[0] < len(tags):
        raise ValueError(f"probs of shape {tuple(probs.shape)} do not fit {len(tags)} tags and {len(labels)} labels")
    column = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(tags) - set(column))
    if unknown:
        raise LsfaError(f"tags {unknown} are not among the labels {list(labels)}")
    rows = probs.detach().double().cpu().tolist()
    out = []
    for start, end, kind in to_spans(tags):
        conf = math.prod(rows[w][column[tags[w]]] for w in range(start, end))
        if end < len(tags):
            cont = sum(rows[end][column[c]] for c in (f"I-{kind}", f"E-{kind}") if c in column)
            conf *= max(0.0, 1.0 - cont)
        out.append((start, end, kind, conf))
    return out


def fit_temperature(logits: Tensor, gold: Tensor, max_iter: int = 100) -> float:
    """Temperature T minimising the mean NLL of softmax(logits / T), fitted on held-out rows (gold -100 ignored).

    Optimises log T so T stays positive; the result is clamped to [0.05, 20] (1.0 when there is nothing to fit),
    because a degenerate set (all right or all wrong) would otherwise drive T to 0 or infinity.
    """
    with torch.inference_mode(False), torch.enable_grad():
        keep = gold.reshape(-1) != -100
        x = logits.detach().reshape(-1, logits.shape[-1])[keep].double().clone()
        y = gold.detach().reshape(-1)[keep].long().clone()
        if y.numel() == 0:
            return 1.0
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
        value = float(log_t.detach().exp())
    return min(20.0, max(0.05, value)) if math.isfinite(value) else 1.0


def fit_confidence_temperature(
    outcomes: Callable[[float], tuple[Sequence[float], Sequence[bool]]],
    low: float = 0.25,
    high: float = 8.0,
    grid: int = 33,
    refine: int = 20,
) -> float:
    """Temperature T minimising the log loss of entity confidences against exact-match correctness on held-out data.

    ``outcomes(T)`` decodes the held-out split at T and returns each predicted entity's confidence and whether it
    is exactly right. Why beside :func:`fit_temperature`: an entity's confidence is a product over its words and its
    boundary, so a T that calibrates single words need not calibrate the spans users threshold; the calibration
    report measures both (on the full-scale CoNLL-2003 taggers this fit gave a higher test ECE than the word fit,
    docs/results/decoding-confidence.md). The log
    loss is a proper scoring rule and, unlike ECE, does not jump as entities cross bin edges. Searched on a
    log-spaced grid over [low, high], then refined by golden-section search between the best grid point's
    neighbours; 1.0 when there is no entity to fit on.
    """
    if not 0 < low < high or grid < 3:
        raise ValueError(f"need 0 < low < high and grid >= 3, got low={low}, high={high}, grid={grid}")
    cache: dict[float, float] = {}

    def loss(log_t: float) -> float:
        if log_t not in cache:
            confidences, correct = outcomes(math.exp(log_t))
            value = _log_loss(confidences, correct)
            cache[log_t] = math.inf if math.isnan(value) else value
        return cache[log_t]

    points = [math.log(low) + k * (math.log(high) - math.log(low)) / (grid - 1) for k in range(grid)]
    losses = [loss(x) for x in points]
    if all(math.isinf(v) for v in losses):
        return 1.0
    best = min(range(grid), key=lambda k: losses[k])
    a, b = points[max(best - 1, 0)], points[min(best + 1, grid - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(refine):  # one new evaluation per step: the kept inner point is reused
        if loss(c) <= loss(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return math.exp(min(cache, key=cache.__getitem__))


def _log_loss(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean binary log loss of ``confidences`` (clamped away from 0 and 1); NaN for no entities."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if not confidences:
        return math.nan
    eps = 1e-12
    total = 0.0
    for conf, hit in zip(confidences, correct, strict=True):
        p = min(1 - eps, max(eps, float(conf)))
        total -= math.log(p) if hit else math.log(1 - p)
    return total / len(confidences)


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[tuple[float, float, int, float, float]]:
    """Per equal-width bin over [0, 1]: (lower, upper, count, mean confidence, accuracy); empty bins give 0.0s.

    Confidence 1.0 falls in the last bin. Used both for reliability diagrams and for :func:`expected_calibration_error`.
    """
    if len(confidences) != len(correct) or bins < 1:
        raise ValueError(f"{len(confidences)} confidences, {len(correct)} outcomes, {bins} bins")
    conf = torch.as_tensor(list(confidences), dtype=torch.float64).reshape(-1)
    hit = torch.as_tensor([bool(c) for c in correct], dtype=torch.float64).reshape(-1)
    if bool(((conf < 0) | (conf > 1) | conf.isnan()).any()):
        raise ValueError("confidences must lie in [0, 1]")
    idx = (conf * bins).long().clamp(max=bins - 1)
    count = torch.bincount(idx, minlength=bins)
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    hit_sum = torch.bincount(idx, weights=hit, minlength=bins)
    denom = count.clamp(min=1).double()
    return [
        (b / bins, (b + 1) / bins, int(count[b]), float(conf_sum[b] / denom[b]), float(hit_sum[b] / denom[b]))
        for b in range(bins)
    ]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: bin-count-weighted mean |accuracy − mean confidence| over equal-width bins; 0.0 for empty input."""
    if len(confidences) == 0:
        return 0.0
    table = reliability_bins(confidences, correct, bins)
    return sum(n * abs(acc - conf) for _, _, n, conf, acc in table) / len(confidences)


def threshold_curve(
    predicted: Sequence[tuple[int, Span, float]], gold: Sequence[tuple[int, Span]], thresholds: Sequence[float]
) -> list[dict]:
    """Exact-match micro precision/recall/F1 of the predictions with confidence >= each threshold.

    Entities are compared as (sentence, span) sets; a span predicted twice counts once with its highest confidence.
    Precision is 0.0 (not undefined) when nothing is kept, and recall 0.0 when there is no gold.
    Each row: threshold, kept, correct, precision, recall, f1.
    """
    best: dict[tuple[int, Span], float] = {}
    for i, (sent, span, conf) in enumerate(predicted):
        key = (sent, tuple(span))
        best[key] = max(best.get(key, 0.0), check_threshold(conf, f"predicted[{i}] confidence"))
    gold_set = {(sent, tuple(span)) for sent, span in gold}
    rows = []
    for i, threshold in enumerate(thresholds):
        t = check_threshold(threshold, f"thresholds[{i}]")
        kept = {key for key, conf in best.items() if conf >= t}
        correct = len(kept & gold_set)
        precision = correct / len(kept) if kept else 0.0
        recall = correct / len(gold_set) if gold_set else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {"threshold": t, "kept": len(kept), "correct": correct, "precision": precision, "recall": recall, "f1": f1}
        )
    return rows


def threshold_for_precision(curve: Sequence[dict], target: float) -> float | None:
    """The smallest threshold on ``curve`` whose precision reaches ``target`` (None if none does)."""
    goal = check_threshold(target, "target precision")
    reached = [row["threshold"] for row in curve if row["precision"] >= goal]
    return min(reached) if reached else None


def check_threshold(value: object, where: str) -> float:
    """``value`` as a float in [0, 1]; bools, NaN and non-numbers are rejected with ``where`` in the message."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
    if not ok:
        raise LsfaError(f"{where} must be a number between 0 and 1, got {value!r}")
    return float(value)  # type: ignore[arg-type]

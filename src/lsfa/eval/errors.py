"""Error taxonomy of Yano & Takamura: what kind of mistake each predicted entity is.

Within each sentence, every predicted entity lands in exactly one category, judged against the gold
entities it overlaps (shares at least one word with):

``exact_matches``            same span and same type (a correct prediction, listed for the totals)
``correct_span_wrong_type``  same span, other type
``too_short``                same type, one boundary equal, the prediction is shorter
``too_long``                 same type, one boundary equal, the prediction is longer
``boundary_off``             same type, neither boundary equal, lengths differ by at most two words
``completely_wrong``         any other overlap: other type *and* other span, or same type with neither
                             boundary equal and lengths differing by three words or more
``false_positives``          the prediction overlaps no gold entity

Gold entities are then checked once each: ``false_negatives`` counts gold entities that *no* prediction
overlaps. A gold entity that some prediction overlaps is never a false negative, even if that prediction
was judged wrong — its mistake is already counted on the prediction side.

One-to-many overlaps: a prediction overlapping several gold entities (e.g. one predicted span covering
"New York and Boston") is judged against one of them only, the one giving the mildest category in the
order exact < correct_span_wrong_type < too_short = too_long < boundary_off < completely_wrong, then the
larger word overlap, then the earlier start. Several predictions may be judged against the same gold
entity (a gold entity split in two gives two ``too_short``). Hence, per sentence,
``sum(all categories except false_negatives) == number of predicted entities``.

Predicted spans never overlap each other, nor do gold spans (both come from one tag per word), which is
what makes the resolution above unambiguous.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lsfa.eval.metrics import check_parallel
from lsfa.eval.spans import Mode, Span, spans_of_all

ERROR_CATEGORIES: tuple[str, ...] = (
    "exact_matches",
    "too_short",
    "too_long",
    "boundary_off",
    "completely_wrong",
    "correct_span_wrong_type",
    "false_positives",
    "false_negatives",
)
"""All outcome categories, in report order (``exact_matches`` is the only non-error)."""

_SEVERITY = {
    "exact_matches": 0,
    "correct_span_wrong_type": 1,
    "too_short": 2,
    "too_long": 2,
    "boundary_off": 3,
    "completely_wrong": 4,
}
MAX_BOUNDARY_OFF_LENGTH_DIFFERENCE = 2
"""Largest length difference (in words) still called ``boundary_off`` rather than ``completely_wrong``."""


@dataclass(frozen=True)
class ErrorCase:
    """One outcome: its category, the predicted entity (None for a false negative) and the gold entity
    it was judged against (None for a false positive)."""

    category: str
    pred: Span | None
    gold: Span | None


def overlap_category(pred: Span, gold: Span) -> str:
    """The category of ``pred`` judged against one overlapping ``gold`` entity."""
    if pred.start == gold.start and pred.end == gold.end:
        return "exact_matches" if pred.type == gold.type else "correct_span_wrong_type"
    if pred.type != gold.type:
        return "completely_wrong"
    if pred.start == gold.start or pred.end == gold.end:
        return "too_short" if pred.length < gold.length else "too_long"
    if abs(pred.length - gold.length) <= MAX_BOUNDARY_OFF_LENGTH_DIFFERENCE:
        return "boundary_off"
    return "completely_wrong"


def _overlap_words(a: Span, b: Span) -> int:
    return min(a.end, b.end) - max(a.start, b.start)


def sentence_errors(gold: Sequence[Span], pred: Sequence[Span]) -> list[ErrorCase]:
    """Every predicted entity's category, then the false negatives, for one sentence."""
    cases: list[ErrorCase] = []
    for predicted in pred:
        candidates = [g for g in gold if g.overlaps(predicted)]
        if not candidates:
            cases.append(ErrorCase("false_positives", predicted, None))
            continue

        def mildest_first(g: Span, predicted: Span = predicted) -> tuple[int, int, int]:
            return (_SEVERITY[overlap_category(predicted, g)], -_overlap_words(predicted, g), g.start)

        best = min(candidates, key=mildest_first)
        cases.append(ErrorCase(overlap_category(predicted, best), predicted, best))
    for g in gold:
        if not any(g.overlaps(predicted) for predicted in pred):
            cases.append(ErrorCase("false_negatives", None, g))
    return cases


def error_counts_from_spans(gold_spans: Sequence[Sequence[Span]], pred_spans: Sequence[Sequence[Span]]) -> dict:
    """Counts over all sentences, with totals and percentages.

    Returns ``{"counts": {category: n}, "total": n, "n_errors": n, "pct_of_total": {category: %},
    "pct_of_errors": {category: %}}``; ``total`` counts all outcomes, ``n_errors`` all but exact matches,
    ``pct_of_errors`` covers the seven error categories (0.0 when there are no errors).
    """
    counts: Counter[str] = Counter()
    for gold, pred in zip(gold_spans, pred_spans, strict=True):
        counts.update(case.category for case in sentence_errors(gold, pred))
    ordered = {category: counts[category] for category in ERROR_CATEGORIES}
    total = sum(ordered.values())
    n_errors = total - ordered["exact_matches"]
    return {
        "counts": ordered,
        "total": total,
        "n_errors": n_errors,
        "pct_of_total": {c: _percent(n, total) for c, n in ordered.items()},
        "pct_of_errors": {c: _percent(n, n_errors) for c, n in ordered.items() if c != "exact_matches"},
    }


def _percent(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def error_counts(
    gold_seqs: Sequence[Sequence[str]],
    pred_seqs: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
) -> dict:
    """:func:`error_counts_from_spans` for tag sequences (one list per sentence)."""
    check_parallel(gold_seqs, pred_seqs)
    return error_counts_from_spans(spans_of_all(gold_seqs, scheme, mode), spans_of_all(pred_seqs, scheme, mode))

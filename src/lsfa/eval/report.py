"""One call that scores predicted tags against gold tags every way lsfa reports, plus rich tables.

:func:`evaluate_sentences` is shared by ``lsfa evaluate``, training-time evaluation and model-directory
evaluation, so its result is plain JSON-ready data (nested dicts of floats and ints) and its keys are a
stable contract::

    micro.{precision,recall,f1,support}            seqeval-identical (strict or conlleval mode)
    per_type.<TYPE>.{precision,recall,f1,support}
    set.{precision,recall,f1}                      per-sentence sets of (surface text, type)
    partial.{precision,recall,f1}                  same type + overlap
    by_length.{1,2,3+}.{precision,recall,f1,support}
    errors.{exact_matches,too_short,too_long,boundary_off,completely_wrong,
            correct_span_wrong_type,false_positives,false_negatives}
    errors_pct.<error category>                    % of all errors (exact matches excluded)
    n_sentences, n_tokens
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lsfa.errors import LsfaError
from lsfa.eval.errors import error_counts_from_spans
from lsfa.eval.metrics import (
    by_length_prf_from_spans,
    check_parallel,
    partial_prf_from_spans,
    set_prf,
    strict_prf_from_spans,
    surface_set,
)
from lsfa.eval.spans import Mode, spans_of_all

if TYPE_CHECKING:
    from rich.console import Group


def evaluate_sentences(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    tokens: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
) -> dict[str, Any]:
    """Score ``pred`` tags against ``gold`` tags (one list per sentence) over the words ``tokens``.

    The tags are decoded into entities once and every metric is computed from the same entities. Raises
    :class:`~lsfa.errors.LsfaError` when the three inputs disagree in sentence or word counts, and
    :class:`~lsfa.eval.spans.InvalidTagError` (an ``LsfaError``) for a tag the scheme does not allow.
    """
    check_parallel(gold, pred)
    if len(tokens) != len(gold):
        raise LsfaError(f"{len(tokens)} token sentences but {len(gold)} tag sentences")
    for index, (words, tags) in enumerate(zip(tokens, gold, strict=True)):
        if len(words) != len(tags):
            raise LsfaError(f"sentence {index}: {len(words)} tokens but {len(tags)} tags")

    gold_spans = spans_of_all(gold, scheme, mode)
    pred_spans = spans_of_all(pred, scheme, mode)
    strict = strict_prf_from_spans(gold_spans, pred_spans)
    errors = error_counts_from_spans(gold_spans, pred_spans)
    gold_sets = [surface_set(words, spans) for words, spans in zip(tokens, gold_spans, strict=True)]
    pred_sets = [surface_set(words, spans) for words, spans in zip(tokens, pred_spans, strict=True)]
    return {
        "micro": strict["micro"],
        "per_type": strict["per_type"],
        "set": set_prf(gold_sets, pred_sets),
        "partial": partial_prf_from_spans(gold_spans, pred_spans),
        "by_length": by_length_prf_from_spans(gold_spans, pred_spans),
        "errors": errors["counts"],
        "errors_pct": errors["pct_of_errors"],
        "n_sentences": len(gold),
        "n_tokens": sum(len(words) for words in tokens),
    }


def render_report(result: dict[str, Any], title: str = "Evaluation") -> Group:
    """Readable rich tables for a :func:`evaluate_sentences` result (returns a ``rich.console.Group``)."""
    from rich.console import Group
    from rich.table import Table

    scores = Table(title=f"{title}: {result['n_sentences']} sentences, {result['n_tokens']} tokens")
    for column in ("", "precision", "recall", "F1", "support"):
        scores.add_column(column, justify="left" if not column else "right")
    for name, row in result["per_type"].items():
        scores.add_row(name, *_prf_cells(row), str(row["support"]))
    scores.add_section()
    scores.add_row("micro (strict)", *_prf_cells(result["micro"]), str(result["micro"]["support"]), style="bold")
    scores.add_row("set (text, type)", *_prf_cells(result["set"]), "")
    scores.add_row("partial overlap", *_prf_cells(result["partial"]), "")
    scores.add_section()
    for bucket, row in result["by_length"].items():
        scores.add_row(f"length {bucket}", *_prf_cells(row), str(row["support"]))

    errors = Table(title="Errors")
    errors.add_column("category")
    errors.add_column("count", justify="right")
    errors.add_column("% of errors", justify="right")
    for category, count in result["errors"].items():
        share = result.get("errors_pct", {}).get(category)
        errors.add_row(category.replace("_", " "), str(count), "" if share is None else f"{share:.1f}")
    return Group(scores, errors)


def _prf_cells(row: dict[str, float]) -> list[str]:
    return [f"{100 * row[key]:.2f}" for key in ("precision", "recall", "f1")]

"""lsfa.eval: entity-level scoring of word-level tags (seqeval-compatible) and error analysis.

Everything here is a pure function over plain lists of tags, so training, ``lsfa evaluate`` and the
generative baselines all score the same way. Start with :func:`evaluate_sentences`.
"""

from lsfa.eval.errors import ERROR_CATEGORIES, error_counts, sentence_errors
from lsfa.eval.metrics import by_length_prf, entity_set, partial_prf, set_prf, strict_prf
from lsfa.eval.report import evaluate_sentences, render_report
from lsfa.eval.spans import InvalidTagError, Span, get_spans

__all__ = [
    "ERROR_CATEGORIES",
    "InvalidTagError",
    "Span",
    "by_length_prf",
    "entity_set",
    "error_counts",
    "evaluate_sentences",
    "get_spans",
    "partial_prf",
    "render_report",
    "sentence_errors",
    "set_prf",
    "strict_prf",
]

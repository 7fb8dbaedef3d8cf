"""Entity-level precision, recall and F1 over plain lists of tags.

Every score here follows seqeval's zero-division convention: a ratio with a zero denominator is 0.0, and
F1 is 0.0 when precision + recall is 0. Counting is micro (over all entities of all sentences) unless a
per-type breakdown is asked for.

* :func:`strict_prf` — exact span and type, identical to ``seqeval.metrics.classification_report`` (strict
  mode with a scheme, or its default conlleval-compatible mode).
* :func:`set_prf` over :func:`entity_set` — the generative-NER protocol of the reference paper: each
  sentence is reduced to the *set* of (surface text, type) pairs, so a model that emits text instead of
  tags can be scored too; a mention repeated in a sentence counts once.
* :func:`partial_prf` — relaxed matching: same type and at least one shared word.
* :func:`by_length_prf` — strict matching broken down by entity length in words (1, 2, 3+).

Functions named ``*_from_spans`` take pre-extracted :class:`~lsfa.eval.spans.Span` lists so a report
can decode the tags once and compute every metric from the same spans.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from lsfa.data.schemes import LENGTH_BUCKETS, length_bucket
from lsfa.errors import LsfaError
from lsfa.eval.spans import Mode, Span, get_spans, spans_of_all

SentenceSpans = Sequence[Sequence[Span]]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def prf(pred_hits: int, n_pred: int, gold_hits: int, n_gold: int) -> dict[str, float]:
    """Precision ``pred_hits / n_pred``, recall ``gold_hits / n_gold`` and their harmonic mean.

    Strict matching has ``pred_hits == gold_hits`` (true positives); relaxed matching need not.
    """
    precision = _ratio(pred_hits, n_pred)
    recall = _ratio(gold_hits, n_gold)
    denominator = precision + recall
    f1 = 2 * precision * recall / denominator if denominator else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def check_parallel(gold_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> None:
    """Raise :class:`LsfaError` unless gold and predicted tags have the same sentence and word counts."""
    if len(gold_seqs) != len(pred_seqs):
        raise LsfaError(f"gold has {len(gold_seqs)} sentences but prediction has {len(pred_seqs)}")
    for index, (gold, pred) in enumerate(zip(gold_seqs, pred_seqs, strict=True)):
        if len(gold) != len(pred):
            raise LsfaError(f"sentence {index}: gold has {len(gold)} tags but prediction has {len(pred)}")


def decode_pair(
    gold_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]], scheme: str, mode: Mode
) -> tuple[list[list[Span]], list[list[Span]]]:
    """Gold and predicted spans of every sentence, after checking that the two line up."""
    check_parallel(gold_seqs, pred_seqs)
    return spans_of_all(gold_seqs, scheme, mode), spans_of_all(pred_seqs, scheme, mode)


# --- strict (seqeval) ------------------------------------------------------------------------------


def strict_prf_from_spans(gold_spans: SentenceSpans, pred_spans: SentenceSpans) -> dict[str, dict]:
    """Exact-match scores: ``{"micro": {...}, "per_type": {TYPE: {...}}}``, each with ``support``.

    Types are those seen in gold or predicted entities (as in seqeval), sorted by name.
    """
    true_positives: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for gold, pred in zip(gold_spans, pred_spans, strict=True):
        gold_set, pred_set = set(gold), set(pred)
        n_gold.update(span.type for span in gold_set)
        n_pred.update(span.type for span in pred_set)
        true_positives.update(span.type for span in gold_set & pred_set)
    per_type = {}
    for entity_type in sorted(n_gold.keys() | n_pred.keys()):
        hits = true_positives[entity_type]
        scores = prf(hits, n_pred[entity_type], hits, n_gold[entity_type])
        per_type[entity_type] = {**scores, "support": n_gold[entity_type]}
    total_hits = sum(true_positives.values())
    micro = prf(total_hits, sum(n_pred.values()), total_hits, sum(n_gold.values()))
    return {"micro": {**micro, "support": sum(n_gold.values())}, "per_type": per_type}


def strict_prf(
    gold_seqs: Sequence[Sequence[str]],
    pred_seqs: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
) -> dict[str, dict]:
    """seqeval's micro and per-type precision/recall/F1/support for tag sequences (one list per sentence).

    ``mode="strict"`` equals ``classification_report(..., mode="strict", scheme=<scheme>)``;
    ``mode="conlleval"`` equals seqeval's default mode (which ignores ``scheme``).
    """
    return strict_prf_from_spans(*decode_pair(gold_seqs, pred_seqs, scheme, mode))


# --- set of (surface, type) ------------------------------------------------------------------------


def entity_set(
    tokens: Sequence[str], tags: Sequence[str], scheme: str = "IOB2", mode: Mode = "strict"
) -> set[tuple[str, str]]:
    """The sentence's entities as ``{(surface text, type)}``, words joined by one space."""
    if len(tokens) != len(tags):
        raise LsfaError(f"{len(tokens)} tokens but {len(tags)} tags")
    return surface_set(tokens, get_spans(tags, scheme, mode))


def surface_set(tokens: Sequence[str], spans: Iterable[Span]) -> set[tuple[str, str]]:
    """``{(surface text, type)}`` of already decoded spans."""
    return {(" ".join(tokens[span.start : span.end]), span.type) for span in spans}


def set_prf(gold_sets: Sequence[set[tuple[str, str]]], pred_sets: Sequence[set[tuple[str, str]]]) -> dict[str, float]:
    """Micro P/R/F1 over per-sentence sets: a pair is correct if the same sentence's gold set has it.

    Sentences are paired by position, so a generative model's output must keep one (possibly empty)
    set per input sentence.
    """
    if len(gold_sets) != len(pred_sets):
        raise LsfaError(f"{len(gold_sets)} gold sentences but {len(pred_sets)} predicted sentences")
    hits = sum(len(set(gold) & set(pred)) for gold, pred in zip(gold_sets, pred_sets, strict=True))
    n_pred = sum(len(set(pred)) for pred in pred_sets)
    n_gold = sum(len(set(gold)) for gold in gold_sets)
    return prf(hits, n_pred, hits, n_gold)


# --- partial (overlap) -----------------------------------------------------------------------------


def partial_prf_from_spans(gold_spans: SentenceSpans, pred_spans: SentenceSpans) -> dict[str, float]:
    """Relaxed P/R/F1: entities match when they have the same type and share at least one word.

    precision = predicted entities overlapping some same-type gold entity / predicted entities;
    recall = gold entities overlapped by some same-type predicted entity / gold entities. A gold entity
    split in two predictions makes both predictions correct and the gold entity found once.
    """
    pred_hits = gold_hits = n_pred = n_gold = 0
    for gold, pred in zip(gold_spans, pred_spans, strict=True):
        n_gold += len(gold)
        n_pred += len(pred)
        pred_hits += sum(any(_same_type_overlap(p, g) for g in gold) for p in pred)
        gold_hits += sum(any(_same_type_overlap(p, g) for p in pred) for g in gold)
    return prf(pred_hits, n_pred, gold_hits, n_gold)


def _same_type_overlap(pred: Span, gold: Span) -> bool:
    return pred.type == gold.type and pred.overlaps(gold)


def partial_prf(
    gold_seqs: Sequence[Sequence[str]],
    pred_seqs: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
) -> dict[str, float]:
    """:func:`partial_prf_from_spans` for tag sequences."""
    return partial_prf_from_spans(*decode_pair(gold_seqs, pred_seqs, scheme, mode))


# --- by entity length ------------------------------------------------------------------------------


def by_length_prf_from_spans(gold_spans: SentenceSpans, pred_spans: SentenceSpans) -> dict[str, dict]:
    """Strict P/R/F1 per entity length: recall over gold entities of that length, precision over
    predicted entities of that length (an exact match has the same length on both sides).
    ``support`` is the number of gold entities of that length."""
    hits: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for gold, pred in zip(gold_spans, pred_spans, strict=True):
        gold_set, pred_set = set(gold), set(pred)
        n_gold.update(length_bucket(span) for span in gold_set)
        n_pred.update(length_bucket(span) for span in pred_set)
        hits.update(length_bucket(span) for span in gold_set & pred_set)
    return {
        bucket: {**prf(hits[bucket], n_pred[bucket], hits[bucket], n_gold[bucket]), "support": n_gold[bucket]}
        for bucket in LENGTH_BUCKETS
    }


def by_length_prf(
    gold_seqs: Sequence[Sequence[str]],
    pred_seqs: Sequence[Sequence[str]],
    scheme: str = "IOB2",
    mode: Mode = "strict",
) -> dict[str, dict]:
    """:func:`by_length_prf_from_spans` for tag sequences."""
    return by_length_prf_from_spans(*decode_pair(gold_seqs, pred_seqs, scheme, mode))

"""From a tagger's per-word logits to tags, scores and entity confidences: argmax or constrained viterbi,
at the tagger's calibrated temperature, with an optional confidence threshold.

The predictor keeps every word's logits (:attr:`WordPredictions.logits`), so decoding is a cheap pass after
the model: it never changes what the model computed, only how the per-word distributions are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import get_args

import torch

from lsfa.data.schemes import label_scheme, validate
from lsfa.decoding import span_confidences, transition_rules, viterbi
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.inference.options import Decoding
from lsfa.inference.predictor import WordPredictions

DECODINGS: tuple[str, ...] = get_args(Decoding)
"""The decodings of :data:`lsfa.inference.options.Decoding`, for messages and loops."""

CHUNK = 512
"""Sentences decoded together: one padded [sentences, words, labels] tensor per chunk."""


def check_decoding(decoding: str, where: str = "decoding") -> str:
    if decoding not in DECODINGS:
        raise LsfaError(f"{where}: {decoding!r} is not a decoding; use one of {', '.join(DECODINGS)}")
    return decoding


def decode_predictions(
    predictions: WordPredictions, labels: Sequence[str], decoding: str = "argmax", temperature: float = 1.0
) -> WordPredictions:
    """Tags and their probabilities (at ``temperature``) re-read from the logits with ``decoding``."""
    check_decoding(decoding)
    if predictions.logits is None:
        raise LsfaError("these predictions carry no logits to decode (predicted by an external system)")
    rules = transition_rules(labels, label_scheme(labels)) if decoding == "viterbi" else None
    tags: list[list[str]] = []
    scores: list[list[float]] = []
    for start in range(0, len(predictions.logits), CHUNK):
        chunk = predictions.logits[start : start + CHUNK]
        chunk_tags, chunk_scores = _decode_chunk(chunk, labels, rules, temperature)
        tags += chunk_tags
        scores += chunk_scores
    return replace(predictions, tags=tags, scores=scores)


def _decode_chunk(logits: list[torch.Tensor], labels, rules, temperature: float):
    lengths = [len(sentence) for sentence in logits]
    width = max(lengths, default=0)
    padded = torch.zeros(len(logits), max(width, 1), len(labels))
    for row, sentence in enumerate(logits):
        padded[row, : len(sentence)] = sentence
    log_probs = (padded / temperature).log_softmax(-1)
    if rules is None:
        ids = log_probs.argmax(-1).tolist()
        ids = [row[:length] for row, length in zip(ids, lengths, strict=True)]
    else:
        ids = viterbi(log_probs, lengths, rules)
    probs = log_probs.exp()
    tags = [[labels[i] for i in row] for row in ids]
    scores = [[float(probs[r, w, i]) for w, i in enumerate(row)] for r, row in enumerate(ids)]
    return tags, scores


def viterbi_column(
    predicted: WordPredictions, gold: Sequence[Sequence[str]], words: Sequence[Sequence[str]], labels: Sequence[str]
) -> dict:
    """What ``decoding: viterbi`` changes over argmax on the same model outputs: viterbi's strict and set scores,
    and how many ill-formed tags (invalid transitions) argmax produced. ``predicted`` holds argmax tags."""
    viterbi = evaluate_sentences(gold, decode_predictions(predicted, labels, "viterbi").tags, words)
    ill_formed = sum(len(validate(tags, label_scheme(labels))) for tags in predicted.tags)
    return {"argmax_ill_formed_tags": ill_formed, "viterbi": {"micro": viterbi["micro"], "set": viterbi["set"]}}


def entity_confidences(
    predictions: WordPredictions, labels: Sequence[str], temperature: float = 1.0
) -> list[list[tuple[int, int, str, float]]]:
    """Per sentence, each entity of the decoded tags as (first word, end word, type, confidence), where the
    confidence is the probability of exactly that span under the per-word distributions at ``temperature``:
    the product of its words' probabilities of their tags and of the next word not continuing it
    (:func:`lsfa.decoding.span_confidences`)."""
    if predictions.logits is None:
        raise LsfaError("these predictions carry no logits (needed for entity confidence)")
    return [
        span_confidences((logits / temperature).softmax(-1), tags, labels)
        for logits, tags in zip(predictions.logits, predictions.tags, strict=True)
    ]


def drop_below(spans: list[tuple[int, int, str, float]], threshold: float | None) -> list[tuple[int, int, str, float]]:
    """Entities whose confidence reaches ``threshold`` (all when it is None): the one place a threshold is
    applied. It was validated once, by :class:`~lsfa.inference.options.InferenceOptions`."""
    if threshold is None:
        return spans
    return [span for span in spans if span[3] >= threshold]


def tags_of_kept(tags: Sequence[str], kept: Sequence[tuple[int, int, str, float]]) -> list[str]:
    """``tags`` with every word outside the ``kept`` entities set to ``O``: the tags of a tag-per-word output
    (CoNLL, JSONL ``tags``) that agree with its thresholded entities. Removing an entity never changes the
    others, since a kept span keeps its own tags and an entity right after a removed one still opens one."""
    out = ["O"] * len(tags)
    for start, end, _, _ in kept:
        out[start:end] = tags[start:end]
    return out

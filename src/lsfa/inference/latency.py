"""Latency: milliseconds to tag one sentence on its own, mean ± std over sentences (the paper's Table 7).

Why beside ``ms_per_sentence``: that number is a whole split tagged in large batches, divided by its
sentences, i.e. throughput. A user sending one sentence at a time (a request to ``lsfa serve``, an
annotation tool) waits for a batch of one, and the spread over sentences says how steady that wait is.
The first ``n`` sentences of the split are tagged one by one after a few warm-up calls, so every system is
timed on the same sentences.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

LATENCY_SENTENCES = 200
"""Sentences timed one at a time per run: about 10-20 s for a 135M-parameter tagger on one CPU thread."""
WARMUP_CALLS = 3


def sentence_latency(
    tag_one: Callable[[T], Any], sentences: Sequence[T], n: int = LATENCY_SENTENCES
) -> dict[str, Any] | None:
    """Time ``tag_one(sentence)`` on each of the first ``n`` sentences (after ``WARMUP_CALLS`` untimed calls),
    a sentence being whatever the system tags (a word list, a ``Sentence``): ``{"mean", "std", "median",
    "max", "n", "batch_size": 1}`` in milliseconds; None for no sentences."""
    chosen = list(sentences[:n])
    if not chosen:
        return None
    for sentence in chosen[:WARMUP_CALLS]:
        tag_one(sentence)
    times = []
    for sentence in chosen:
        start = time.perf_counter()
        tag_one(sentence)
        times.append(1000 * (time.perf_counter() - start))
    return {
        "mean": statistics.fmean(times),
        "std": statistics.stdev(times) if len(times) > 1 else 0.0,
        "median": statistics.median(times),
        "max": max(times),
        "n": len(times),
        "batch_size": 1,
    }


def tagger_latency(model, tokenizer, words: Sequence[Sequence[str]], max_length: int | None, precision: str):
    """:func:`sentence_latency` of a token classifier through lsfa's predictor (batches of one, the given
    max_length and precision), as at the end of a training run and for runs timed afterwards."""
    from lsfa.inference.predictor import predict_words  # lazy: the spaCy peer imports this module and needs no torch

    def tag_one(sentence: Sequence[str]):
        return predict_words(model, tokenizer, [sentence], max_length=max_length, batch_size=1, precision=precision)

    return sentence_latency(tag_one, words)

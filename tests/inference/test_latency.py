"""Batch-of-one latency: every chosen sentence timed once after untimed warm-up calls, in milliseconds."""

from __future__ import annotations

import time

import pytest

from lsfa.inference.latency import WARMUP_CALLS, sentence_latency


def test_each_of_the_first_n_sentences_is_timed_after_the_warm_up() -> None:
    calls: list[str] = []

    def tag_one(sentence: str) -> None:
        calls.append(sentence)
        time.sleep(0.002 if sentence == "slow" else 0.0)

    sentences = ["slow", "a", "b", "c", "d", "never timed"]
    result = sentence_latency(tag_one, sentences, n=5)
    assert calls == sentences[:WARMUP_CALLS] + sentences[:5]
    assert result["n"] == 5 and result["batch_size"] == 1
    assert result["max"] >= 2.0, "milliseconds, not seconds"
    assert result["std"] > 0 and result["median"] <= result["mean"], "one slow sentence skews the mean up"


def test_one_sentence_has_no_spread_and_none_has_no_result() -> None:
    result = sentence_latency(lambda sentence: None, ["only"])
    assert result["n"] == 1 and result["std"] == 0.0 and result["mean"] == pytest.approx(result["median"])
    assert sentence_latency(lambda sentence: None, []) is None

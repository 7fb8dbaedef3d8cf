"""Scores of flat per-word tags (part of speech and other ``tokens`` tasks): accuracy and per-tag P/R/F1.

With exactly one tag per word in both gold and prediction, micro precision, recall and F1 all equal accuracy,
so ``micro`` holds accuracy in all three (the key span tasks report, which tables and model selection read).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lsfa.errors import LsfaError


def token_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Accuracy over words and precision/recall/F1/support per tag."""
    if len(gold) != len(pred):
        raise LsfaError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    true_positive, predicted, support = Counter(), Counter(), Counter()
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise LsfaError(f"sentence {index}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        for want, got in zip(gold_tags, pred_tags, strict=True):
            support[want] += 1
            predicted[got] += 1
            true_positive[want] += want == got
    words = sum(support.values())
    accuracy = sum(true_positive.values()) / words if words else 0.0
    per_tag = {tag: _prf(true_positive[tag], predicted[tag], support[tag]) for tag in sorted(support | predicted)}
    return {
        "micro": {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": words},
        "accuracy": accuracy,
        "per_tag": per_tag,
        "n_sentences": len(gold),
        "n_tokens": words,
    }


def _prf(correct: int, predicted: int, support: int) -> dict[str, float | int]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}

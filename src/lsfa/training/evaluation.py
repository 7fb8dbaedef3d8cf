"""Scoring during and after training: the dev metric the Trainer selects on, the final dev/test evaluation
with its predictions file, and the temperature fitted on dev and saved with the tagger.

Dev rows map back to words by position (:func:`lsfa.data.encode.scatter_to_words`), which is why the
Trainer's evaluation keeps dataset order (:func:`lsfa.training.trainer.ner_trainer_class`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lsfa.data.conll import write_conll
from lsfa.data.encode import EncodedSet, scatter_to_words
from lsfa.data.types import Sentence
from lsfa.eval.report import evaluate_sentences
from lsfa.eval.tokens import token_scores
from lsfa.inference.calibration import fit_dev_temperature
from lsfa.inference.decode import viterbi_column
from lsfa.inference.predictor import WordPredictions, predict_words
from lsfa.models.meta import update_meta
from lsfa.runs import RunFolder
from lsfa.training.config import TrainConfig


def make_compute_metrics(encoded: EncodedSet, sentences: list[Sentence], labels: list[str], task: str = "spans"):
    """Strict span metrics (or, for a tokens task, word accuracy as ``f1``) on dev from the Trainer's argmax
    predictions (rows map back to words)."""

    def compute_metrics(prediction) -> dict[str, float]:
        predicted = prediction.predictions
        tags = [["O"] * len(s.tokens) for s in sentences]
        values = [labels[int(predicted[k][p])] for k, row in enumerate(encoded.examples) for p in row.label_positions]
        scatter_to_words(encoded.examples, values, tags)
        gold = [s.tags for s in sentences]
        result = (
            token_scores(gold, tags)
            if task == "tokens"
            else evaluate_sentences(gold, tags, [s.tokens for s in sentences])
        )
        return {key: result["micro"][key] for key in ("precision", "recall", "f1")}

    return compute_metrics


def argmax_logits(logits, labels):
    """Keep only label ids between eval steps (a vocabulary-sized tensor per token is not needed)."""
    del labels
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def evaluate_split(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    precision: str,
    sentences: list[Sentence],
    run_dir: Path,
    split: str,
    task: str = "spans",
) -> tuple[dict[str, Any], WordPredictions]:
    """Predict one split with the trained model as ``lsfa predict`` would (windows, batches), write its CoNLL
    predictions into the run folder and score them (strict spans, or word accuracy for a tokens task).

    The word predictions come back too: the dev ones fit the temperature (:func:`calibrate_tagger`)."""
    start = time.perf_counter()
    predicted = predict_words(
        model,
        tokenizer,
        [s.tokens for s in sentences],
        max_length=config.max_length,
        batch_size=config.eval_batch_size,
        precision=precision,
        documents=[s.doc_id for s in sentences],
        context=config.context,
    )
    seconds = time.perf_counter() - start
    out = [
        Sentence(s.tokens, tags, s.extra, s.doc_id, s.line) for s, tags in zip(sentences, predicted.tags, strict=True)
    ]
    write_conll(out, RunFolder(run_dir).predictions(split))
    gold = [s.tags for s in sentences]
    if task == "tokens":
        result = token_scores(gold, predicted.tags)
    else:
        result = evaluate_sentences(gold, predicted.tags, [s.tokens for s in sentences])
    result["inference_seconds"] = seconds
    result["ms_per_sentence"] = 1000 * seconds / max(len(sentences), 1)
    result["cut_words"] = predicted.cut_words
    if task == "tokens":
        return result, predicted
    result["decoding"] = viterbi_column(
        predicted, gold, [s.tokens for s in sentences], list(model.config.id2label.values())
    )
    return result, predicted


def calibrate_tagger(folder: Path, predicted: WordPredictions, sentences: list[Sentence], labels: list[str]) -> float:
    """Fit the softmax temperature on the dev split's word distributions and save it with the tagger.

    Words, not entity confidences: on the full-scale CoNLL-2003 taggers an entity-level fit gave a higher test ECE
    (docs/results/decoding-confidence.md), and the word fit serves ``tokens`` taggers as well."""

    temperature = fit_dev_temperature(predicted, sentences, labels, on="words")
    update_meta(folder, temperature=temperature)
    return temperature

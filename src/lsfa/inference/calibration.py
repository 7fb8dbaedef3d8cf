"""How far a tagger's entity confidences can be trusted, and which threshold buys which precision.

``lsfa evaluate --model-dir RUN --calibration OUT/`` predicts the dev and test splits once, then reads the
same logits several ways: entity confidence before (T = 1) and after temperature scaling, the expected
calibration error (ECE) of each on test (an entity is correct when its span and type match a gold entity
exactly), a reliability diagram, and the precision/recall/F1 curve over the confidence threshold. With a
target precision, the threshold is chosen on dev and its scores reported on test (selection never sees test).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from lsfa.data.corpora import load_split
from lsfa.data.jsonl import SpanOptions
from lsfa.data.schemes import to_spans
from lsfa.decoding import (
    expected_calibration_error,
    fit_confidence_temperature,
    fit_temperature,
    reliability_bins,
    threshold_curve,
    threshold_for_precision,
)
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.inference.decode import DECODINGS, decode_predictions, entity_confidences, viterbi_column
from lsfa.inference.predictor import WordPredictions, predict_words
from lsfa.inference.tagger import Tagger

THRESHOLDS = [round(0.05 * step, 2) for step in range(20)]
"""Confidence thresholds of the curve: 0, 0.05, ..., 0.95."""


def calibration_report(
    tagger: Tagger,
    corpus: str,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    target_precision: float | None = None,
    span_options: SpanOptions | None = None,
) -> dict[str, Any]:
    """Write ``calibration.json``, ``reliability.png`` and ``thresholds.png`` into ``out_dir``; return the JSON."""
    if target_precision is not None and not 0 < target_precision <= 1:
        raise LsfaError(f"--target-precision must be in (0, 1], got {target_precision}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {split: _predict_split(tagger, corpus, split, data_dir, span_options) for split in ("dev", "test")}
    saved = tagger.temperature
    dev_sentences, dev_predicted = splits["dev"][:2]
    fitted = {
        on: fit_dev_temperature(dev_predicted, dev_sentences, tagger.labels, tagger.decoding, on)
        for on in ("words", "entities")
    }
    temperature = saved if saved != 1.0 else fitted["words"]
    report: dict[str, Any] = {
        "corpus": corpus,
        "decoding": tagger.decoding,
        "temperature": {
            "used": temperature,
            "saved_with_tagger": saved,
            "fitted_on_dev_now": fitted["words"],
            "fitted_on_dev_entities": fitted["entities"],
        },
        "definition": "confidence = product of the span's word tag probabilities and of the next word not "
        "continuing it; correct = exact span and type match with a gold entity (test split); calibrated = T "
        "fitted on dev word distributions (what lsfa train saves), entity_calibrated = T fitted on dev entity "
        "confidences (log loss), for comparison",
    }
    for name, value in (("uncalibrated", 1.0), ("calibrated", temperature), ("entity_calibrated", fitted["entities"])):
        confidences, correct = _scored_entities(tagger.labels, tagger.decoding, *splits["test"][:2], value)
        report[name] = {
            "temperature": value,
            "ece": expected_calibration_error(confidences, correct),
            "entities": len(confidences),
            "bins": reliability_bins(confidences, correct),
        }
    report["decodings"] = {split: _decodings(tagger, *splits[split][:2]) for split in splits}
    report["thresholds_test"] = _curve(tagger, *splits["test"][:2], temperature)
    if target_precision is not None:
        report["target_precision"] = _pick_threshold(tagger, splits, temperature, target_precision)
    report["timing"] = _timing(tagger, splits["test"])
    (out / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot_reliability(report, out / "reliability.png")
    _plot_thresholds(report["thresholds_test"], out / "thresholds.png")
    return report


def _predict_split(
    tagger: Tagger, corpus: str, split: str, data_dir, span_options: SpanOptions | None = None
) -> tuple[Any, WordPredictions, float]:
    """Gold sentences, raw (undecoded) predictions and the model's seconds for one split."""
    sentences = load_split(corpus, split, data_dir=data_dir, span_options=span_options).sentences
    start = time.perf_counter()
    predicted = predict_words(
        tagger.model, tagger.tokenizer, [s.tokens for s in sentences], tagger.options,
        documents=[s.doc_id for s in sentences], context=tagger.meta.context,
    )  # fmt: skip
    return sentences, predicted, time.perf_counter() - start


def fit_dev_temperature(
    predicted: WordPredictions,
    sentences,
    labels: Sequence[str],
    decoding: str = "viterbi",
    on: Literal["entities", "words"] = "entities",
) -> float:
    """Temperature fitted on a held-out split: ``on="words"`` minimises the NLL of each word's tag distribution
    (classic temperature scaling; what ``lsfa train`` saves); ``on="entities"`` the log loss of the entity
    confidences users threshold (reported beside it by the calibration report)."""
    if on == "entities":
        return fit_confidence_temperature(lambda t: _scored_entities(labels, decoding, sentences, predicted, t))
    if on != "words":
        raise LsfaError(f"temperature fit on {on!r}: use 'entities' or 'words'")
    label2id = {label: k for k, label in enumerate(labels)}
    gold = torch.tensor([label2id.get(tag, -100) for s in sentences for tag in s.tags], dtype=torch.long)
    logits = torch.cat(predicted.logits) if predicted.logits else torch.zeros(0, len(labels))
    return fit_temperature(logits, gold)


def _entities(labels: Sequence[str], decoding: str, predicted: WordPredictions, temperature: float):
    decoded = decode_predictions(predicted, labels, decoding, temperature)
    return entity_confidences(decoded, labels, temperature)


def _scored_entities(
    labels: Sequence[str], decoding: str, sentences, predicted, temperature: float
) -> tuple[list[float], list[bool]]:
    confidences: list[float] = []
    correct: list[bool] = []
    for sentence, spans in zip(sentences, _entities(labels, decoding, predicted, temperature), strict=True):
        gold = set(to_spans(sentence.tags))
        for first, end, entity_type, confidence in spans:
            confidences.append(confidence)
            correct.append((first, end, entity_type) in gold)
    return confidences, correct


def _curve(tagger: Tagger, sentences, predicted, temperature: float, thresholds=THRESHOLDS) -> list[dict[str, Any]]:
    spans = _entities(tagger.labels, tagger.decoding, predicted, temperature)
    predicted_entities = [(k, (f, e, t), c) for k, found in enumerate(spans) for f, e, t, c in found]
    gold = [(k, span) for k, sentence in enumerate(sentences) for span in to_spans(sentence.tags)]
    return threshold_curve(predicted_entities, gold, thresholds)


def _pick_threshold(tagger: Tagger, splits, temperature: float, target: float) -> dict[str, Any]:
    dev_curve = _curve(tagger, *splits["dev"][:2], temperature)
    threshold = threshold_for_precision(dev_curve, target)
    result: dict[str, Any] = {"target": target, "threshold_chosen_on_dev": threshold}
    if threshold is not None:
        result["test"] = _curve(tagger, *splits["test"][:2], temperature, [threshold])[0]
    return result


def _decodings(tagger: Tagger, sentences, predicted: WordPredictions) -> dict[str, Any]:
    """Strict span F1 of argmax and viterbi over the same logits, and the ill-formed tags argmax produced."""
    gold, words = [s.tags for s in sentences], [s.tokens for s in sentences]
    column = viterbi_column(predicted, gold, words, tagger.labels)  # predicted holds the raw argmax tags
    return {
        "argmax": evaluate_sentences(gold, predicted.tags, words)["micro"],
        "viterbi": column["viterbi"]["micro"],
        "argmax_ill_formed_tags": column["argmax_ill_formed_tags"],
    }


def _timing(tagger: Tagger, test) -> dict[str, float]:
    """Milliseconds per sentence of the model and of each decoding over the same logits."""
    sentences, predicted, model_seconds = test
    timing = {"model_ms_per_sentence": 1000 * model_seconds / max(len(sentences), 1)}
    for decoding in DECODINGS:
        start = time.perf_counter()
        decode_predictions(predicted, tagger.labels, decoding)
        timing[f"{decoding}_ms_per_sentence"] = 1000 * (time.perf_counter() - start) / max(len(sentences), 1)
    return timing


def _figure(width: float = 5.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _plot_reliability(report: dict[str, Any], path: Path) -> None:
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, style in (("uncalibrated", "o--"), ("calibrated", "s-")):
        bins = [b for b in report[name]["bins"] if b[2] > 0]
        temperature = report["temperature"]["used"] if name == "calibrated" else 1.0
        label = f"{name} (T={temperature:.2f}), ECE {report[name]['ece']:.3f}"
        axes.plot([b[3] for b in bins], [b[4] for b in bins], style, label=label)
    axes.set_xlabel("entity confidence (bin mean)")
    axes.set_ylabel("share of entities exactly right")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title(f"Reliability, {report['corpus']} test")
    figure.tight_layout()
    figure.savefig(path)


def _plot_thresholds(curve: list[dict[str, Any]], path: Path) -> None:
    figure, axes = _figure()
    thresholds = [row["threshold"] for row in curve]
    for key in ("precision", "recall", "f1"):
        axes.plot(thresholds, [row[key] for row in curve], label=key)
    axes.set_xlabel("confidence threshold")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower left")
    axes.set_title("Test P/R/F1 over the entity confidence threshold")
    figure.tight_layout()
    figure.savefig(path)

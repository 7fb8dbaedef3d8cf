"""Scoring a saved tagger on a corpus split (what ``lsfa evaluate --model-dir`` runs).

The tagger predicts the split the way training evaluated it (document ids passed, so a tagger trained
with document context gets it; long sentences windowed, never truncated) and the result is
:func:`lsfa.eval.report.evaluate_sentences` of gold against predicted tags: the same keys and numbers
``lsfa evaluate --gold --pred`` gives for the gold file and the predicted CoNLL file of ``lsfa predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsfa.data.corpora import load_split
from lsfa.data.jsonl import SpanOptions
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.eval.spans import Mode, allowed_prefixes
from lsfa.eval.tokens import token_scores
from lsfa.inference.options import InferenceOptions
from lsfa.inference.tagger import Tagger, resolve_tagger_folder
from lsfa.runs import CONFIG_FILE


def training_corpus(folder: str | Path) -> tuple[str | None, str | None]:
    """``(corpus, data_dir)`` from the ``config.yaml`` of the training run holding a tagger, if any."""
    import yaml

    model_folder = resolve_tagger_folder(folder)
    for candidate in (model_folder / CONFIG_FILE, model_folder.parent / CONFIG_FILE):
        if candidate.is_file():
            try:
                config = yaml.safe_load(candidate.read_text()) or {}
            except yaml.YAMLError:
                return None, None
            if isinstance(config, dict) and config.get("corpus"):
                return str(config["corpus"]), config.get("data_dir")
    return None, None


def evaluate_model(
    tagger: Tagger | str | Path,
    corpus: str | Path | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
    mode: Mode = "strict",
    warn: Callable[[str], None] | None = None,
    span_options: SpanOptions | None = None,
    options: InferenceOptions | None = None,
    **option_values: Any,
) -> dict[str, Any]:
    """Predict ``split`` of ``corpus`` with a tagger (object or folder) and score it against the gold tags.

    Without ``corpus``, the corpus the tagger was trained on is used when its run's ``config.yaml`` is
    next to it. Tags are compared in IOB2 (corpora are normalised to IOB2 on reading). ``warn`` receives
    reader warnings and a note when over-long single words had to be cut. ``options`` (or their fields as
    keywords: ``precision``, ``batch_size``, ``decoding``, ...) say how a tagger loaded here runs, validated before
    the corpus is read (decoding: the tagger's default, viterbi, as ``lsfa predict``); a :class:`Tagger` object
    keeps its own.
    ``span_options`` say how JSONL gold spans off word boundaries or overlapping are read (default: an error).
    """
    allowed_prefixes("IOB2", mode)  # refuse a bad mode before loading a model
    options = InferenceOptions.of(options, **option_values)
    if corpus is None:
        if isinstance(tagger, Tagger):
            raise LsfaError("give the corpus to evaluate on (--corpus)")
        corpus, trained_data_dir = training_corpus(tagger)
        if corpus is None:
            raise LsfaError(f"{tagger}: give the corpus to evaluate on (--corpus); no training config.yaml found")
        data_dir = data_dir or trained_data_dir
    # read before the model loads: a bad corpus fails fast
    gold = load_split(corpus, split, data_dir=data_dir, span_options=span_options)
    if not isinstance(tagger, Tagger):
        tagger = Tagger.load(tagger, options)
    for warning in gold.warnings:
        if warn is not None:
            warn(warning)
    sentences = gold.sentences
    predicted = tagger.predict_words([s.tokens for s in sentences], documents=[s.doc_id for s in sentences])
    if predicted.cut_words and warn is not None:
        warn(f"{predicted.cut_words} words longer than a whole window were cut to fit (still tagged)")
    if tagger.task == "tokens":
        return token_scores([s.tags for s in sentences], predicted.tags)
    return evaluate_sentences(
        [s.tags for s in sentences], predicted.tags, [s.tokens for s in sentences], scheme="IOB2", mode=mode
    )

"""Other systems on the same sentences: an encoder tagger, spaCy and any other tagger folders, for throughput
ratios.

The encoder is either a trained tagger folder (``--encoder-dir``: its F1 is reported too) or a catalogue
encoder with an untrained head, which is fine for speed (the head is a tiny linear layer) but says nothing
about quality, and is labelled so. spaCy is optional: when it or its model is missing, the entry says
why it was skipped instead of failing the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsfa.bench.inference import InferenceSettings, TaggerVariant
from lsfa.data.docbin import doc_tags, spacy_words
from lsfa.errors import LsfaError
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import build_token_classifier, is_encoder, load_tokenizer
from lsfa.models.optimise import optimise_for_inference
from lsfa.models.packing import packing_supported
from lsfa.models.saving import load_tagger


def encoder_variant(
    labels: Sequence[str],
    settings: InferenceSettings,
    device,
    encoder_dir: str | None = None,
    encoder_model: str | None = "mpnet-base",
) -> tuple[TaggerVariant | None, str]:
    """The encoder baseline as a variant, or ``(None, why not)``."""
    if encoder_dir:
        model, tokenizer, meta = load_tagger(encoder_dir, merge=True)
        model = optimise_for_inference(model.to(device), settings.precision)
        note = f"trained tagger {encoder_dir} ({meta.base_model})"
        variant = TaggerVariant("encoder", model, tokenizer, settings, meta.max_length, meta.context, note)
        return variant, ""
    if not encoder_model:
        return None, "no --encoder-dir or --encoder-model given"
    try:
        path = resolve_model(encoder_model)
    except LsfaError as error:
        return None, str(error)
    try:
        model = build_token_classifier(path, list(labels), "full")
    except ValueError:  # some encoders (MPNet) have no SDPA attention in transformers: use their eager one
        model = build_token_classifier(path, list(labels), "full", attn_implementation="eager")
    if not is_encoder(model.config):
        return None, f"{encoder_model} is not an encoder ({model.config.model_type})"
    model = optimise_for_inference(model.to(device), settings.precision)
    note = f"{encoder_model} with an untrained head: throughput only, no F1"
    return TaggerVariant("encoder", model, load_tokenizer(path), settings, 512, "sentence", note), ""


def tagger_variant(given: str, settings: InferenceSettings, device) -> TaggerVariant:
    """Another trained tagger folder (``--tagger-dir [NAME=]DIR``, decoder or encoder) timed beside the main one
    at the optimised path's settings, so that one bench run can time a whole frontier on the same sentences.
    Packing stays on only where the model supports it (encoders have absolute positions)."""
    name, _, folder = given.rpartition("=")
    model, tokenizer, meta = load_tagger(folder, merge=True)
    name = name or meta.base_model + (f" layers={meta.layers}" if meta.layers else "")
    model = optimise_for_inference(model.to(device), settings.precision)
    settings = settings if settings.pack and packing_supported(model) else settings.changed(pack=False)
    note = f"trained tagger {folder} ({meta.base_model})"
    return TaggerVariant(name, model, tokenizer, settings, meta.max_length, meta.context, note)


@dataclass
class SpacyVariant:
    """spaCy's NER pipeline on pre-split words (a ``Doc`` per sentence, so tokenisation is the same)."""

    name: str
    nlp: Any
    note: str = ""
    same_types: bool = False
    batch_size: int = 256
    seconds: float = 0.0
    sentences: int = 0
    words: int = 0
    predictions: dict[int, list[str]] = field(default_factory=dict)

    def run(self, sentences: Sequence[Sequence[str]], indices: Sequence[int]) -> None:
        from spacy.tokens import Doc

        start = time.perf_counter()
        docs = [Doc(self.nlp.vocab, words=spacy_words(sentences[k])) for k in indices]
        for index, doc in zip(indices, self.nlp.pipe(docs, batch_size=self.batch_size), strict=True):
            self.predictions[index] = doc_tags(doc)
        self.seconds += time.perf_counter() - start
        self.sentences += len(indices)
        self.words += sum(len(sentences[k]) for k in indices)

    def warm_up(self, sentences: Sequence[Sequence[str]], n: int = 8) -> None:
        """One untimed call (model loading is lazy in places), then clear the counters."""
        self.run(sentences, list(range(min(n, len(sentences)))))
        self.seconds, self.sentences, self.words, self.predictions = 0.0, 0, 0, {}

    def throughput(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-12)
        return {
            "name": self.name,
            "note": self.note,
            "sentences": self.sentences,
            "words": self.words,
            "seconds": self.seconds,
            "sentences_per_second": self.sentences / seconds,
            "words_per_second": self.words / seconds,
        }


def resolve_spacy_model(name: str) -> str:
    """A spaCy package name or pipeline folder; an lsfa spaCy-peer run folder means its ``model-best``."""
    peer = Path(name) / "spacy" / "output" / "model-best"
    return str(peer) if peer.is_dir() else name


def spacy_variant(model_name: str, labels: Sequence[str] = ()) -> tuple[SpacyVariant | None, str]:
    """spaCy with only its NER (and the embedding layer NER listens to), or ``(None, why not)``.

    ``model_name`` is a pipeline name (``en_core_web_sm``), a pipeline folder, or the run folder of
    lsfa's spaCy peer. When the pipeline's entity types are ours, its F1 is comparable and is reported.
    """
    try:
        import spacy
    except ImportError:
        return None, "spaCy is not installed (pip install 'lsfa[peers]')"
    path = resolve_spacy_model(model_name)
    try:
        nlp = spacy.load(path)
    except OSError as error:
        return None, f"spaCy pipeline {model_name!r} is not installed: {error}"
    if "ner" not in nlp.pipe_names:
        return None, f"spaCy pipeline {model_name!r} has no 'ner' component"
    keep = {"ner", "tok2vec", "transformer"}
    for name in [name for name in nlp.pipe_names if name not in keep]:
        nlp.disable_pipe(name)
    types = {label[2:] for label in labels if label[:2] in ("B-", "I-")}
    same_types = bool(types) and set(nlp.get_pipe("ner").labels) <= types
    note = f"spaCy {spacy.__version__} {path} (components: {', '.join(nlp.pipe_names)})"
    note += "; same entity types, F1 comparable" if same_types else "; its own entity types: throughput only"
    return SpacyVariant("spacy", nlp, note, same_types=same_types), ""

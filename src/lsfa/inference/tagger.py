"""A trained tagger for users: raw text in, entities with character offsets out.

>>> tagger = Tagger.load("runs/conll2003-lsfa")          # the run folder or its model/ folder
>>> tagger("Peter Blackburn visited Brussels.")
[Entity(start=0, end=15, label='PER', text='Peter Blackburn', score=0.99), ...]
>>> for entities in tagger.pipe(lines, batch_size=32): ...

Text is split into words with :func:`lsfa.data.text.split_words` (CoNLL/PTB style, offsets into the
original text). One text is one word sequence for the model: a text longer than the model's
``max_length`` is cut into overlapping windows by :func:`lsfa.inference.predictor.predict_words` and the
windows are merged back, so every word gets a tag and nothing is truncated.

Entities are decoded from the tags with seqeval's lenient ``conlleval`` rules (an ``I-X`` after ``O``
opens an entity) rather than the strict rules used for reported scores: for a user, an entity the
model tagged slightly ill-formed is still better returned than silently dropped.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsfa.data.encode import EncodedSet, concat_encoded, encode_sentences
from lsfa.data.text import Word, split_words, words_as_text  # noqa: F401 (words_as_text: re-exported)
from lsfa.errors import LsfaError
from lsfa.inference.decode import decode_predictions, drop_below, entity_confidences, tags_of_kept
from lsfa.inference.fast_path import with_recorded_choice
from lsfa.inference.options import CALL_OPTIONS, InferenceOptions
from lsfa.inference.predictor import WordPredictions, predict_encoded_steps, predict_words, run_steps
from lsfa.models.classifier import quiet_transformers
from lsfa.models.optimise import optimise_for_inference
from lsfa.models.placement import inference_load_dtype, resolve_device
from lsfa.models.saving import META_FILE, TaggerMeta, base_config, load_tagger, read_meta
from lsfa.precision import BF16_PRECISIONS, MERGED_ONLY_PRECISIONS, autocast_dtype, resolve_precision
from lsfa.runs import MODEL_DIR


@dataclass(frozen=True)
class Entity:
    """One entity found in a text: ``text == original[start:end]`` (character offsets, end exclusive).

    ``score`` is the entity's confidence: the probability of exactly this span under the model's per-word
    distributions at the tagger's calibrated temperature (its words' tag probabilities times the probability
    that the next word does not continue it; see :func:`lsfa.decoding.span_confidences`).
    """

    start: int
    end: int
    label: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the fields in their declared order."""
        return asdict(self)


@dataclass(frozen=True)
class PreparedText:
    """A text split into words and encoded into the model rows it runs as: what a server counts, then queues."""

    text: str
    words: list[Word]
    encoded: EncodedSet
    options: InferenceOptions | None = None
    """The options this text is read with when they are not the tagger's own (a per-call ``threshold`` or
    ``decoding``): a server merges requests that asked for different ones into one run."""

    @property
    def subtokens(self) -> int:
        """Sub-tokens the model computes for this text (all its windows, overlaps and special tokens included)."""
        return self.encoded.n_subtokens


def resolve_tagger_folder(path: str | Path) -> Path:
    """The tagger folder for ``path``: the folder itself, or ``path/model`` for a training run folder."""
    folder = Path(path).expanduser()
    if (folder / META_FILE).is_file():
        return folder
    if (folder / MODEL_DIR / META_FILE).is_file():
        return folder / MODEL_DIR
    if not folder.exists():
        raise LsfaError(f"{folder}: no such tagger folder")
    raise LsfaError(
        f"{folder}: not an lsfa tagger folder (no {META_FILE}, and no model/{META_FILE} as in a training run)"
    )


def entities_from_spans(text: str, words: Sequence[Word], spans: Sequence[tuple[int, int, str, float]]) -> list[Entity]:
    """Entities of one text from word spans ``(first word, end word, type, confidence)``."""
    entities: list[Entity] = []
    for first, end_word, entity_type, confidence in spans:
        start, end = words[first].start, words[end_word - 1].end
        entities.append(Entity(start, end, entity_type, text[start:end], confidence))
    return entities


def _model_safe(word: str) -> str:
    """The word with lone surrogates (possible in JSON input) replaced, so the tokenizer can encode it."""
    if all(not 0xD800 <= ord(char) <= 0xDFFF for char in word):
        return word
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in word)


def _word_tags(tags: Sequence[str], scores: Sequence[float]) -> list[tuple[int, int, str, float]]:
    """Every word as a one-word "span" with its tag and probability (what a ``tokens`` tagger returns)."""
    return [(k, k + 1, tag, score) for k, (tag, score) in enumerate(zip(tags, scores, strict=True))]


def _select(predicted: WordPredictions, indices: Sequence[int]) -> WordPredictions:
    """The predictions of the sentences at ``indices``, in that order."""
    logits = predicted.logits
    return WordPredictions(
        [predicted.tags[k] for k in indices],
        [predicted.scores[k] for k in indices],
        0,
        None if logits is None else [logits[k] for k in indices],
    )


def _merge_dtype(folder: Path, precision: str, device):
    """The dtype a LoRA tagger's base is built and merged in on ``device``: bf16 on a GPU where that is exact and
    the merged weights end in bf16 anyway (:func:`lsfa.models.placement.inference_load_dtype`), else None (fp32)."""
    meta = read_meta(folder)
    if meta.weights != "lora" or meta.quantize != "none" or device.type == "cpu":
        return None
    return inference_load_dtype(base_config(meta), precision, device)


class Tagger:
    """A loaded tagger: a token classifier, its tokenizer and its metadata, ready to predict.

    ``labels`` are the model's tags (``O``, ``B-PER``, ...), ``attention`` its attention setting
    (``full`` = LS-FA, ``causal`` = LS-CA, or a layer pattern), ``model_name`` the base model it was
    trained from. ``batch_size`` is the number of model rows (windows) per forward pass.
    """

    def __init__(
        self, model, tokenizer, meta: TaggerMeta, options: InferenceOptions | None = None, **option_values: Any
    ) -> None:
        """``options`` (or its fields as keywords: ``precision``, ``batch_size``, ``decoding``, ``threshold``, ...)
        say how to run; see :class:`~lsfa.inference.options.InferenceOptions`."""
        options = InferenceOptions.of(options, **option_values)
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        device = next(model.parameters()).device
        resolved = {"precision": resolve_precision(options.precision, device)}
        resolved["max_length"] = options.max_length or meta.max_length
        self.options = InferenceOptions.of(options, **resolved)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        options: InferenceOptions | None = None,
        merge: bool = True,
        fast_path: bool = True,
        **option_values: Any,
    ) -> Tagger:
        """Load a tagger folder (or a training run folder holding ``model/``) to run with ``options`` (or its
        fields as keywords).

        ``decoding`` is ``viterbi`` (the most probable well-formed tag sequence, the default) or ``argmax``
        (each word's best tag, as the paper scored); ``threshold`` drops entities whose confidence is below it.
        ``fast_path=True`` fills the precision, packing and token budget the caller left at their defaults with
        what ``lsfa bench --choose-fast-path`` recorded for this CPU in the folder (:mod:`lsfa.inference.fast_path`;
        nothing changes for a folder never measured here). ``merge=True`` folds a LoRA adapter into the weights
        once, so prediction runs at the speed of a plain model; with bf16 precision the merged linear weights are
        then also stored in bf16 once
        (:func:`lsfa.models.optimise.optimise_for_inference`: the same numbers autocast computes, without
        re-casting ~100M weights on every call, which dominates batch-1 latency). ``precision="bf16-full"``
        stores every weight in bf16 (faster again, not bit-identical to autocast). ``device`` (``auto``, ``cpu``,
        ``cuda``, ``cuda:N``) defaults to the first CUDA GPU when there is one; a GPU that is not there is refused
        in one line. ``max_length`` overrides the length the model was trained with (longer texts are
        windowed either way). ``max_batch_tokens`` fills each forward pass up to that many padded tokens
        instead of ``batch_size`` rows, and ``pack`` also packs several short rows into one with a
        block-diagonal mask (both are what ``lsfa bench`` measures as the optimised path). The weights are built
        on ``device`` directly and merged there; a QLoRA tagger (4-bit base) is dequantised and merged, or with
        ``merge=False`` stays 4-bit with its adapter beside it (docs/large-models.md).
        """
        options = InferenceOptions.of(options, **option_values)  # checked before the weights load, not after
        folder = resolve_tagger_folder(folder)
        if fast_path:  # the path `lsfa bench --choose-fast-path` measured fastest on this CPU, where not chosen
            options = with_recorded_choice(options, read_meta(folder).extra)
        if options.precision in MERGED_ONLY_PRECISIONS and not merge:
            raise LsfaError(
                f"precision {options.precision} rewrites the merged weights: it cannot keep an adapter unmerged"
            )
        target = resolve_device(options.device)  # a missing GPU is one line here, before any weight loads
        resolved = resolve_precision(options.precision, target)
        with quiet_transformers():
            model, tokenizer, meta = load_tagger(
                folder, merge=merge, device=target, keep_quantised=not merge, compute_dtype=autocast_dtype(resolved),
                base_dtype=_merge_dtype(folder, resolved, target) if merge else None,
            )  # fmt: skip
        model.to(target)
        if merge and (resolved in BF16_PRECISIONS or resolved == "int8"):
            model = optimise_for_inference(model, resolved)
        return cls(model, tokenizer, meta, options)

    @property
    def precision(self) -> str:
        """The precision the tagger runs in (``auto`` resolved for this machine)."""
        return self.options.precision

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def max_length(self) -> int:
        """Sub-tokens per window (as trained unless overridden)."""
        return self.options.max_length or self.meta.max_length

    @property
    def decoding(self) -> str:
        return self.options.decoding

    @property
    def threshold(self) -> float | None:
        return self.options.threshold

    @property
    def progress(self) -> bool:
        return self.options.progress

    @progress.setter
    def progress(self, value: bool) -> None:
        self.options = InferenceOptions.of(self.options, progress=bool(value))

    @property
    def task(self) -> str:
        """``spans`` (entities from BIO tags) or ``tokens`` (a tag per word, e.g. part of speech)."""
        return self.meta.task

    @property
    def temperature(self) -> float:
        """The softmax temperature that calibrates this tagger's confidences (1.0 when never fitted)."""
        return self.meta.temperature

    @property
    def labels(self) -> list[str]:
        """The model's tags in label-id order."""
        return list(self.meta.labels)

    @property
    def attention(self) -> str:
        """The attention setting the tagger was trained and runs with."""
        return self.meta.attention

    @property
    def model_name(self) -> str:
        """The base model the tagger was fine-tuned from (catalogue name or path)."""
        return self.meta.base_model

    def call_options(self, **overrides: Any) -> InferenceOptions:
        """The tagger's options with per-call ``overrides`` (:data:`~lsfa.inference.options.CALL_OPTIONS`:
        ``threshold``, ``decoding``), validated once here. Why only those: they change how the model's outputs
        are read, not how the model runs, like the postprocessing parameters of a transformers pipeline call."""
        if not overrides:
            return self.options
        unknown = sorted(set(overrides) - set(CALL_OPTIONS))
        if unknown:
            raise LsfaError(
                f"{', '.join(unknown)}: not an option of one call (those are {', '.join(CALL_OPTIONS)}; "
                "the others are set when the tagger loads)"
            )
        return InferenceOptions.of(self.options, **overrides)

    def __call__(self, text: str, **overrides: Any) -> list[Entity]:
        """The entities of one text; ``threshold=`` and ``decoding=`` override the tagger's for this call."""
        self.call_options(**overrides)  # a load-time option (batch_size=...) is refused as one, not a TypeError
        return next(self.pipe([text], batch_size=1, **overrides))

    def pipe(self, texts: Iterable[str], batch_size: int | None = None, **overrides: Any) -> Iterator[list[Entity]]:
        """Entities for each text, in order; ``batch_size`` texts (default the tagger's) are predicted together.
        ``threshold=`` and ``decoding=`` override the tagger's for these texts."""
        size = batch_size or self.batch_size
        if size < 1:
            raise LsfaError(f"batch size must be at least 1, got {size}")
        options = self.call_options(**overrides)  # a bad value fails before the first text
        batch: list[str] = []
        for text in texts:
            if not isinstance(text, str):
                raise LsfaError(f"expected a string of text, got {type(text).__name__}")
            batch.append(text)
            if len(batch) == size:
                yield from run_steps(self.tag_steps(self._prepare(batch, options)))
                batch = []
        if batch:
            yield from run_steps(self.tag_steps(self._prepare(batch, options)))

    def prepare(self, texts: Sequence[str], **overrides: Any) -> list[PreparedText]:
        """Each text split into words and encoded into the model rows it will run as (windows included), to be
        read with the per-call ``overrides`` (``threshold``, ``decoding``) when given.

        Why apart from tagging: a server counts each text's work (``PreparedText.subtokens``, the sub-tokens the
        model will compute, whatever the characters) and refuses what is over its limits before any model work;
        the same rows are then run, not encoded a second time."""
        return self._prepare(texts, self.call_options(**overrides))

    def _prepare(self, texts: Sequence[str], options: InferenceOptions) -> list[PreparedText]:
        own = None if options is self.options else options
        prepared = []
        for text in texts:
            words = split_words(text)
            model_words = [[_model_safe(word.text) for word in words]]
            encoded = encode_sentences(self.tokenizer, model_words, max_length=self.max_length)
            prepared.append(PreparedText(text, words, encoded, own))
        return prepared

    def tag_steps(self, prepared: Sequence[PreparedText]) -> Generator[None, None, list[list[Entity]]]:
        """Entities of prepared texts, yielding after each forward pass (see
        :func:`lsfa.inference.predictor.predict_encoded_steps`); :func:`run_steps` drives it to the end. Each text
        is read with the options it was prepared with."""
        id2label = dict(enumerate(self.labels))
        encoded = concat_encoded([item.encoded for item in prepared])
        lengths = [len(item.words) for item in prepared]
        pad_id = self.tokenizer.pad_token_id
        predicted = yield from predict_encoded_steps(self.model, encoded, id2label, pad_id, lengths, self.options)
        spans = self._read_each(predicted, [item.options or self.options for item in prepared])
        return [entities_from_spans(item.text, item.words, found) for item, found in zip(prepared, spans, strict=True)]

    def _read_each(
        self, predicted: WordPredictions, options: Sequence[InferenceOptions]
    ) -> list[list[tuple[int, int, str, float]]]:
        """Each sentence's entities, read with its own options: sentences that share options are decoded
        together."""
        groups: dict[tuple[str, float | None], list[int]] = {}
        for index, own in enumerate(options):
            groups.setdefault((own.decoding, own.threshold), []).append(index)
        spans: list[list[tuple[int, int, str, float]]] = [[] for _ in options]
        for indices in groups.values():
            part = predicted if len(groups) == 1 else _select(predicted, indices)
            own = options[indices[0]]
            for index, found in zip(indices, self._spans(self._decoded(part, own), own), strict=True):
                spans[index] = found
        return spans

    def _decoded(self, predicted: WordPredictions, options: InferenceOptions) -> WordPredictions:
        """Tags read with ``options.decoding`` (argmax for a ``tokens`` tagger: flat tags have no transitions)."""
        decoding = "argmax" if self.task == "tokens" else options.decoding
        return decode_predictions(predicted, self.labels, decoding, self.temperature)

    def entity_spans(self, predicted: WordPredictions, **overrides: Any) -> list[list[tuple[int, int, str, float]]]:
        """Each sentence's entities with their confidence, those below the threshold (the tagger's, or
        ``threshold=`` for this call) dropped. A ``tokens`` tagger (part of speech) returns every word with its tag
        and probability instead: a tag per word, not entities."""
        return self._spans(predicted, self.call_options(**overrides))

    def _spans(self, predicted: WordPredictions, options: InferenceOptions) -> list[list[tuple[int, int, str, float]]]:
        if self.task == "tokens":
            return [drop_below(_word_tags(tags, scores), options.threshold) for tags, scores in zip(
                predicted.tags, predicted.scores, strict=True)]  # fmt: skip
        confidences = entity_confidences(predicted, self.labels, self.temperature)
        return [drop_below(found, options.threshold) for found in confidences]

    def kept_tags(
        self, predicted: WordPredictions, spans: Sequence[Sequence[tuple[int, int, str, float]]]
    ) -> list[list[str]]:
        """Tags that agree with ``spans`` (what :meth:`entity_spans` kept): words of entities below the threshold
        become ``O``, so a tag-per-word output (CoNLL, JSONL ``tags``) honours the threshold as the entities do.
        A ``tokens`` tagger's tags are returned as they are: each word has a tag, there is no ``O`` to fall to."""
        if self.task == "tokens":
            return [list(tags) for tags in predicted.tags]
        return [tags_of_kept(tags, kept) for tags, kept in zip(predicted.tags, spans, strict=True)]

    def predict_words(
        self, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None = None, **overrides: Any
    ) -> WordPredictions:
        """Tags (read with the tagger's decoding, or ``decoding=`` for this call) and their calibrated
        probabilities for pre-split word sequences (windows for long ones, never truncated).

        ``documents`` (one id per sequence) lets a tagger trained with document context see the
        neighbouring sequences of the same document, as in training.
        """
        options = self.call_options(**overrides)
        if documents is not None and len(documents) != len(sentences):
            raise LsfaError(f"{len(documents)} document ids for {len(sentences)} word sequences")
        safe = [[_model_safe(word) for word in words] for words in sentences]
        predicted = predict_words(
            self.model,
            self.tokenizer,
            safe,
            self.options,
            documents=documents,
            context=self.meta.context if documents is not None else "sentence",
        )
        return self._decoded(predicted, options)

    def __repr__(self) -> str:
        return (
            f"Tagger(model_name={self.model_name!r}, attention={self.attention!r}, labels={len(self.labels)}, "
            f"precision={self.precision!r}, max_length={self.max_length}, decoding={self.decoding!r})"
        )

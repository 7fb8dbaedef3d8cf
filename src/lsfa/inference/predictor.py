"""Batched word-level prediction with a token classifier.

Rows are encoded once (:func:`lsfa.data.encode.encode_sentences`: windows for long inputs, optional
document context), sorted by length so each batch pads little, run without gradients (bf16 autocast
when asked), and the first sub-token of every word gives that word's tag and probability.

The fast path (``max_batch_tokens``, ``pack``; see :mod:`lsfa.models.packing` and ``lsfa bench``) gives every
batch the same amount of work and can pack several short rows into one sequence with a block-diagonal mask;
it changes only the floating-point summation order, not what each sentence attends to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from lsfa.data.encode import Context, EncodedSet, Example, encode_sentences, scatter_to_words
from lsfa.errors import LsfaError
from lsfa.inference.options import EXACT, InferenceOptions
from lsfa.models import packing
from lsfa.models.optimise import required_precision
from lsfa.precision import autocast_dtype, resolve_precision


@dataclass
class WordPredictions:
    """Tags and probabilities per word for each input sentence, plus what windowing had to cut."""

    tags: list[list[str]]
    scores: list[list[float]]
    cut_words: int = 0
    logits: list[torch.Tensor] | None = None
    """Per sentence, the fp32 logits of every word over the labels ([words, labels]): what
    :func:`lsfa.inference.decode.decode_predictions` re-decodes (viterbi, temperature)."""


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA for ``bf16`` and ``bf16-full`` (bf16 weights), fp16 autocast for ``fp16``,
    else a no-op context."""
    dtype = autocast_dtype(precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def pad_batch(
    rows: Sequence[Example], pad_id: int, device: torch.device, multiple: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad a batch of rows into ``input_ids`` and ``attention_mask`` tensors (width rounded up to
    ``multiple`` when given)."""
    width = packing.round_up(max(len(row.input_ids) for row in rows), multiple)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row.input_ids)] = torch.tensor(row.input_ids)
        mask[index, : len(row.input_ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def predict_encoded(
    model,
    encoded: EncodedSet,
    id2label: dict[int, str],
    pad_id: int,
    sentence_lengths: Sequence[int],
    options: InferenceOptions = EXACT,
    sort_by_length: bool = True,
    **option_values: Any,
) -> WordPredictions:
    """Run the model over encoded rows and assemble per-word tags and probabilities (all forward passes of
    :func:`predict_encoded_steps` in one go; see there for the options)."""
    steps = predict_encoded_steps(
        model, encoded, id2label, pad_id, sentence_lengths, options, sort_by_length, **option_values
    )
    return run_steps(steps)


StepResult = TypeVar("StepResult")


def run_steps(steps: Generator[None, None, StepResult]) -> StepResult:
    """Drive a step generator (one ``yield`` per forward pass) to its end and return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def predict_encoded_steps(
    model,
    encoded: EncodedSet,
    id2label: dict[int, str],
    pad_id: int,
    sentence_lengths: Sequence[int],
    options: InferenceOptions = EXACT,
    sort_by_length: bool = True,
    **option_values: Any,
) -> Generator[None, None, WordPredictions]:
    """Run the model over encoded rows, yielding after each forward pass; return per-word tags and probabilities.

    Why a generator: a server interleaves the forward passes of concurrent requests (one pass of each in turn),
    so a small request waits for at most one pass of a large one, not for all of it; a caller that stops
    iterating drops the remaining passes (a client that went away costs nothing more).

    ``options`` (or its fields as keywords) say how: precision (``auto`` is resolved here), batch size, token
    budget, packing; decoding and threshold are applied later (:mod:`lsfa.inference.decode`).

    By default rows go in batches of ``batch_size`` (sorted by length unless ``sort_by_length=False``).
    ``max_batch_tokens`` instead fills each batch up to that many padded tokens (rows always sorted);
    ``pack`` additionally packs rows into sequences of up to ``pack_tokens`` tokens (default: chosen from
    the row lengths, :func:`lsfa.models.packing.auto_pack_tokens`) when the model allows it
    (:func:`lsfa.models.packing.packing_supported`), and silently falls back to padded batches otherwise.
    """
    options = InferenceOptions.of(options, **option_values)
    device = next(model.parameters()).device
    precision = resolve_precision(options.precision, device)
    if required_precision(model) not in (None, precision):
        raise LsfaError(
            f"this model's weights were stored in {required_precision(model)} for fast inference; "
            f"predict with precision={required_precision(model)!r}, not {precision!r}"
        )
    if precision in ("bf16-full", "int8") and required_precision(model) is None:
        raise LsfaError(
            f"precision {precision} needs the weights rewritten first: optimise_for_inference(model, {precision!r})"
        )
    tags = [["O"] * n for n in sentence_lengths]
    scores = [[1.0] * n for n in sentence_lengths]
    word_logits = [torch.zeros(n, len(id2label)) for n in sentence_lengths]
    examples = encoded.examples
    packed = options.pack and packing.packing_supported(model)[0]
    causal = packed and packing.is_causal_model(model)
    batches = plan_batches(model, examples, options, sort_by_length, packed)
    for batch in _progress(batches, options.progress):
        if packed:
            sequences = [[examples[k].input_ids for k in row] for row in batch.rows]
            inputs, offsets = packing.build_inputs(sequences, pad_id, device, causal, options.pad_to_multiple_of)
        else:
            inputs = pad_batch([examples[k] for k in batch.examples], pad_id, device, options.pad_to_multiple_of)
            offsets = [[0] for _ in batch.rows]
        with torch.inference_mode(), autocast_context(device, precision):
            logits = model(**inputs).logits
            _collect(logits, batch, offsets, examples, id2label, tags, scores, word_logits)
        yield
    return WordPredictions(tags, scores, encoded.cut_words, word_logits)


def plan_batches(
    model, examples: Sequence[Example], options: InferenceOptions, sort_by_length: bool = True, packed: bool = False
) -> list[packing.PlannedBatch]:
    """Which rows run together: fixed-size batches, token-budget batches, or packed rows."""
    batch_size, max_batch_tokens, pack_tokens = options.batch_size, options.max_batch_tokens, options.pack_tokens
    lengths = [len(example.input_ids) for example in examples]
    if packed:
        limit = packing.pack_limit(model, pack_tokens or packing.auto_pack_tokens(lengths))
        return packing.packed_batches(lengths, limit, max_batch_tokens or limit * batch_size)
    if max_batch_tokens:
        return packing.token_budget_batches(lengths, max_batch_tokens)
    order = list(range(len(examples)))
    if sort_by_length:
        order.sort(key=lambda k: lengths[k])
    return [packing.PlannedBatch([[k] for k in order[i : i + batch_size]]) for i in range(0, len(order), batch_size)]


def _collect(logits, batch, offsets, examples, id2label, tags, scores, word_logits) -> None:
    """Best label, its probability and all logits at every scored word's first sub-token, for all rows of a
    batch at once."""
    batch_rows: list[int] = []
    columns: list[int] = []
    for row_index, (row, row_offsets) in enumerate(zip(batch.rows, offsets, strict=True)):
        for example, offset in zip(row, row_offsets, strict=True):
            positions = examples[example].label_positions
            batch_rows.extend([row_index] * len(positions))
            columns.extend(offset + position for position in positions)
    device = logits.device
    picked = logits[torch.tensor(batch_rows, device=device), torch.tensor(columns, device=device)]
    picked = picked.float()
    best, label_ids = picked.softmax(-1).max(-1)
    best_list, label_list, picked = best.tolist(), label_ids.tolist(), picked.cpu()
    rows = [examples[example] for example in batch.examples]
    scatter_to_words(rows, [id2label[label] for label in label_list], tags)
    scatter_to_words(rows, best_list, scores)
    scatter_to_words(rows, picked, word_logits)


def _progress(batches, enabled: bool):
    if not enabled or len(batches) < 4:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="predict", unit="batch")


def predict_words(
    model,
    tokenizer,
    sentences: Sequence[Sequence[str]],
    options: InferenceOptions = EXACT,
    documents: Sequence[int] | None = None,
    context: Context = "sentence",
    **option_values: Any,
) -> WordPredictions:
    """Predict a tag per word for pre-split sentences (windows and context handled here).

    ``options`` (or its fields as keywords: ``precision``, ``batch_size``, ``max_length``, ``pack``, ...) say
    how; the predictor's defaults are exact fp32 (:data:`~lsfa.inference.options.EXACT`).
    """
    options = InferenceOptions.of(options, **option_values)
    encoded = encode_sentences(
        tokenizer, sentences, max_length=options.max_length or DEFAULT_MAX_LENGTH, documents=documents, context=context
    )
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    return predict_encoded(
        model, encoded, id2label, tokenizer.pad_token_id, [len(words) for words in sentences], options
    )


DEFAULT_MAX_LENGTH = 512
"""Sub-tokens per window when neither the options nor the tagger say otherwise."""

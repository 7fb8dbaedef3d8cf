"""Batched word-level prediction with a token classifier.

Rows are encoded once (:func:`lsfa.data.encode.encode_sentences`: windows for long inputs, optional
document context), sorted by length so each batch pads little, run without gradients (bf16 autocast
when asked), and the first sub-token of every word gives that word's tag and probability.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lsfa.data.encode import EncodedSet, Example, encode_sentences


@dataclass
class WordPredictions:
    """Tags and probabilities per word for each input sentence, plus what windowing had to cut."""

    tags: list[list[str]]
    scores: list[list[float]]
    cut_words: int = 0


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA when ``precision == "bf16"``, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """``auto`` becomes ``bf16`` where the hardware has fast bf16 matmuls, ``fp32`` elsewhere."""
    if precision != "auto":
        return precision
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def pad_batch(rows: Sequence[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a batch of rows into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(row.input_ids) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row.input_ids)] = torch.tensor(row.input_ids)
        mask[index, : len(row.input_ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


@torch.no_grad()
def predict_encoded(
    model,
    encoded: EncodedSet,
    id2label: dict[int, str],
    pad_id: int,
    sentence_lengths: Sequence[int],
    batch_size: int = 32,
    precision: str = "fp32",
    sort_by_length: bool = True,
    progress: bool = False,
) -> WordPredictions:
    """Run the model over encoded rows and assemble per-word tags and probabilities."""
    device = next(model.parameters()).device
    tags = [["O"] * n for n in sentence_lengths]
    scores = [[1.0] * n for n in sentence_lengths]
    order = list(range(len(encoded.examples)))
    if sort_by_length:
        order.sort(key=lambda k: len(encoded.examples[k].input_ids))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for batch in _progress(batches, progress):
        rows = [encoded.examples[k] for k in batch]
        with autocast_context(device, precision):
            logits = model(**pad_batch(rows, pad_id, device)).logits
        probabilities = logits.float().softmax(-1)
        for row_index, row in enumerate(rows):
            positions = torch.tensor(row.label_positions, dtype=torch.long, device=device)
            best, label_ids = probabilities[row_index, positions].max(-1)
            for word, label_id, score in zip(row.words, label_ids.tolist(), best.tolist(), strict=True):
                tags[row.sentence][word] = id2label[label_id]
                scores[row.sentence][word] = score
    return WordPredictions(tags, scores, encoded.cut_words)


def _progress(batches, enabled: bool):
    if not enabled or len(batches) < 4:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="predict", unit="batch")


def predict_words(
    model,
    tokenizer,
    sentences: Sequence[Sequence[str]],
    max_length: int = 512,
    batch_size: int = 32,
    precision: str = "fp32",
    documents: Sequence[int] | None = None,
    context: str = "sentence",
    progress: bool = False,
) -> WordPredictions:
    """Predict a tag per word for pre-split sentences (windows and context handled here)."""
    encoded = encode_sentences(tokenizer, sentences, max_length=max_length, documents=documents, context=context)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    return predict_encoded(
        model,
        encoded,
        id2label,
        tokenizer.pad_token_id,
        [len(words) for words in sentences],
        batch_size=batch_size,
        precision=precision,
        progress=progress,
    )

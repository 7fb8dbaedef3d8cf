"""Packed training batches: a batch's rows share model rows, so no compute goes to padding.

Why not length-grouped batches (the Trainer's ``group_by_length``), the usual cure for padding: grouping
changes *which* sentences train together, and on the short runs of docs/results/performance.md it cost dev F1
(smollm2-135m LS-FA LoRA, 1,000 CoNLL-2003 sentences, bf16: mean dev F1 0.590 over three seeds grouped, 0.622
over five seeds with random batches). Packing keeps the random batches of the reference recipe and removes the
padding instead: the rows of one batch are spread over as few model rows as ``pack_tokens`` allows, balanced
so the batch's padding (to its longest row) stays small (:func:`lsfa.models.packing.balanced_packs`), each
sentence in its own block of a block-diagonal mask (bidirectional, or lower-triangular for causal models) with
positions restarting at 0 (:func:`lsfa.models.packing.build_inputs`). Each sentence is then computed as if
alone, and the loss (the mean over labelled sub-tokens of the batch) is the one of the padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lsfa.data.align import IGNORE_INDEX
from lsfa.models import packing


@dataclass
class PackingCollator:
    """Turns a batch of ``{"input_ids", "labels"}`` rows into packed model inputs with aligned labels."""

    pad_id: int
    pack_tokens: int
    causal: bool = False

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(feature["input_ids"]) for feature in features]
        packs = packing.balanced_packs(lengths, self.pack_tokens)
        rows = [[features[k]["input_ids"] for k in pack] for pack in packs]
        inputs, offsets = packing.build_inputs(rows, self.pad_id, torch.device("cpu"), self.causal)
        labels = torch.full(inputs["input_ids"].shape, IGNORE_INDEX, dtype=torch.long)
        for row, (pack, starts) in enumerate(zip(packs, offsets, strict=True)):
            for example, start in zip(pack, starts, strict=True):
                row_labels = features[example]["labels"]
                labels[row, start : start + len(row_labels)] = torch.as_tensor(row_labels, dtype=torch.long)
        inputs["labels"] = labels
        return inputs


@dataclass
class FlatteningCollator:
    """Padding-free batches for FlashAttention-2: the batch's rows end to end in one row, positions restarting
    at 0 for each, no attention mask (:func:`lsfa.models.packing.flat_inputs`); labels follow their tokens."""

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs, starts = packing.flat_inputs([feature["input_ids"] for feature in features], torch.device("cpu"))
        labels = torch.full(inputs["input_ids"].shape, IGNORE_INDEX, dtype=torch.long)
        for feature, start in zip(features, starts, strict=True):
            labels[0, start : start + len(feature["labels"])] = torch.as_tensor(feature["labels"], dtype=torch.long)
        inputs["labels"] = labels
        return inputs


def packing_collator(
    model, pad_id: int, lengths: Sequence[int]
) -> tuple[PackingCollator | FlatteningCollator | None, str]:
    """A collator for ``model`` with the pack length :func:`lsfa.models.packing.auto_pack_tokens` picks for
    rows of ``lengths``, or None and the reason when the model cannot be packed (encoders, eager attention).
    Under FlashAttention-2, which takes no 4D mask, batches are flattened instead (:class:`FlatteningCollator`)."""
    if getattr(model.config, "_attn_implementation", None) == "flash_attention_2":
        return FlatteningCollator(), "padding-free rows (flash_attention_2: position ids, no mask)"
    supported, why = packing.packing_supported(model)
    if not supported:
        return None, why
    limit = packing.pack_limit(model, packing.auto_pack_tokens(lengths))
    return PackingCollator(pad_id, limit, packing.is_causal_model(model)), f"packed rows of <= {limit} sub-tokens"

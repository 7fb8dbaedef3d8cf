"""Batch plans for inference: token-budget batches of length-sorted rows, and sequence packing.

Why: a fixed number of sentences per batch gives tiny matrix products for short sentences (slow per token)
and huge ones for long sentences; a *token* budget keeps every batch the same amount of work. Packing goes
one step further and concatenates several short rows into one sequence, so no compute goes to padding.
Each packed row gets its own block of a block-diagonal attention mask (bidirectional inside the block,
lower-triangular inside it for causal models) and position ids that restart at 0, so each sentence is
computed exactly as if it were alone (up to floating-point summation order).

transformers builds its own mask from a 2D padding mask, and its packed-sequence detection (from
``position_ids`` resets) only exists for causal masks; a 4D mask, however, is passed through untouched by
``masking_utils``. We therefore hand the model a ready 4D boolean mask, which is correct for the
``sdpa`` implementation and for lsfa's per-layer ``lsfa_sdpa`` (which intersects it with a causal triangle
in the causal layers; inside a packed row that is exactly the per-sentence causal rule). Other setups
(eager attention expects an additive mask, encoders have absolute position embeddings with token types)
are not packed: :func:`packing_supported` says so and the predictor falls back to padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lsfa.models.attention import get_attention
from lsfa.models.classifier import is_encoder

PACKABLE_IMPLEMENTATIONS = ("sdpa", "lsfa_sdpa")


@dataclass
class Placement:
    """Where one encoded row sits in a batch tensor: row ``batch_row`` of the batch, from column ``offset``."""

    example: int
    batch_row: int
    offset: int


@dataclass
class PlannedBatch:
    """The rows of one forward pass: which examples go into which batch row (several when packed)."""

    rows: list[list[int]]

    @property
    def examples(self) -> list[int]:
        return [example for row in self.rows for example in row]


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, max_rows: int | None = None, max_padding: float = 0.1
) -> list[PlannedBatch]:
    """Length-sorted rows grouped so that ``rows x longest`` (the padded size) stays within ``max_tokens``.

    A batch is also closed before its padding would exceed ``max_padding`` of its padded size: without
    that, a large budget over few sentences puts short and long rows together and pays for padding (the
    benchmark measured batches of 4096 tokens at twice the real work on 150 CoNLL sentences). A row longer
    than the budget forms a batch of its own (it is never cut here: windowing happened at encoding time).
    """
    order = sorted(range(len(lengths)), key=lambda k: (lengths[k], k))
    batches: list[PlannedBatch] = []
    current: list[int] = []
    real = 0
    for index in order:
        width = lengths[index]  # sorted ascending: the newest row is the longest of the batch
        padded = width * (len(current) + 1)
        too_wide = current and padded > max_tokens
        too_padded = current and 1 - (real + width) / padded > max_padding
        too_many = max_rows is not None and len(current) >= max_rows
        if too_wide or too_padded or too_many:
            batches.append(PlannedBatch([[k] for k in current]))
            current, real = [], 0
        current.append(index)
        real += width
    if current:
        batches.append(PlannedBatch([[k] for k in current]))
    return batches


def auto_pack_tokens(lengths: Sequence[int], minimum: int = 64, maximum: int = 256, multiple: int = 32) -> int:
    """The pack length for rows of these lengths: room for about three average rows, within [64, 256].

    Why not simply long packs: every token of a packed row computes attention scores against the whole
    row (the block-diagonal mask only zeroes them), so attention work per token grows with the pack
    length. With 256-token packs of CoNLL-2003 sentences (22 sub-tokens on average) attention took 22% of
    the forward time, with 64-token packs 14%, and 64-token packs still hold several sentences each: 1.14x
    faster (docs/results/speed-checks/). A pack
    only sets an upper bound: batches are padded to their longest pack, not to this length.
    """
    if not lengths:
        return minimum
    mean = sum(lengths) / len(lengths)
    width = -(-int(3 * mean) // multiple) * multiple
    return max(minimum, min(maximum, width))


def plan_packs(lengths: Sequence[int], pack_tokens: int) -> list[list[int]]:
    """Group rows into packs of at most ``pack_tokens`` tokens (first-fit decreasing).

    Longest rows are placed first, each into the first pack with room, which fills packs tightly; a row
    longer than ``pack_tokens`` gets a pack of its own.
    """
    order = sorted(range(len(lengths)), key=lambda k: (-lengths[k], k))
    packs: list[list[int]] = []
    room: list[int] = []
    for index in order:
        size = lengths[index]
        for pack_index, free in enumerate(room):
            if size <= free:
                packs[pack_index].append(index)
                room[pack_index] -= size
                break
        else:
            packs.append([index])
            room.append(max(pack_tokens - size, 0))
    return packs


def balanced_packs(lengths: Sequence[int], pack_tokens: int) -> list[list[int]]:
    """All rows in as few packs as ``pack_tokens`` allows on average, balanced so the longest pack is short.

    For one training batch, which is padded to its longest pack: first-fit leaves a small last pack beside
    full ones, while placing each row, longest first, into
    the pack with the least tokens so far (LPT scheduling) evens them out. A pack can exceed
    ``pack_tokens`` by less than one row.
    """
    if not lengths:
        return []
    count = max(1, -(-sum(lengths) // max(pack_tokens, 1)))
    packs: list[list[int]] = [[] for _ in range(min(count, len(lengths)))]
    loads = [0] * len(packs)
    for index in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        target = min(range(len(packs)), key=lambda k: (loads[k], k))
        packs[target].append(index)
        loads[target] += lengths[index]
    return packs


def packed_batches(lengths: Sequence[int], pack_tokens: int, max_tokens: int) -> list[PlannedBatch]:
    """Packs of rows, grouped into batches of at most ``max_tokens`` padded tokens (packs sorted by size)."""
    packs = plan_packs(lengths, pack_tokens)
    sizes = [sum(lengths[k] for k in pack) for pack in packs]
    return [
        PlannedBatch([packs[k] for k in batch.examples]) for batch in token_budget_batches(sizes, max(max_tokens, 1))
    ]


def build_inputs(
    rows: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    device: torch.device,
    causal: bool = False,
    multiple: int | None = None,
) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
    """Model inputs for batch rows that each hold one or more token sequences.

    Returns ``input_ids``, ``position_ids`` (restarting at 0 for every sequence) and a 4D boolean
    ``attention_mask`` ``(batch, 1, width, width)`` where a token sees exactly the tokens of its own sequence
    (and, when ``causal``, only those to its left). Padding tokens form a block of their own, so no
    attention row is empty (an empty row would give NaN that leaks through the values). Also returns the
    start offset of every sequence in its row. ``multiple`` rounds the width up (more padding, fewer shapes).
    """
    widths = [sum(len(sequence) for sequence in row) for row in rows]
    width = round_up(max(widths), multiple)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    offsets: list[list[int]] = []
    for row_index, row in enumerate(rows):
        start, row_offsets = 0, []
        for segment, sequence in enumerate(row):
            stop = start + len(sequence)
            ids[row_index, start:stop] = torch.as_tensor(sequence, dtype=torch.long)
            positions[row_index, start:stop] = torch.arange(len(sequence))
            segments[row_index, start:stop] = segment
            row_offsets.append(start)
            start = stop
        offsets.append(row_offsets)
    segments[segments < 0] = width  # padding: one block of its own, never seen by real tokens
    mask = segments[:, :, None] == segments[:, None, :]
    if causal:
        mask &= torch.ones((width, width), dtype=torch.bool).tril()
    inputs = {
        "input_ids": ids.to(device),
        "position_ids": positions.to(device),
        "attention_mask": mask[:, None].to(device),
    }
    return inputs, offsets


def flat_inputs(sequences: Sequence[Sequence[int]], device: torch.device) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Padding-free model inputs for FlashAttention-2: every sequence end to end in one row of ``input_ids``, with
    ``position_ids`` restarting at 0 for each and no ``attention_mask``; also the start offset of every sequence.

    Why no mask: FlashAttention takes none. transformers reads the sequence boundaries from the position resets
    and runs the variable-length kernel, each sequence attending only to itself, bidirectionally or causally as
    ``is_causal`` says (as its ``DataCollatorWithFlattening`` does for causal LMs). Nothing is padded at all."""
    starts, position = [], 0
    for sequence in sequences:
        starts.append(position)
        position += len(sequence)
    ids = torch.tensor([[token for sequence in sequences for token in sequence]], dtype=torch.long)
    positions = torch.cat([torch.arange(len(sequence)) for sequence in sequences])[None]
    return {"input_ids": ids.to(device), "position_ids": positions.to(device)}, starts


def round_up(width: int, multiple: int | None) -> int:
    """``width`` rounded up to a multiple of ``multiple`` (unchanged for None or 1).

    Why: oneDNN (bf16 on CPU) compiles and caches a kernel per distinct matrix shape, so a server seeing every
    width from 1 to 512 fills its cache with near-duplicates; a coarser set of widths bounds it."""
    if not multiple or multiple <= 1:
        return width
    return -(-width // multiple) * multiple


def packing_supported(model) -> tuple[bool, str]:
    """Whether :func:`build_inputs` gives ``model`` the same result as padded batches, and why not if not."""
    config = model.config
    if is_encoder(config):
        return False, f"{config.model_type} is an encoder (absolute positions and token types): not packed"
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if implementation not in PACKABLE_IMPLEMENTATIONS:
        return False, f"attention implementation {implementation!r} is not packed (needs sdpa)"
    return True, ""


def pack_limit(model, requested: int) -> int:
    """The pack length: the requested one, no longer than a sliding attention window (which packs ignore)."""
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    if isinstance(window, int) and window > 0:
        return min(requested, window)
    return requested


def is_causal_model(model) -> bool:
    """True when every layer of the model is causal (LS-CA), so packed blocks must be triangular.

    With ``full`` the blocks stay bidirectional; with a layer subset lsfa's own attention function adds the
    triangle in the causal layers (see :mod:`lsfa.models.attention`), so the blocks stay bidirectional too.
    """
    spec = get_attention(model)
    if spec is None:
        return bool(getattr(model.config, "is_causal", True))
    return spec.mode == "causal"

"""Training throughput: optimiser steps of a fresh LoRA tagger, reference recipe against lsfa's.

Both variants train the same model (the tagger's base model with a new head over the tagger's labels, LoRA
on every linear projection as in the paper) with AdamW on the same sentences; they differ only in what the
issue names: the *reference* runs fp32 with batches of 8 in random order (padding to the longest of a random
batch), the *optimised* one runs what ``lsfa train`` does by default: the same random batches, packed into
shared rows so no compute goes to padding (:mod:`lsfa.training.collate`), bf16 autocast with the frozen base
weights stored in bf16 once instead of cast by autocast at every step (bit-identical), the math
attention kernel for short rows, a cheaper LoRA dropout mask on CPU (:mod:`lsfa.training.kernels`) and the
fused AdamW kernel.
Length-grouped batches (the Trainer's ``group_by_length``) are available as ``order="grouped"``. Throughput counts
real (non-padding) sub-tokens, so padding is not credited as work.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lsfa.bench.system import PeakMemory, synchronize
from lsfa.data.align import IGNORE_INDEX
from lsfa.data.encode import Example
from lsfa.inference.predictor import autocast_context
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import apply_lora, build_token_classifier
from lsfa.models.optimise import cast_frozen_linear_weights
from lsfa.training.kernels import training_attention_context, use_fast_lora_dropout


@dataclass
class TrainVariant:
    """One training recipe with its own model copy, optimiser, batch stream and measured totals."""

    name: str
    precision: str
    order: str  # "random" or "grouped"
    batch_size: int
    cast_frozen: bool = False  # store frozen base weights in bf16 once (see cast_frozen_linear_weights)
    kernels: str = "default"  # "fast": math attention for short rows, cheaper LoRA dropout (lsfa.training.kernels)
    collator: Any = None  # a lsfa.training.collate.PackingCollator packs each batch's rows; None pads them
    model: Any = None
    optimizer: Any = None
    batches: list[list[int]] = field(default_factory=list)
    cursor: int = 0
    steps: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    memory: PeakMemory | None = None

    def result(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-12)
        out = {
            "name": self.name,
            "precision": self.precision,
            "batch_order": "random" if self.order == "random" else "length-grouped",
            "batching": f"packed rows of <= {self.collator.pack_tokens} sub-tokens" if self.collator else "padded",
            "batch_size": self.batch_size,
            "frozen_weights": "bf16, cast once" if self.cast_frozen else "fp32",
            "kernels": self.kernels,
            "steps": self.steps,
            "tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
            "padding_share": 1 - self.tokens / self.padded_tokens if self.padded_tokens else None,
            "seconds": self.seconds,
            "tokens_per_second": self.tokens / seconds,
            "seconds_per_step": self.seconds / self.steps if self.steps else None,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
        }
        if self.memory is not None:
            out["memory"] = self.memory.as_dict()
        return out


def random_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled rows in consecutive batches (the reference recipe)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, megabatch_factor: int = 50
) -> list[list[int]]:
    """The Trainer's ``group_by_length`` order: shuffle, cut into mega-batches, sort each by length.

    Batches stay random across the epoch (what the optimiser needs) while rows inside one batch have
    similar lengths (what the hardware needs). The longest batch goes first, as in transformers, so an
    out-of-memory error shows up at once.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = batch_size * megabatch_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), size):
        mega = sorted(order[start : start + size], key=lambda k: -lengths[k])
        batches.extend(mega[i : i + batch_size] for i in range(0, len(mega), batch_size))
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[k] for k in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def collate(rows: Sequence[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (padding labelled :data:`IGNORE_INDEX`)."""
    width = max(len(row.input_ids) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for index, row in enumerate(rows):
        n = len(row.input_ids)
        ids[index, :n] = torch.tensor(row.input_ids)
        mask[index, :n] = 1
        labels[index, :n] = torch.tensor(row.labels)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def fresh_lora_model(base_model: str, labels: Sequence[str], attention: str, device: torch.device, seed: int):
    """The tagger's base model with a new head and fresh LoRA adapters (paper defaults), in training mode."""
    torch.manual_seed(seed)
    model = build_token_classifier(resolve_model(base_model), list(labels), attention)
    model = apply_lora(model).to(device)
    model.train()
    return model


def train_step(variant: TrainVariant, rows: Sequence[Example], pad_id: int, device: torch.device) -> None:
    """One timed optimiser step (forward, backward, update) of ``variant``; adds its tokens and time."""
    batch = variant.batches[variant.cursor % len(variant.batches)]
    variant.cursor += 1
    selected = [rows[k] for k in batch]
    synchronize(device)
    start = time.perf_counter()
    if variant.collator is None:
        inputs = collate(selected, pad_id, device)
    else:
        features = [{"input_ids": row.input_ids, "labels": row.labels} for row in selected]
        inputs = {key: value.to(device) for key, value in variant.collator(features).items()}
    width = inputs["input_ids"].shape[-1]
    with training_attention_context(width, device, variant.kernels):
        with autocast_context(device, variant.precision):
            loss = variant.model(**inputs).loss
        loss.backward()
    variant.optimizer.step()
    variant.optimizer.zero_grad(set_to_none=True)
    value = loss.item()  # also waits for the GPU
    variant.seconds += time.perf_counter() - start
    variant.steps += 1
    variant.tokens += sum(len(row.input_ids) for row in selected)
    variant.padded_tokens += inputs["input_ids"].numel()
    variant.losses.append(value)


def prepare_variant(variant: TrainVariant, model, lengths: Sequence[int], seed: int, learning_rate: float) -> None:
    """Attach a model, an AdamW optimiser over its trainable weights and the batch order of the recipe."""
    if variant.cast_frozen:
        cast_frozen_linear_weights(model, torch.bfloat16)
    if variant.kernels == "fast" and next(model.parameters()).device.type == "cpu":
        use_fast_lora_dropout(model)
    variant.model = model
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = variant.kernels == "fast"  # as lsfa train's optim="adamw_torch_fused"
    variant.optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.001, fused=fused)
    rng = random.Random(seed)
    make = random_batches if variant.order == "random" else length_grouped_batches
    variant.batches = make(lengths, variant.batch_size, rng)


def measure_training(
    variants: Sequence[TrainVariant],
    rows: Sequence[Example],
    pad_id: int,
    device: torch.device,
    steps: int,
    rounds: int,
    warmup_steps: int = 1,
    log: Callable[[str], None] | None = None,
) -> None:
    """Warm every variant up, then run ``steps`` timed steps each, in rounds alternating who goes first."""
    for variant in variants:
        for _ in range(warmup_steps):
            train_step(variant, rows, pad_id, device)
        variant.steps = variant.tokens = variant.padded_tokens = 0
        variant.seconds = 0.0
        variant.losses.clear()
        variant.memory = PeakMemory(device)
    rounds = max(1, min(rounds, steps))
    per_round = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
    for index, count in enumerate(per_round):
        ordered = variants if index % 2 == 0 else list(reversed(variants))
        for variant in ordered:
            assert variant.memory is not None
            with variant.memory.measure():
                for _ in range(count):
                    train_step(variant, rows, pad_id, device)
        if log:
            log(f"  training round {index + 1}/{rounds} done")

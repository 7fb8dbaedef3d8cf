"""``lsfa plan``: the memory one training run needs per GPU, from its training config and the base model's
``config.json`` alone, before anything is downloaded or trained.

Why beside ``lsfa models estimate``: the estimate compares fixed recipes; a plan reads the run the user is about to
start (every :class:`TrainConfig` key: mode, precision, quantize, LoRA rank and targets, layers, batch size, max
length, gradient checkpointing) and says whether it fits a card. The counting and the bytes are the estimator's
(:func:`lsfa.models.estimate.memory`); this module only turns a config into its :class:`Recipe`, with the precision
the target card would give ``auto`` (:mod:`lsfa.precision`) and the dtype training would build the base in
(:func:`lsfa.models.placement.training_load_dtype`, the rule :func:`lsfa.training.model.build_model` follows).

Under DDP every rank holds the whole model and its own ``batch_size`` rows, so the plan of one GPU is the plan of
each; ``gradient_accumulation`` adds steps, not memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from lsfa.errors import LsfaError
from lsfa.models.catalogue import resolve_model
from lsfa.models.estimate import (
    GIB,
    MemoryEstimate,
    ParameterCounts,
    Recipe,
    Storage,
    activations_of,
    count_on_meta_device,
    describe_counts,
    load_model_config,
    memory,
)
from lsfa.models.placement import HALF, checkpoint_dtype, training_load_dtype
from lsfa.precision import resolve_precision
from lsfa.training.config import TrainConfig

Target = Literal["cuda-bf16", "cuda-fp16", "cpu"]
TARGETS: tuple[str, ...] = get_args(Target)
TARGET_MEANING = {
    "cuda-bf16": "a CUDA card with bf16 units (Ampere and later: A100, H100, L4, RTX 30/40), where auto is bf16",
    "cuda-fp16": "a CUDA card without bf16 units (T4, V100), where auto is fp16 with loss scaling",
    "cpu": "this machine's CPU, where auto is what `lsfa env` says (bf16 only where it measured faster)",
}
CUDA_RESERVE_GIB = 1.5
"""CUDA context, cuBLAS workspaces and allocator fragmentation, which no tensor count sees (often 1-2 GiB)."""


@dataclass(frozen=True)
class Plan:
    """One training run's memory on one device, and whether it fits ``memory_gib``."""

    model: str
    counts: ParameterCounts
    estimate: MemoryEstimate
    activations_other: float
    """Activations with checkpointing off when it is on, and on when it is off (the other choice)."""
    checkpointing: bool
    precision: str
    """The training precision on the target (``auto`` resolved)."""
    target: str
    storage: str
    batch_size: int
    max_length: int
    memory_gib: float
    reserve_gib: float
    notes: tuple[str, ...]

    @property
    def total(self) -> float:
        """Bytes: the run's peak (training, or building the weights if that is more) plus the reserve."""
        return self.estimate.peak + self.reserve_gib * GIB

    @property
    def fits(self) -> bool:
        return self.total <= self.memory_gib * GIB


def target_precision(precision: str, target: str) -> str:
    """The precision a run of ``precision`` trains in on ``target``: ``auto`` as that card resolves it."""
    if target not in TARGETS:
        raise LsfaError(f"--target {target}: use one of {', '.join(TARGETS)}")
    if precision == "fp16" and target == "cpu":
        raise LsfaError("precision fp16 trains on a CUDA GPU only; plan it with --target cuda-fp16")
    if precision != "auto":
        return precision
    if target == "cpu":
        return resolve_precision("auto", torch.device("cpu"))
    return "bf16" if target == "cuda-bf16" else "fp16"


def base_storage(config: TrainConfig, model_config: Any, precision: str) -> tuple[Storage, Storage | None]:
    """How training holds the base weights, and how it builds them where that differs: quantised, or frozen
    linear weights in the autocast dtype (fp32 if the checkpoint is stored in fp32, cast once built), or fp32."""
    if config.quantize != "none":
        return config.quantize, None
    half = precision in ("bf16", "fp16")
    if config.finetune == "full" or not half or config.save_merged:
        return "fp32", None  # save_merged keeps the frozen weights fp32 (runner: no cast_frozen_linear_weights)
    built = training_load_dtype(model_config, precision, config.finetune, config.quantize, config.save_merged)
    return "half-linear", (None if built in HALF else "fp32")


def plan_run(
    config: TrainConfig, target: str = "cuda-bf16", memory_gib: float = 24.0, reserve_gib: float | None = None
) -> Plan:
    """The memory of training ``config`` on one ``target`` device of ``memory_gib`` GiB."""
    if memory_gib <= 0:
        raise LsfaError(f"--gpu-memory {memory_gib}: must be a positive number of GiB")
    precision = target_precision(config.precision, target)
    reserve = (CUDA_RESERVE_GIB if target != "cpu" else 0.0) if reserve_gib is None else reserve_gib
    model_config = load_model_config(resolve_model(config.model), config.layers)
    counts = count_on_meta_device(model_config, config.lora.target_modules)
    storage, build = base_storage(config, model_config, precision)
    recipe = Recipe(
        "train", _recipe_name(config, precision), mode=config.finetune, storage=storage,
        activation_bytes=2 if precision in ("bf16", "fp16") else 4, checkpointing=config.gradient_checkpointing,
        lora_r=config.lora.r, lora_dropout=config.lora.dropout, build_storage=build,
    )  # fmt: skip
    saved = activations_of(counts, recipe, config.batch_size, config.max_length)
    estimate = memory(counts, recipe, config.batch_size, config.max_length, saved)
    other = saved.total(counts.layers, not config.gradient_checkpointing)
    return Plan(
        config.model, counts, estimate, other, config.gradient_checkpointing, precision, target,
        storage, config.batch_size, config.max_length, memory_gib, reserve, _notes(config, model_config, build),
    )  # fmt: skip


def _recipe_name(config: TrainConfig, precision: str) -> str:
    if config.finetune == "full":
        return f"full fine-tuning, {precision}"
    kind = "QLoRA" if config.quantize != "none" else "LoRA"
    return f"{kind} r{config.lora.r} ({config.lora.target_modules}), {precision}"


def _notes(config: TrainConfig, model_config: Any, build: Storage | None) -> tuple[str, ...]:
    notes = []
    if build == "fp32":
        stored = checkpoint_dtype(model_config)
        notes.append(f"the checkpoint is stored in {str(stored).removeprefix('torch.') if stored else 'fp32'}: "
                     "it is built in fp32, then its frozen linear weights are cast (the loading line)")  # fmt: skip
    if config.attn_implementation == "eager":
        notes.append("attn_implementation eager also keeps every layer's score matrix (not counted: use sdpa)")
    return tuple(notes)


PARTS = ("weights", "adapter", "gradients", "optimiser", "activations")
"""The parts of a run's memory, in the order the plan prints them (fields of :class:`MemoryEstimate`)."""
STORAGE_MEANING = {
    "fp32": "fp32",
    "half-linear": "linear layers in the autocast dtype, embeddings and norms fp32",
    "4bit": "linear layers 4-bit nf4 (double quantisation), the rest fp32",
    "8bit": "linear layers int8, the rest fp32",
}


def render_plan(plan: Plan) -> str:
    """The plan as text: what was assumed, one line per part in GiB, then the total and the verdict in one line."""
    estimate = plan.estimate
    on, other = ("on", "off") if plan.checkpointing else ("off", "on")
    lines = [
        f"plan: {plan.model}: {describe_counts(plan.counts)}",
        f"run: {estimate.recipe}, batch {plan.batch_size} x {plan.max_length} sub-tokens per step and device "
        f"(rows assumed full), gradient checkpointing {on}",
        f"target: {TARGET_MEANING[plan.target]}",
        f"  {'part':12s} {'GiB':>8s}  what",
    ]
    lora = estimate.adapter > 0
    rows = [
        ("weights", estimate.weights, STORAGE_MEANING[plan.storage] if lora else "fp32 master weights (trained)"),
        ("adapter", estimate.adapter, f"LoRA adapters and head: {estimate.trainable_parameters / 1e6:.1f}M "
         "trainable parameters, fp32" if lora else "none: full fine-tuning trains the weights themselves"),
        ("gradients", estimate.gradients, "of the trainable part, fp32"),
        ("optimiser", estimate.optimiser, "AdamW's two moments, fp32"),
        ("activations", estimate.activations, f"kept for the backward pass, checkpointing {on} "
         f"({other}: {plan.activations_other / GIB:.2f} GiB)"),
    ]  # fmt: skip
    if estimate.loading:
        rows.append(("loading", estimate.loading, "the weights while they are built (the peak, if above the rest)"))
    if plan.reserve_gib:
        rows.append(("reserve", plan.reserve_gib * GIB, "CUDA context and allocator (assumed; --reserve)"))
    lines += [f"  {part:12s} {size / GIB:8.2f}  {what}" for part, size, what in rows]
    lines += [f"note: {note}" for note in plan.notes]
    where = "on this CPU" if plan.target == "cpu" else "per GPU"
    lines.append(f"total {plan.total / GIB:.2f} GiB {where}: {_verdict(plan)}")
    return "\n".join(lines)


def _verdict(plan: Plan) -> str:
    spare = plan.memory_gib - plan.total / GIB
    if plan.fits:
        return f"fits in {plan.memory_gib:g} GiB ({spare:.2f} GiB to spare)"
    return f"does NOT fit in {plan.memory_gib:g} GiB ({-spare:.2f} GiB over)"


def plan_record(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready numbers (GiB), for scripts and committed comparisons."""
    estimate = plan.estimate
    parts = {part: round(getattr(estimate, part) / GIB, 4) for part in PARTS}
    return {
        "model": plan.model, "recipe": estimate.recipe, "precision": plan.precision, "target": plan.target,
        "parameters": plan.counts.total, "trainable_parameters": estimate.trainable_parameters,
        "batch_size": plan.batch_size, "max_length": plan.max_length, "gradient_checkpointing": plan.checkpointing,
        "gib": {**parts, "loading": round(estimate.loading / GIB, 4), "reserve": plan.reserve_gib,
                "activations_other_checkpointing": round(plan.activations_other / GIB, 4),
                "total": round(plan.total / GIB, 4)},
        "memory_gib": plan.memory_gib, "fits": plan.fits, "notes": list(plan.notes),
    }  # fmt: skip

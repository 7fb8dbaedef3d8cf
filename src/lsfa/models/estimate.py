"""How much memory a tagger of a given base model needs, before any weight is downloaded or loaded.

The model is built on the meta device (accelerate's ``init_empty_weights``: shapes, no storage), so an 8B model
is counted in a second from its ``config.json`` alone. What accelerate's ``estimate-memory`` gives (weights per
dtype) is extended with what a tagger run adds: LoRA adapters on every target projection, the fresh head, the
gradients and AdamW state of the trainable part, and the activations kept for the backward pass.

The figures are estimates, stated as such: weights and optimiser state are exact byte counts of the tensors;
activations follow the per-layer count of Korthikanti et al. (2022) for a transformer layer with fused
attention (about 34 x hidden bytes per token and layer in half precision, no sequence-squared term because SDPA
and FlashAttention never store the score matrix), or, with gradient checkpointing, each layer's input plus one
layer's activations. CUDA context, allocator fragmentation and kernel workspaces (often 1-2 GB) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

GIB = 1024**3
NF4_BYTES = 0.5 + 0.5 / 64 + 4 / (64 * 256)
"""Bytes per nf4 weight with double quantisation: 4 bits, an 8-bit absmax per 64 weights, an fp32 constant per
256 absmax values (QLoRA's block sizes)."""
ADAMW_TRAINABLE_BYTES = 16
"""Per trainable parameter: fp32 master weight, fp32 gradient and AdamW's two fp32 moments."""


@dataclass(frozen=True)
class ParameterCounts:
    """A base model's parameters by role: the linear layers LoRA and quantisation act on, and the rest."""

    total: int
    linear: int
    """Weights of linear layers outside the head (what 4/8-bit quantisation packs)."""
    lora_per_rank: int
    """LoRA parameters per unit of rank over the target projections: the sum of ``in + out`` features."""
    hidden: int
    layers: int
    vocabulary: int


def count_on_meta_device(model_path: str | Path, targets: Sequence[str] | str = "all-linear") -> ParameterCounts:
    """Build the token classifier of ``model_path`` (a folder with only a ``config.json`` suffices) on the meta
    device and count its parameters by role."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForTokenClassification

    from lsfa.models.classifier import ensure_token_classification_class, hub_errors, linear_targets, text_only_config

    with hub_errors(model_path):
        config = AutoConfig.from_pretrained(str(model_path))
    config = text_only_config(config)[0]  # a multimodal checkpoint's tagger is its language model only
    ensure_token_classification_class(config)
    config.num_labels = 9
    with init_empty_weights():
        model = AutoModelForTokenClassification.from_config(config)
    wanted = set(linear_targets(model, targets))
    head = next(name for name in ("score", "classifier") if hasattr(model, name))
    linear = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not name.startswith(head):
            linear += module.weight.numel()
            if name.rsplit(".", 1)[-1] in wanted:
                lora += module.in_features + module.out_features
    text = config.get_text_config()
    return ParameterCounts(
        total=sum(p.numel() for p in model.parameters()),
        linear=linear,
        lora_per_rank=lora,
        hidden=int(text.hidden_size),
        layers=int(text.num_hidden_layers),
        vocabulary=int(getattr(text, "vocab_size", 0) or 0),
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """One way to run the model and its memory in bytes: weights, trainable state, activations."""

    use: str
    """``train`` or ``infer``."""
    recipe: str
    """e.g. ``LoRA bf16``, ``QLoRA 4bit``, ``full fp32``."""
    weights: float
    trainable_state: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.trainable_state + self.activations


def weight_bytes(counts: ParameterCounts, storage: str) -> float:
    """Bytes of the base weights stored as ``storage``: fp32, bf16 (or fp16), 4bit or 8bit. Quantised bases keep
    their non-linear weights (embeddings, norms, head) in fp32, as peft's kbit preparation leaves them."""
    other = counts.total - counts.linear
    if storage == "4bit":
        return counts.linear * NF4_BYTES + other * 4
    if storage == "8bit":
        return counts.linear * 1 + other * 4
    return counts.total * (4 if storage == "fp32" else 2)


def activation_bytes(counts: ParameterCounts, tokens: int, checkpointing: bool) -> float:
    """Activations kept for the backward pass over ``tokens`` sub-tokens per step, in half precision."""
    per_layer = 34 * counts.hidden * tokens
    if checkpointing:
        return counts.layers * 2 * counts.hidden * tokens + per_layer
    return counts.layers * per_layer


def estimates(
    counts: ParameterCounts,
    batch_size: int = 8,
    max_length: int = 256,
    lora_r: int = 32,
    num_labels: int = 9,
    checkpointing: bool = False,
) -> list[MemoryEstimate]:
    """Training and inference memory of the recipes lsfa runs, for ``batch_size`` rows of ``max_length``."""
    tokens = batch_size * max_length
    trainable_lora = counts.lora_per_rank * lora_r + counts.hidden * num_labels + num_labels
    lora_state = trainable_lora * ADAMW_TRAINABLE_BYTES
    acts = activation_bytes(counts, tokens, checkpointing)
    rows = [
        MemoryEstimate("train", "full fp32", counts.total * 4, counts.total * (ADAMW_TRAINABLE_BYTES - 4), acts),
        MemoryEstimate("train", "LoRA fp32", weight_bytes(counts, "fp32"), lora_state, acts * 2),
        MemoryEstimate("train", "LoRA bf16/fp16", weight_bytes(counts, "bf16"), lora_state, acts),
        MemoryEstimate("train", "QLoRA 8bit", weight_bytes(counts, "8bit"), lora_state, acts),
        MemoryEstimate("train", "QLoRA 4bit", weight_bytes(counts, "4bit"), lora_state, acts),
    ]
    inference_acts = 4 * counts.hidden * tokens * 2  # a few live hidden-state tensors, no backward
    for recipe, storage in (("fp32", "fp32"), ("bf16-full", "bf16"), ("4bit unmerged", "4bit")):
        rows.append(MemoryEstimate("infer", recipe, weight_bytes(counts, storage), 0.0, inference_acts))
    return rows


def render(counts: ParameterCounts, rows: Sequence[MemoryEstimate], title: str) -> str:
    """The estimate as plain text: parameters, then one line per recipe ending in its total in GiB."""
    lines = [
        f"{title}: {counts.total / 1e9:.3f}B parameters ({counts.linear / 1e9:.3f}B in linear layers, "
        f"{counts.layers} layers, hidden {counts.hidden}, vocabulary {counts.vocabulary})",
        f"{'use':6s} {'recipe':15s} {'weights':>9s} {'trainable':>10s} {'activations':>12s} {'total':>9s}",
    ]
    for row in rows:
        lines.append(
            f"{row.use:6s} {row.recipe:15s} {row.weights / GIB:8.2f}G {row.trainable_state / GIB:9.2f}G "
            f"{row.activations / GIB:11.2f}G {row.total / GIB:8.2f}G"
        )
    lines.append("(estimates: CUDA context and allocator overhead, often 1-2 GB, not included)")
    return "\n".join(lines)

"""How much memory a tagger of a given base model needs, before any weight is downloaded or loaded.

The model is built on the meta device (accelerate's ``init_empty_weights``: shapes, no storage), so an 8B model
is counted in a second from its ``config.json`` alone. What accelerate's ``estimate-memory`` gives (weights per
dtype) is extended with what a tagger run adds: LoRA adapters on every target projection, the fresh head, the
gradients and AdamW state of the trainable part, and the activations kept for the backward pass.

One computation, :func:`memory`, serves both commands: ``lsfa models estimate`` (every recipe side by side,
:func:`estimates`) and ``lsfa plan`` (one training config, :mod:`lsfa.training.plan`).

Weights and optimiser state are exact byte counts of the tensors. Activations are counted, not modelled: a
one-layer and a two-layer copy of the model (LoRA-wrapped as the run is, in its activation dtype) run one forward
pass on the meta device at the run's batch and length, and every tensor autograd saves for the backward pass is
summed (parameters excluded), which gives the bytes per layer and the rest (embeddings, final norm, head, loss).
Why not a formula: Korthikanti et al. (2022) count 34 x hidden bytes per token and layer (half precision) for
Megatron's fused layers; transformers' Llama-3.1-8B layer with LoRA under bf16 saves about 110 x hidden bytes (its
norms keep fp32 tensors, rotary embeddings, SwiGLU's three products, LoRA dropout's copy of each adapted input), so
a plan built on the formula was 2.5x short of a measured CPU peak (docs/results/plan-check.json). In fp32 the count
equals the bytes a real CPU step saves (tested); in bf16 it builds the model in bf16, where autocast would keep a
few tensors in fp32 (tiny Llama, Qwen2, Gemma 3: LoRA +15%, full fine-tuning -12 to -25%).
Attention is counted as the fused kernels (FlashAttention, SDPA's efficient kernel) store it: query, key, value,
output and a log-sum-exp, never the score matrix. With gradient checkpointing, each layer's input is kept and one
layer's activations are live at a time. CUDA context, allocator fragmentation, kernel workspaces and the
transient gradients of the backward pass (often 1-2 GB together) are not counted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AttentionInterface, AutoConfig, AutoModelForTokenClassification, PretrainedConfig
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lsfa.models.classifier import (
    apply_lora,
    ensure_token_classification_class,
    hub_errors,
    keep_first_layers,
    linear_targets,
    text_only_config,
)

GIB = 1024**3
NF4_BYTES = 0.5 + 0.5 / 64 + 4 / (64 * 256)
"""Bytes per nf4 weight with double quantisation: 4 bits, an 8-bit absmax per 64 weights, an fp32 constant per
256 absmax values (QLoRA's block sizes)."""
ADAMW_TRAINABLE_BYTES = 16
"""Per trainable parameter: fp32 master weight, fp32 gradient and AdamW's two fp32 moments."""
DEFAULT_LABELS = 9
"""Head size assumed when no corpus is read: CoNLL-2003's nine BIO tags (the head is hidden x labels, tiny)."""

Storage = Literal["fp32", "half", "half-linear", "8bit", "4bit"]
"""How base weights are held: ``fp32``; ``half`` (every weight bf16/fp16: ``bf16-full`` inference);
``half-linear`` (frozen linear weights bf16/fp16, embeddings, norms and head fp32: LoRA under autocast, the layout
of ``raise_to_fp32_but_frozen_linear`` and ``cast_frozen_linear_weights``); ``8bit`` / ``4bit`` (bitsandbytes
linear layers, the rest fp32 as peft's kbit preparation leaves it)."""


@dataclass(frozen=True)
class ParameterCounts:
    """A base model's parameters by role: the linear layers LoRA and quantisation act on, and the rest."""

    total: int
    linear: int
    """Weights of linear layers outside the head (what 4/8-bit quantisation packs)."""
    lora_per_rank: int
    """LoRA parameters per unit of rank over the target projections: the sum of ``in + out`` features."""
    head: int
    """The fresh head's weight and bias, trained in every recipe (a LoRA run's trainable part: adapters and head)."""
    hidden: int
    layers: int
    vocabulary: int
    config: PretrainedConfig | None = field(default=None, compare=False, repr=False)
    """The config counted, for the meta-device count of activations (:func:`saved_activations`)."""
    targets: Sequence[str] | str = "all-linear"


def load_model_config(model_path: str | Path, layers: int | None = None) -> PretrainedConfig:
    """The config a tagger of ``model_path`` is built from (a folder holding only ``config.json`` will do): a
    multimodal checkpoint's language model, cut to its first ``layers`` layers as ``layers:`` does in training."""
    with hub_errors(model_path):
        config = AutoConfig.from_pretrained(str(model_path))
    config = text_only_config(config)[0]  # a multimodal checkpoint's tagger is its language model only
    ensure_token_classification_class(config)
    if layers is not None:
        keep_first_layers(config, layers)
    return config


def count_on_meta_device(
    model: str | Path | PretrainedConfig, targets: Sequence[str] | str = "all-linear", num_labels: int = DEFAULT_LABELS
) -> ParameterCounts:
    """Build the token classifier of ``model`` (a config, or a folder or hub id read by :func:`load_model_config`)
    on the meta device and count its parameters by role."""
    config = model if isinstance(model, PretrainedConfig) else load_model_config(model)
    ensure_token_classification_class(config)
    config.num_labels = num_labels
    with init_empty_weights():
        built = AutoModelForTokenClassification.from_config(config)
    wanted = set(linear_targets(built, targets))
    head = next(name for name in ("score", "classifier") if hasattr(built, name))
    head_parameters = sum(p.numel() for p in getattr(built, head).parameters())
    linear = lora = 0
    for name, module in built.named_modules():
        if isinstance(module, nn.Linear) and not name.startswith(head):
            linear += module.weight.numel()
            if name.rsplit(".", 1)[-1] in wanted:
                lora += module.in_features + module.out_features
    text = config.get_text_config()
    return ParameterCounts(
        total=sum(p.numel() for p in built.parameters()),
        linear=linear,
        lora_per_rank=lora,
        head=head_parameters,
        hidden=int(text.hidden_size),
        layers=int(text.num_hidden_layers),
        vocabulary=int(getattr(text, "vocab_size", 0) or 0),
        config=config,
        targets=targets,
    )


@dataclass(frozen=True)
class Recipe:
    """One way to run a tagger, reduced to what decides its memory."""

    use: Literal["train", "infer"]
    name: str
    """e.g. ``LoRA bf16``, ``QLoRA 4bit``, ``full fp32``."""
    mode: Literal["lora", "full"] = "lora"
    storage: Storage = "half-linear"
    """How the base weights are held while training (full fine-tuning: fp32 masters, whatever this says)."""
    activation_bytes: int = 2
    """Bytes per activation value: 2 under bf16/fp16 autocast, 4 in fp32."""
    checkpointing: bool = False
    lora_r: int = 32
    lora_dropout: float = 0.05
    """LoRA dropout keeps a dropped copy of every adapted layer's input: activations, not weights."""
    build_storage: Storage | None = None
    """How the weights are held while they are built, where that differs from ``storage`` (a LoRA run whose
    checkpoint is stored in fp32 builds in fp32, then casts its frozen linear weights to the autocast dtype)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """One way to run the model and its memory in bytes, by part."""

    use: str
    """``train`` or ``infer``."""
    recipe: str
    weights: float
    """The base model's weights (full fine-tuning: the fp32 master weights, which are the trainable part)."""
    adapter: float
    """Trainable weights outside the base (LoRA adapters and the head), fp32 masters."""
    gradients: float
    optimiser: float
    """AdamW's two fp32 moments per trainable parameter."""
    activations: float
    trainable_parameters: int = 0
    loading: float = 0.0
    """Bytes of the weights while they are built, when that is more than ``weights`` (else 0)."""

    @property
    def trainable_state(self) -> float:
        """Adapter, gradients and optimiser: what training adds to the base weights, per trainable parameter
        ``ADAMW_TRAINABLE_BYTES`` (the master weight counted in ``weights`` under full fine-tuning)."""
        return self.adapter + self.gradients + self.optimiser

    @property
    def total(self) -> float:
        """Memory while training (or predicting): weights, trainable state, activations."""
        return self.weights + self.trainable_state + self.activations

    @property
    def peak(self) -> float:
        """The larger of the running total and the weights while they are built."""
        return max(self.total, self.loading)


def weight_bytes(counts: ParameterCounts, storage: Storage) -> float:
    """Bytes of the model's weights, head included, held as ``storage`` (:data:`Storage`). A LoRA run holds the head
    twice: peft keeps the original (frozen, counted here) beside the trained copy (``modules_to_save``, counted with
    the adapters)."""
    other = counts.total - counts.linear - counts.head
    per_linear = {"fp32": 4, "half": 2, "half-linear": 2, "8bit": 1, "4bit": NF4_BYTES}[storage]
    head = 2 if storage in ("half", "half-linear") else 4  # a frozen linear layer too: cast with the others
    return counts.linear * per_linear + counts.head * head + other * (2 if storage == "half" else 4)


_COUNTING_ATTENTION = "lsfa_count_saved"
"""The attention function the meta-device count runs: shapes as the fused kernels save them (no score matrix)."""


class _SavedLikeFusedAttention(torch.autograd.Function):
    """Attention that saves for backward what FlashAttention and SDPA's efficient kernel save: query, key, value
    (key and value unrepeated under grouped-query attention), the output and an fp32 log-sum-exp per row and head.
    The meta device runs no fused kernel (its SDPA is the math path, which keeps the score matrix)."""

    @staticmethod
    def forward(ctx, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        output = torch.empty_like(query)
        ctx.save_for_backward(query, key, value, output, query.new_empty(query.shape[:-1], dtype=torch.float32))
        return output

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # pragma: no cover - the count never runs a backward pass
        raise NotImplementedError("the meta-device count only runs forward")


def _counting_attention(module, query, key, value, attention_mask, **kwargs):
    """An ``AttentionInterface`` function: (batch, heads, length, dim) in, (batch, length, heads, dim) out."""
    return _SavedLikeFusedAttention.apply(query, key, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(_COUNTING_ATTENTION, _counting_attention)
AttentionMaskInterface.register(_COUNTING_ATTENTION, sdpa_mask)


@dataclass(frozen=True)
class SavedActivations:
    """Bytes autograd saves per step of one run's shape: per transformer layer, and for the rest of the model."""

    per_layer: float
    rest: float
    layer_input: float
    """One layer's input (what gradient checkpointing keeps per layer)."""

    def total(self, layers: int, checkpointing: bool) -> float:
        if checkpointing:
            return self.rest + layers * self.layer_input + self.per_layer
        return self.rest + layers * self.per_layer


def saved_activations(
    config: PretrainedConfig, recipe: Recipe, batch_size: int, max_length: int, targets: Sequence[str] | str
) -> SavedActivations:
    """Count what one forward pass saves for backward, on the meta device, for a one- and a two-layer copy of
    ``config`` trained as ``recipe`` (its activation dtype; LoRA with ``recipe.lora_r`` and dropout, or full)."""
    one, two = (_saved_bytes(config, layers, recipe, batch_size, max_length, targets) for layers in (1, 2))
    hidden = int(config.get_text_config().hidden_size)
    return SavedActivations(
        per_layer=two - one, rest=2 * one - two, layer_input=batch_size * max_length * hidden * recipe.activation_bytes
    )


def activations_of(counts: ParameterCounts, recipe: Recipe, batch_size: int, max_length: int) -> SavedActivations:
    """:func:`saved_activations` of the model ``counts`` was counted from."""
    if counts.config is None:
        raise ValueError("these counts carry no config: count them with count_on_meta_device")
    return saved_activations(counts.config, recipe, batch_size, max_length, counts.targets)


def _saved_bytes(
    config: PretrainedConfig, layers: int, recipe: Recipe, batch_size: int, max_length: int, targets
) -> float:
    """Bytes of the tensors autograd saves in one forward pass of a ``layers``-layer copy, parameters excluded."""
    config = copy.deepcopy(config)
    keep_first_layers(config, min(layers, config.get_text_config().num_hidden_layers))
    dtype = torch.float32 if recipe.activation_bytes == 4 else torch.bfloat16  # autocast's compute dtype
    with init_empty_weights(include_buffers=True):
        model = AutoModelForTokenClassification.from_config(
            config, attn_implementation=_COUNTING_ATTENTION, dtype=dtype
        )
    if recipe.mode == "lora":
        model = apply_lora(model, recipe.lora_r, 2 * recipe.lora_r, recipe.lora_dropout, targets)
    model.train()
    own = {tensor.untyped_storage()._cdata for tensor in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in own:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    ids = torch.zeros(batch_size, max_length, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(input_ids=ids, labels=ids)
    return float(sum(saved.values()))


def trainable_parameters(counts: ParameterCounts, recipe: Recipe) -> int:
    """What AdamW updates: every weight under full fine-tuning; else the adapters on the targets and the head."""
    if recipe.mode == "full":
        return counts.total
    return counts.lora_per_rank * recipe.lora_r + counts.head


def memory(
    counts: ParameterCounts, recipe: Recipe, batch_size: int, max_length: int, saved: SavedActivations | None = None
) -> MemoryEstimate:
    """The memory of ``recipe`` for steps of ``batch_size`` rows of ``max_length`` sub-tokens (rows assumed full:
    the worst step, which a long sentence or a document window reaches); ``saved`` if already counted."""
    tokens = batch_size * max_length
    if recipe.use == "infer":
        acts = 4 * counts.hidden * tokens * recipe.activation_bytes  # a few live hidden states, no backward
        return MemoryEstimate("infer", recipe.name, weight_bytes(counts, recipe.storage), 0.0, 0.0, 0.0, acts)
    trainable = trainable_parameters(counts, recipe)
    full = recipe.mode == "full"
    weights = counts.total * 4 if full else weight_bytes(counts, recipe.storage)
    build = weight_bytes(counts, recipe.build_storage) if recipe.build_storage and not full else 0.0
    return MemoryEstimate(
        "train", recipe.name, weights, adapter=0.0 if full else trainable * 4.0, gradients=trainable * 4.0,
        optimiser=trainable * 8.0,
        activations=(saved or activations_of(counts, recipe, batch_size, max_length)).total(
            counts.layers, recipe.checkpointing
        )
        + autocast_copies(counts, recipe),
        trainable_parameters=trainable, loading=build if build > weights else 0.0,
    )  # fmt: skip


def autocast_copies(counts: ParameterCounts, recipe: Recipe) -> float:
    """Bytes of the half-precision copies autocast makes of trainable linear weights and keeps for the backward pass:
    full fine-tuning under bf16/fp16 (LoRA's frozen weights are cast once, in place; quantised ones are not cast).
    The meta-device count builds the model in half precision and so does not see them."""
    return counts.linear * 2.0 if recipe.mode == "full" and recipe.activation_bytes == 2 else 0.0


def standard_recipes(lora_r: int = 32, checkpointing: bool = False) -> list[Recipe]:
    """The recipes ``lsfa models estimate`` compares: full fp32, LoRA fp32 and bf16/fp16, QLoRA 8/4-bit;
    inference in fp32, bf16-full and 4-bit."""
    shared = {"lora_r": lora_r, "checkpointing": checkpointing}
    return [
        Recipe("train", "full fp32", mode="full", storage="fp32", activation_bytes=4, **shared),
        Recipe("train", "LoRA fp32", storage="fp32", activation_bytes=4, **shared),
        Recipe("train", "LoRA bf16/fp16", storage="half-linear", **shared),
        Recipe("train", "QLoRA 8bit", storage="8bit", **shared),
        Recipe("train", "QLoRA 4bit", storage="4bit", **shared),
        Recipe("infer", "fp32", storage="fp32", activation_bytes=4),
        Recipe("infer", "bf16-full", storage="half"),
        Recipe("infer", "4bit unmerged", storage="4bit"),
    ]


def estimates(
    counts: ParameterCounts,
    batch_size: int = 8,
    max_length: int = 256,
    lora_r: int = 32,
    checkpointing: bool = False,
) -> list[MemoryEstimate]:
    """Training and inference memory of the recipes lsfa runs, for ``batch_size`` rows of ``max_length`` (the head's
    labels are those ``counts`` was built with)."""
    counted: dict[tuple, SavedActivations] = {}  # one meta-device count per (mode, dtype): the QLoRAs share LoRA's
    rows = []
    for recipe in standard_recipes(lora_r, checkpointing):
        key = (recipe.mode, recipe.activation_bytes)
        if recipe.use == "train" and key not in counted:
            counted[key] = activations_of(counts, recipe, batch_size, max_length)
        rows.append(memory(counts, recipe, batch_size, max_length, counted.get(key)))
    return rows


def describe_counts(counts: ParameterCounts) -> str:
    """``7.505B parameters (6.980B in linear layers, 32 layers, hidden 4096, vocabulary 128256)``."""
    return (
        f"{counts.total / 1e9:.3f}B parameters ({counts.linear / 1e9:.3f}B in linear layers, "
        f"{counts.layers} layers, hidden {counts.hidden}, vocabulary {counts.vocabulary})"
    )


def render(counts: ParameterCounts, rows: Sequence[MemoryEstimate], title: str) -> str:
    """The estimate as plain text: parameters, then one line per recipe ending in its total in GiB."""
    lines = [
        f"{title}: {describe_counts(counts)}",
        f"{'use':6s} {'recipe':15s} {'weights':>9s} {'trainable':>10s} {'activations':>12s} {'total':>9s}",
    ]
    for row in rows:
        lines.append(
            f"{row.use:6s} {row.recipe:15s} {row.weights / GIB:8.2f}G {row.trainable_state / GIB:9.2f}G "
            f"{row.activations / GIB:11.2f}G {row.total / GIB:8.2f}G"
        )
    lines.append("(GiB; estimates: CUDA context and allocator overhead, often 1-2 GiB, not included; "
                 "`lsfa plan` plans one training config)")  # fmt: skip
    return "\n".join(lines)

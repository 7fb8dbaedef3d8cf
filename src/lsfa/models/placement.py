"""Where and in what dtype a base model is built: directly on its device, in half precision where that is exact.

Why: ``from_pretrained`` in fp32 on the CPU, on every rank, needs 32 GB of host memory per process for an 8B model
before anything reaches a GPU. transformers can instead stream the weights straight onto the process's GPU
(``device_map={"": local_rank}``) and build them in a half dtype (``dtype=torch.bfloat16``), so an 8B LoRA run
holds 16 GB of weights on its card and almost nothing on the host.

Building in a half dtype must not change the recipe. The LoRA recipe (:func:`lsfa.models.optimise.
cast_frozen_linear_weights`) keeps frozen linear weights in the autocast dtype and everything else (embeddings,
norms, the head, the adapters) in fp32. When the checkpoint itself is stored in that half dtype (the paper's
models on the hub all are bf16), building the model in it and raising the rest to fp32 gives the very same
weights, rounded nowhere; a checkpoint stored in fp32 (lsfa's own catalogue folders) is built in fp32 as before.
Only the fresh head is initialised in the half dtype before it is raised to fp32: a different random start, not
a rounding of trained weights.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from lsfa.errors import LsfaError
from lsfa.models.quantise import is_quantised_layer
from lsfa.precision import BF16_PRECISIONS, autocast_dtype

HALF = (torch.bfloat16, torch.float16)


def checkpoint_dtype(config) -> torch.dtype | None:
    """The dtype the checkpoint's weights are stored in, as its ``config.json`` says (None when it does not)."""
    value = getattr(config, "dtype", None) or getattr(config.get_text_config(), "dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else None


def training_load_dtype(config, precision: str, mode: str, quantize: str = "none", save_merged: bool = False):
    """The dtype to build a base model in for training: the checkpoint's own half dtype where the recipe keeps
    the frozen weights in it anyway (LoRA under that autocast, unmerged) or where they are quantised (the values
    quantised are then those stored), fp32 otherwise (full fine-tuning keeps fp32 master weights)."""
    stored = checkpoint_dtype(config)
    if quantize != "none":
        return stored if stored in HALF else torch.float32
    if mode == "lora" and not save_merged and stored in HALF and autocast_dtype(precision) == stored:
        return stored
    return torch.float32


def resolve_device(name: str | None = "auto") -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) means here: ``auto`` is the first CUDA GPU when
    there is one, else the CPU. A GPU that is not there is one clear line naming the option, before any weight
    loads: torch's own error comes later and reads "Torch not compiled with CUDA enabled"."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise LsfaError(f"device {name}: not a device name (use auto, cpu, cuda or cuda:N)") from error
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        why = "torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise LsfaError(f"device {name}: no CUDA GPU is available on this machine ({why}); use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise LsfaError(f"device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def inference_load_dtype(config, precision: str, device: torch.device) -> torch.dtype:
    """The dtype to build a LoRA tagger's base in before merging: bf16 on a GPU when the checkpoint is stored in
    bf16 and ``precision`` (resolved) keeps the merged linear weights in bf16 anyway, fp32 otherwise.

    Why: merging in fp32 first holds an 8B base in 32 GB on the card before the cast; built in bf16 it holds 16 GB.
    The result is the same bit for bit: bf16 stored values are exact in either dtype, peft's merge adds its fp32
    update to the bf16 weight computing in fp32 and rounds once, as the cast after an fp32 merge does, and the
    rest (norms, embeddings, the head) is raised to fp32 before the adapter loads
    (:func:`raise_to_fp32_but_linear_weights`). On the CPU the merged-weights cache (fp32) is used instead."""
    if device.type != "cpu" and precision in BF16_PRECISIONS and checkpoint_dtype(config) == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def raise_to_fp32_but_linear_weights(model: nn.Module, head: str) -> int:
    """Every parameter of a freshly built (half-dtype) base in fp32 except the weights of its linear layers outside
    the ``head``; returns how many it raised. The head then takes the adapter's trained fp32 head unrounded, and
    norms and embeddings are as an fp32 build has them."""
    keep = {
        id(module.weight)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not (name == head or name.startswith(head + "."))
    }
    return _raise_half_to_fp32(model, keep)


def _raise_half_to_fp32(model: nn.Module, keep: set[int]) -> int:
    """Every half-dtype parameter of ``model`` whose id is not in ``keep`` raised to fp32; how many were."""
    raised = 0
    for parameter in model.parameters():
        if id(parameter) not in keep and parameter.dtype in HALF:
            parameter.data = parameter.data.float()
            raised += 1
    return raised


def device_map(device: torch.device | str | None = None) -> dict[str, torch.device] | None:
    """``{"": device}`` for transformers to build the weights straight on ``device``: by default this process's
    GPU (``LOCAL_RANK`` under torchrun / accelerate), None on a CPU-only machine (the CPU is where they go anyway)."""
    if device is None:
        if not torch.cuda.is_available():
            return None
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(device)
    return None if device.type == "cpu" else {"": device}


def raise_to_fp32_but_frozen_linear(model: nn.Module) -> int:
    """Every parameter in fp32 except the frozen weights of (unquantised) linear layers; returns how many
    parameters it raised. After a half-dtype build this is the layout of the mixed-precision LoRA recipe."""
    keep: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and not is_quantised_layer(module):
            keep.update(id(p) for p in module.parameters(recurse=False) if not p.requires_grad)
    return _raise_half_to_fp32(model, keep)

"""Quantised base models (QLoRA): a decoder loaded in 4-bit nf4 or 8-bit through bitsandbytes, LoRA on top.

Why: an 8B decoder in bf16 needs 16 GB for its weights alone; in nf4 with double quantisation (Dettmers et al.
2023, QLoRA) about 5 GB, so the paper's largest models fit one 24 GB card with room for activations. Loading goes
through transformers' own ``BitsAndBytesConfig`` (no kernels of our own); the classification head is left out of
quantisation (``llm_int8_skip_modules``), because it is created fresh and trained in full, and a quantised layer
has no trainable weight. bitsandbytes' PyPI wheel (``pip install 'lsfa[quant]'``) has a CPU library too, so this
path is tested on CPU with tiny models; on a GPU the same code runs bitsandbytes' CUDA kernels.

A quantised layer (``bitsandbytes.nn.Linear4bit`` / ``Linear8bitLt``) subclasses ``nn.Linear`` but holds packed
integers: ``module.to(torch.bfloat16)`` would reinterpret them as numbers. :func:`is_quantised_layer` lets the
casts of :mod:`lsfa.models.optimise` skip such layers.

Loading a QLoRA tagger (:func:`lsfa.models.saving.load_tagger`) quantises the base again (nf4 is deterministic,
so the codes are those training saw), then either keeps it quantised with the adapter beside it (least memory),
or, to merge, first dequantises every layer (:func:`dequantise`) and merges the adapter into those dense weights:
``dequant(W_q) + BA`` is exactly the function training optimised. Merging into the original unquantised base
instead would add the adapter to weights the model never trained with (their difference is the quantisation
noise), and peft's merge into a 4-bit layer re-quantises the sum, which loses the adapter's small update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from lsfa.errors import LsfaError

Quantize = Literal["none", "4bit", "8bit"]
"""``none``: weights in their dtype; ``4bit``: nf4 with double quantisation (QLoRA); ``8bit``: LLM.int8()."""

QUANTIZE: tuple[str, ...] = get_args(Quantize)

INSTALL_HINT = "pip install 'lsfa[quant]' (bitsandbytes)"


def bitsandbytes_available() -> bool:
    """Whether bitsandbytes can be imported here (its PyPI wheel ships CPU and CUDA libraries)."""
    try:
        import bitsandbytes  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True


def quantization_config(quantize: str, compute_dtype: torch.dtype, skip: Sequence[str]):
    """transformers' ``BitsAndBytesConfig`` for ``quantize`` (None for ``none``), leaving the modules named in
    ``skip`` (the classification head) unquantised; ``compute_dtype`` is the dtype 4-bit layers compute in."""
    if quantize not in QUANTIZE:
        raise LsfaError(f"quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    if quantize == "none":
        return None
    if not bitsandbytes_available():
        raise LsfaError(f"quantize: {quantize} needs bitsandbytes: {INSTALL_HINT}")
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=list(skip),
    )


def is_quantised_layer(module: nn.Module) -> bool:
    """True for a bitsandbytes layer (its weight holds packed integers, not numbers to cast), also inside peft's
    LoRA wrapper of one. Checked by class module, so bitsandbytes need not be importable."""
    layer = getattr(module, "base_layer", module)
    weight = getattr(layer, "weight", None)
    return type(layer).__module__.startswith("bitsandbytes.") or type(weight).__name__ in ("Params4bit", "Int8Params")


def quantised_layers(model: nn.Module) -> int:
    """How many bitsandbytes layers ``model`` holds (0: not quantised, or dequantised since)."""
    return sum(1 for module in model.modules() if type(module).__module__.startswith("bitsandbytes."))


def prepare_for_kbit_training(model: nn.Module, gradient_checkpointing: bool = False) -> nn.Module:
    """peft's ``prepare_model_for_kbit_training`` for a quantised model (a no-op for others): every base weight
    frozen, the non-quantised ones (norms, embeddings, head) in fp32 for stable training, and, with
    ``gradient_checkpointing``, checkpointing without re-entrant autograd plus the input-gradient hook."""
    if not quantised_layers(model):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def dequantise(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Replace every bitsandbytes layer by a dense ``nn.Linear`` holding its dequantised weight in ``dtype``
    (transformers' ``dequantize``); the function the model computes does not change, up to ``dtype``."""
    if not quantised_layers(model):
        return model
    from lsfa.models.classifier import quiet_transformers  # cycle: classifier imports this module at its top

    with quiet_transformers():
        model = model.dequantize(dtype=dtype)
    if quantised_layers(model):
        raise LsfaError(f"{type(model).__name__}: some quantised layers could not be dequantised")
    return model

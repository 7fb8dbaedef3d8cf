"""Make a loaded tagger cheap to run: merged LoRA, eval mode, bf16 weights cached for bf16 autocast.

Why cache the weights: under ``torch.autocast(dtype=bfloat16)`` every linear layer casts its fp32 weight to
bf16 on every call. For a large batch that is noise, but at batch 1 (an interactive request) re-casting the
~100M weights of a small LLM costs more than the forward pass itself. Autocast leaves a weight that is
already bf16 alone, and rounding once gives exactly the bf16 values autocast would compute each time, so
predictions are bit-for-bit those of plain autocast. The model must then always run under bf16 autocast,
which :func:`lsfa.inference.predictor.predict_encoded` checks.

``bf16-full`` goes further and stores *every* weight in bf16 (embeddings and norms too), so the residual
stream, the norms' outputs and the activations are bf16 as well: no fp32 activations to cast before each
matrix product, half the memory traffic in the element-wise work. It is what loading an LLM with
``torch_dtype=bfloat16`` gives; it is not bit-identical to autocast (the residual sums are rounded to bf16).
On smollm2-135m LS-FA it ran 1.04x faster than ``bf16`` in the bench's ablation and scored 88.72 test F1 on
CoNLL-2003 against 88.64 (fp32) and 88.59 (autocast, previous run); docs/results/performance.md has both.
"""

from __future__ import annotations

import torch
from torch import nn

from lsfa.errors import LsfaError
from lsfa.models.quantise import is_quantised_layer, quantised_layers

CAST_MARK = "_lsfa_inference_precision"
"""Attribute set on a model whose linear weights :func:`optimise_for_inference` stored in bf16."""


def optimise_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """Merge a LoRA adapter, switch to eval mode and store linear weights (``bf16``) or all (``bf16-full``) in bf16.

    Returns the model to use (merging replaces a peft wrapper by the plain model). Embeddings and norms stay
    fp32, as autocast keeps them, so the residual stream is computed exactly as under plain autocast.
    """
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    if quantised_layers(model) and precision in ("int8", "bf16-full"):
        raise LsfaError(
            f"precision {precision} rewrites every weight, but this model's base is quantised (bitsandbytes): "
            "load it merged (dequantised) or use precision bf16 or fp32"
        )
    if precision == "int8":
        model = quantise_int8(model)
        setattr(model, CAST_MARK, "int8")
    elif precision == "bf16-full":
        model.to(torch.bfloat16)
        setattr(model, CAST_MARK, "bf16-full")
    elif precision == "bf16":
        # A language-model head tied to the input embeddings shares its weight with them: casting it would
        # turn the embeddings, and so the residual stream, to bf16 too. Such a head stays fp32.
        # A quantised layer (bitsandbytes) holds packed integers, which a cast would corrupt: it computes in its
        # own compute dtype already.
        embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        for module in model.modules():
            if _castable_linear(module) and id(module.weight) not in embedding_weights:
                module.to(torch.bfloat16)
        setattr(model, CAST_MARK, "bf16")
    return model


INT8_KEEP_FP32 = ("down_proj", "mlp.c_proj", "mlp.fc2", "dense_4h_to_h", "score", "classifier")
"""Linear layers that int8 leaves in fp32 (name suffixes): the MLP's output projection, whose input (the gated
activation) has the outlier features that per-tensor int8 cannot represent (Dettmers et al. 2022, LLM.int8()),
and the classification head. On a smollm2-135m tagger (CoNLL-2003 dev[:400], one thread) quantising every
linear layer cost 8.0 F1 points against fp32; keeping ``down_proj`` and the head in fp32 lost nothing (+0.9,
within noise), at 1.59x fp32's speed instead of 2.03x (docs/results/speed-checks/int8-layers.txt)."""


def quantise_int8(model: nn.Module, keep_fp32: tuple[str, ...] = INT8_KEEP_FP32) -> nn.Module:
    """Dynamic int8 quantisation of the linear layers (weights int8 once, activations quantised per batch), with
    torch's own kernels (``torch.ao.quantization.quantize_dynamic``, FBGEMM/oneDNN on x86), except those whose
    names end with ``keep_fp32`` (:data:`INT8_KEEP_FP32` by default). CPU only; the embeddings, norms and
    attention products stay fp32. torch marks the API deprecated in favour of torchao, which is not a dependency
    here; the warning is silenced and the call is tested."""
    import warnings

    if next(model.parameters()).device.type != "cpu":
        raise LsfaError("precision int8 runs on the CPU only (torch's dynamic quantisation has no CUDA kernels)")
    quantised = {
        name: torch.ao.quantization.default_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.endswith(keep_fp32)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, quantised, dtype=torch.qint8)


def required_precision(model: nn.Module) -> str | None:
    """``"bf16"``, ``"bf16-full"`` or ``"int8"`` when :func:`optimise_for_inference` rewrote the weights, else None."""
    return getattr(model, CAST_MARK, None)


def cast_frozen_linear_weights(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Store the weights of frozen linear layers in ``dtype`` for mixed-precision LoRA training.

    Autocast caches its casts only for weights that require gradients, so the frozen base weights of a LoRA
    model are cast again in every forward pass. Frozen weights never change, so rounding them once gives
    the same numbers autocast computes every time (trainable LoRA and head weights stay fp32 masters).
    The model must then run under autocast of that dtype. Quantised layers (bitsandbytes) are skipped: their
    weights are packed integers, and they compute in their own compute dtype. Returns how many layers were cast.
    """
    cast = 0
    for module in model.modules():
        if _castable_linear(module) and not any(p.requires_grad for p in module.parameters(recurse=False)):
            module.to(dtype)
            cast += 1
    return cast


def _castable_linear(module: nn.Module) -> bool:
    """A linear layer whose weight holds numbers (not a bitsandbytes layer's packed integers)."""
    return isinstance(module, nn.Linear) and not is_quantised_layer(module)

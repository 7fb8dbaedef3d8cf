"""Building the model a run trains: a token classifier with a fresh head, the requested attention, quantised
and LoRA-wrapped as the config says, placed and cast for the training precision.

The bench and the large-model checks build the same model without training it.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig

from lsfa.models.attention import check_implementation
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import apply_lora, build_token_classifier, is_encoder, load_tokenizer
from lsfa.models.placement import HALF, device_map, raise_to_fp32_but_frozen_linear, training_load_dtype
from lsfa.models.quantise import prepare_for_kbit_training
from lsfa.precision import autocast_dtype
from lsfa.training.config import TrainConfig


def build_model(config: TrainConfig, labels: list[str], precision: str = "fp32"):
    """Token classifier with the requested attention, LoRA-wrapped when ``mode == "lora"``.

    The base is built straight on this process's GPU when there is one, in the checkpoint's half dtype where the
    recipe keeps its frozen weights in it anyway (:mod:`lsfa.models.placement`), quantised with ``quantize``
    (:mod:`lsfa.models.quantise`); ``precision`` is the resolved training precision."""

    check_implementation(config.attn_implementation, config.attention)
    path = resolve_model(config.model, auto_fetch=True)
    tokenizer = load_tokenizer(path)
    dtype = training_load_dtype(AutoConfig.from_pretrained(str(path)), precision, config.finetune, config.quantize,
                                config.save_merged)  # fmt: skip
    model = build_token_classifier(
        path, labels, config.attention, config.attn_implementation, dtype=dtype, layers=config.layers,
        quantize=config.quantize, compute_dtype=autocast_dtype(precision) or torch.float32, device_map=device_map(),
    )  # fmt: skip
    attention = "full" if is_encoder(model.config) else config.attention
    model = prepare_for_kbit_training(model, config.gradient_checkpointing)
    if config.finetune == "lora":
        lora = config.lora
        model = apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # peft's hook: checkpointed blocks then see an input needing grad
    if dtype in HALF:
        raise_to_fp32_but_frozen_linear(model)  # the mixed-precision layout: fp32 but for frozen linear weights
    return model, tokenizer, attention

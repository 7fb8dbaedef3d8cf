"""lsfa.infer.optimise: what is cast to bf16 for inference, and what must stay fp32."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lsfa.infer.optimise import optimise_for_inference, required_precision


def _tiny_lm(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def test_a_tied_lm_head_keeps_the_embeddings_fp32() -> None:
    model = optimise_for_inference(_tiny_lm(tied=True), "bf16")
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert required_precision(model) == "bf16"


def test_an_untied_lm_head_is_cast_and_fp32_changes_nothing() -> None:
    model = optimise_for_inference(_tiny_lm(tied=False), "bf16")
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.model.embed_tokens.weight.dtype == torch.float32
    plain = optimise_for_inference(_tiny_lm(tied=False), "fp32")
    assert all(p.dtype == torch.float32 for p in plain.parameters()) and required_precision(plain) is None

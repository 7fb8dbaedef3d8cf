"""lsfa.models.optimise: what is cast to bf16 for inference, and what must stay fp32."""

from __future__ import annotations

import torch

from lsfa.models.optimise import optimise_for_inference, required_precision
from tests.tiny import tiny_causal_lm


def _tiny_lm(tied: bool):
    return tiny_causal_lm(tied=tied)[0]


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

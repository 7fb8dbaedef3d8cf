"""Training kernels: math attention for short CPU rows (same gradients), LoRA dropout with a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lsfa.training.kernels import SHORT_ROW_TOKENS, FastDropout, training_attention_context, use_fast_lora_dropout

CPU = torch.device("cpu")


def _flash_enabled() -> bool:
    return torch.backends.cuda.flash_sdp_enabled()


@pytest.mark.parametrize(
    ("width", "device", "kernel", "math_only"),
    [
        (SHORT_ROW_TOKENS, CPU, "fast", True),
        (SHORT_ROW_TOKENS + 1, CPU, "fast", False),
        (16, CPU, "default", False),
        (16, torch.device("cuda"), "fast", False),
    ],
)
def test_math_kernel_only_for_short_cpu_rows_in_fast_mode(width, device, kernel, math_only) -> None:
    assert _flash_enabled()
    with training_attention_context(width, device, kernel):
        assert _flash_enabled() is not math_only
        assert torch.backends.cuda.math_sdp_enabled()
    assert _flash_enabled()


def test_math_and_fused_kernels_give_the_same_gradients() -> None:
    """Both kernels compute exact attention (with a padding mask, forward and backward): only the
    summation order may differ."""
    torch.manual_seed(0)
    query = torch.randn(2, 4, 12, 16, requires_grad=True)
    key = torch.randn(2, 4, 12, 16, requires_grad=True)
    value = torch.randn(2, 4, 12, 16, requires_grad=True)
    mask = torch.ones(2, 1, 12, 12, dtype=torch.bool)
    mask[1, :, :, 8:] = False
    weights = torch.randn(2, 4, 12, 16)

    def gradients(context) -> list[torch.Tensor]:
        with context:
            out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
            grads = torch.autograd.grad((out * weights).sum(), (query, key, value))
        return [out.detach(), *grads]

    fused_only = sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    for math, fused in zip(gradients(training_attention_context(12, CPU)), gradients(fused_only), strict=True):
        # Two kernels sum in other orders: fp32 noise is ~1e-6, a wrong mask or scale would differ by ~1e-1.
        torch.testing.assert_close(math, fused, rtol=1e-4, atol=1e-5)


def test_fast_dropout_keeps_one_minus_p_scales_like_torch_and_draws_a_new_mask_each_call() -> None:
    torch.manual_seed(0)
    dropout = FastDropout(0.05).train()
    x = torch.ones(400, 1001, requires_grad=True)  # not a multiple of 3 elements: the last draw is cut
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.95) < 0.003
    assert torch.allclose(y[kept], torch.tensor(1 / 0.95))
    per_word = (~kept).reshape(-1)[: 400 * 1001 // 3 * 3].view(-1, 3).float().mean(0)
    assert all(abs(share - 0.05) < 0.004 for share in per_word.tolist())  # no 16-bit word is biased
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert not torch.equal(dropout(x.detach()) != 0, kept)
    assert torch.equal(dropout.eval()(x), x)


def test_fast_dropout_replaces_only_active_lora_dropouts(tmp_path) -> None:
    from lsfa.models.classifier import apply_lora, build_token_classifier
    from tests.tiny import tiny_decoder_dir

    decoder = tiny_decoder_dir(tmp_path / "decoder", "llama")
    model = apply_lora(build_token_classifier(decoder, ["O", "B-X"], "full"), r=4, alpha=8, dropout=0.1)
    replaced = use_fast_lora_dropout(model)
    assert replaced > 0
    assert all(not isinstance(m, torch.nn.Dropout) for name, m in model.named_modules() if "lora_dropout" in name)
    without = apply_lora(build_token_classifier(decoder, ["O", "B-X"], "full"), r=4, alpha=8, dropout=0.0)
    assert use_fast_lora_dropout(without) == 0


def test_fast_kernels_select_the_fused_adamw(tmp_path) -> None:
    from lsfa.training.config import TrainConfig
    from lsfa.training.trainer import training_arguments

    fast = training_arguments(TrainConfig(output_dir=str(tmp_path)), "fp32", tmp_path)
    default = training_arguments(TrainConfig(output_dir=str(tmp_path), kernels="default"), "fp32", tmp_path)
    assert fast.optim == "adamw_torch_fused" and default.optim == "adamw_torch"

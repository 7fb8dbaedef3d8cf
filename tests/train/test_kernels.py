"""The training attention kernel: math for short rows on CPU, PyTorch's choice otherwise, same gradients."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lsfa.train.kernels import SHORT_ROW_TOKENS, training_attention_context

CPU = torch.device("cpu")


def _flash_enabled() -> bool:
    return torch.backends.cuda.flash_sdp_enabled()


@pytest.mark.parametrize(
    ("width", "device", "kernel", "math_only"),
    [
        (SHORT_ROW_TOKENS, CPU, "auto", True),
        (SHORT_ROW_TOKENS + 1, CPU, "auto", False),
        (16, CPU, "default", False),
        (16, torch.device("cuda"), "auto", False),
    ],
)
def test_math_kernel_only_for_short_cpu_rows_in_auto_mode(width, device, kernel, math_only) -> None:
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
        torch.testing.assert_close(math, fused, rtol=1e-4, atol=1e-5)

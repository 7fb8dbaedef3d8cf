"""Attention kernels for training on CPU: the plain (math) kernel for short rows, the fused one for long rows.

Why: PyTorch's fused CPU attention (``_scaled_dot_product_flash_attention_for_cpu``) is built for long
sequences. NER training rows are short (CoNLL-2003 sentences average 22 sub-tokens), and there its backward
pass costs about eight times its forward: profiling `lsfa bench`'s LoRA training step put 18% of the step in
it. The math kernel (two batched matrix products and a softmax, computed in fp32 for bf16 inputs) is 2-3.6x
faster forward plus backward on rows up to about 100 sub-tokens and slower from about 200 on (measured on
the 2-core developers' machine, 8 rows, smollm2-135m's 9 query and 3 key/value heads of 64 dims; see
docs/results/performance.md). Both compute exact attention, so only the floating-point summation order
changes. Inference keeps the fused kernel, which is the faster one there.
"""

from __future__ import annotations

import contextlib

import torch

SHORT_ROW_TOKENS = 128
"""Rows up to this many sub-tokens train with the math attention kernel on CPU (``attention_kernel: auto``)."""


def training_attention_context(width: int, device: torch.device, kernel: str = "auto"):
    """The attention-kernel context for one training step over rows ``width`` sub-tokens wide.

    ``kernel="auto"`` picks the math kernel for short rows on CPU; ``"default"`` leaves PyTorch's choice
    (what the reference recipe uses). It must wrap the backward pass too, which is where the time goes.
    """
    if kernel != "auto" or device.type != "cpu" or width > SHORT_ROW_TOKENS:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])

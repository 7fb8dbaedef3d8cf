"""CPU kernels for training (``kernels: fast``): math attention for short rows, a cheaper LoRA dropout mask.

(``kernels: fast`` also selects the fused AdamW kernel, in :func:`lsfa.training.trainer.training_arguments`.)

Why: PyTorch's fused CPU attention (``_scaled_dot_product_flash_attention_for_cpu``) is built for long
sequences. NER training rows are short (CoNLL-2003 sentences average 22 sub-tokens), and there its backward
pass costs about eight times its forward: profiling `lsfa bench`'s LoRA training step put 18% of the step in
it. The math kernel (two batched matrix products and a softmax, computed in fp32 for bf16 inputs) is 1.4-3.5x
faster forward plus backward on rows up to 128 sub-tokens and slower from about 192 on (measured on the 2-core
developers' machine, 8 rows, smollm2-135m's 9 query and 3 key/value heads of 64 dims:
scripts/speed-checks/kernels_micro.py, docs/results/speed-checks/kernels-micro.txt). Both compute exact
attention, so only the floating-point summation order changes. Inference keeps the fused kernel, which is
the faster one there.
"""

from __future__ import annotations

import contextlib
import sys

import torch

SHORT_ROW_TOKENS = 128
"""Rows up to this many sub-tokens train with the math attention kernel on CPU (``kernels: fast``)."""


def training_attention_context(width: int, device: torch.device, kernels: str = "fast"):
    """The attention-kernel context for one training step over rows ``width`` sub-tokens wide.

    ``kernels="fast"`` picks the math kernel for short rows on CPU; ``"default"`` leaves PyTorch's choice
    (what the reference recipe uses). It must wrap the backward pass too, which is where the time goes.
    """
    if kernels != "fast" or device.type != "cpu" or width > SHORT_ROW_TOKENS:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class FastDropout(torch.nn.Module):
    """Inverted dropout whose random mask needs a third of the random draws of ``torch.nn.Dropout``.

    Why: LoRA applies dropout to the input of every adapted projection, separately for each, so a LoRA step of
    smollm2-135m over ~180 sub-tokens draws ~27 million random numbers; profiling put ``bernoulli_`` at 15%
    of a one-thread bf16 training step. Here each 64-bit draw of PyTorch's generator gives three 16-bit
    uniform numbers (its low 48 bits; the top bit of a non-negative int64 is always 0), and an element is
    kept when its number is at or above ``p`` of the 16-bit range. The keep probability is ``1 - p`` rounded
    to 1/65536, the scale is ``1 / (1 - p)`` as in PyTorch, and the mask is independent per element and per
    call, so the regulariser is the same; only the random stream differs.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 65536) - 32768  # int16 values >= this are kept
        self.scale = 1.0 / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.numel() == 0:
            return x
        count = x.numel()
        draws = -(-count // 3)
        raw = torch.empty(draws, dtype=torch.int64, device=x.device).random_()
        keep = raw.view(torch.int16).view(draws, 4)[:, :3] >= self.threshold  # little-endian: the low 48 bits
        keep = keep.reshape(-1)[:count].view(x.shape)
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_lora_dropout(model: torch.nn.Module) -> int:
    """Replace the ``nn.Dropout`` of every LoRA adapter in ``model`` by :class:`FastDropout` (same ``p``).

    Only on little-endian machines (where the low 16-bit words of an int64 come first). Returns how many
    dropout modules were replaced.
    """
    if sys.byteorder != "little":
        return 0
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                dropouts[name] = FastDropout(dropout.p)
                replaced += 1
    return replaced

"""Micro-benchmarks behind lsfa.training.kernels: attention forward+backward (fused vs math) by row width, LoRA
dropout masks, AdamW (for-each vs fused). One thread unless THREADS is given.

    python scripts/speed-checks/kernels_micro.py [THREADS]
"""

import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lsfa.training.kernels import FastDropout

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)


def ms(fn, repeats=20):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


print("attention, 8 rows, 9 query / 3 key-value heads of 64 dims, bf16, forward + backward (ms)")
for width in (24, 48, 96, 128, 192, 512):
    q = torch.randn(8, 9, width, 64, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(8, 3, width, 64, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(8, 3, width, 64, dtype=torch.bfloat16, requires_grad=True)
    mask = torch.ones(8, 1, width, width, dtype=torch.bool)
    mask[0, :, :, width // 2 :] = False

    def step(backend, q=q, k=k, v=v, mask=mask):
        def run():
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(
                    q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=mask
                )
                out.sum().backward()

        return run

    fused, math = ms(step(SDPBackend.FLASH_ATTENTION)), ms(step(SDPBackend.MATH))
    print(f"  width {width:4d}: fused {fused:7.2f}  math {math:7.2f}  fused/math {fused / math:.2f}")

x = torch.randn(180, 576, requires_grad=True)
print(
    "dropout p=0.05 on 180 x 576 fp32, forward (ms):",
    f"torch {ms(lambda: F.dropout(x, 0.05, True), 200):.3f}",
    f"FastDropout {ms(lambda: FastDropout(0.05).train()(x), 200):.3f}",
)
params = [torch.nn.Parameter(torch.randn(576, 32)) for _ in range(420)]
for p in params:
    p.grad = torch.randn_like(p)
for fused in (False, True):
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.001, fused=fused)
    print(f"AdamW over 420 matrices 576 x 32, fused={fused}: {ms(optimizer.step):.2f} ms per step")

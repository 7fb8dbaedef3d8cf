"""Numeric precision: the names users pass, and what ``auto`` means on the machine at hand.

``auto`` means bf16 autocast where bf16 matrix products are actually faster than fp32, fp32 elsewhere.
Having bf16 instructions is not enough: on an Intel Xeon with AVX-512 BF16 but no AMX exposed to the
virtual machine (torch 2.13, oneDNN 3.12 ``brg_matmul:avx512_core_bf16``), one thread did 84 GFLOP/s in bf16
against 160 in fp32, and a LoRA training step ran at 44 vs 53 tokens/s on a busy machine
(docs/results/speed-checks/bf16-vs-fp32-intel-xeon.txt). So on CPU ``auto`` times both once per process
(a fraction of a second) instead of trusting the instruction set. On CUDA ``auto`` is bf16 where the card has bf16
units (``torch.cuda.is_bf16_supported(including_emulation=False)``: Ampere and later) and fp16 with loss scaling
elsewhere (T4, V100), whose bf16 is only emulated and slower than fp32. ``LSFA_BF16=on|off`` overrides the
measurement (e.g. to pin a run's recipe across machines).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Literal, get_args

import torch

from lsfa.errors import LsfaError

Precision = Literal["auto", "fp32", "bf16", "fp16", "bf16-full", "int8"]
"""The one list of precisions (InferenceOptions uses this type, messages :data:`PRECISIONS`; training configs
allow a subset)."""

PRECISIONS: tuple[str, ...] = get_args(Precision)
"""``bf16``: bf16 autocast over fp32 weights; ``fp16``: fp16 autocast (with a gradient scaler in training), for GPUs
without bf16 units; ``bf16-full``: every weight in bf16 too (inference only);
``int8``: linear layers dynamically quantised to int8 (CPU inference only, torch's own quantised kernels)."""

MERGED_ONLY_PRECISIONS = ("bf16-full", "int8")
"""Precisions that rewrite the merged weights, so a LoRA adapter cannot stay unmerged."""

BF16_PRECISIONS = ("bf16", "bf16-full")
"""Precisions that run under bf16 autocast."""

HALF_DTYPES = {"bf16": torch.bfloat16, "bf16-full": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each precision that runs under autocast (the others run in their weights' dtype)."""

BF16_MIN_SPEEDUP = 1.2
"""bf16 must beat fp32 by this factor in the timed matmul before ``auto`` picks it: the rest of a step
(casts, element-wise work) does not speed up, so a marginal matmul gain is lost in the step."""


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear error listing them."""
    if precision not in PRECISIONS:
        raise LsfaError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """``auto`` becomes ``bf16`` where bf16 matmuls are faster than fp32 here; on a CUDA card without bf16 units,
    ``fp16``; ``fp32`` elsewhere. An unknown name is a clear error."""
    if check_precision(precision) != "auto":
        return precision
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if bf16_is_faster(device.type):
        return "bf16"
    return "fp16" if device.type == "cuda" and not os.environ.get("LSFA_BF16") else "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast runs ``precision`` in, or None for precisions without autocast (fp32, int8)."""
    return HALF_DTYPES.get(precision)


def enable_tf32(device: torch.device | None = None) -> bool:
    """Let fp32 matrix products and convolutions use TF32 on CUDA cards that have it (Ampere, compute capability
    8.0, and later); returns whether it did.

    Why: PyTorch leaves TF32 off for matmuls by default, so an fp32 run on an A100 or H100 runs its products at a
    fraction of the card's speed; TF32 keeps fp32's range with a 10-bit mantissa, which training tolerates (as it
    does bf16's 7 bits). Cards before Ampere have no TF32 and are left alone."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def bf16_is_faster(device_type: str) -> bool:
    """Whether bf16 matrix products pay on this device (overridable with ``LSFA_BF16=on|off``)."""
    forced = os.environ.get("LSFA_BF16", "").strip().lower()
    if forced in ("on", "off"):
        return forced == "on"
    if forced:
        raise LsfaError(f"LSFA_BF16={forced!r}: use on or off (or leave it unset to measure)")
    if device_type == "cuda":
        # Not the default including_emulation=True: it says yes on T4/V100, whose bf16 is emulated and slow.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type != "cpu" or not _cpu_has_bf16_kernels():
        return False
    return bf16_speedup() >= BF16_MIN_SPEEDUP


def _cpu_has_bf16_kernels() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=1)
def bf16_speedup(rows: int = 512, inner: int = 576, cols: int = 1536, repeats: int = 10) -> float:
    """fp32 time over bf16 time for a decoder-layer-sized matmul (cached per process).

    The shape is a smollm2-135m MLP projection over a 512-token batch: large enough that kernel choice, not
    call overhead, decides the time. The two are timed in turns and the best of each kept, so that other
    work on a busy machine slows both alike instead of tilting the answer. They run on one thread: the
    question is which kernel is faster, and a multi-threaded product on cores busy with other work waits on
    preempted threads. On an AMX Xeon with training jobs on its cores, the ratio at two threads read 5.6 and 1.6
    (one core busy) and 747 (both busy); at one thread, 6.6 each time."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _timed_ratio(rows, inner, cols, repeats)
    finally:
        torch.set_num_threads(previous_threads)


def _timed_ratio(rows: int, inner: int, cols: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    fp32 = (torch.randn(rows, inner, generator=generator), torch.randn(inner, cols, generator=generator))
    bf16 = (fp32[0].bfloat16(), fp32[1].bfloat16())
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for round_ in range(repeats + 1):  # round 0 builds the kernels and is not counted
        for name, (left, right) in (("fp32", fp32), ("bf16", bf16)):
            start = time.perf_counter()
            torch.matmul(left, right)
            elapsed = time.perf_counter() - start
            if round_ > 0:
                best[name] = min(best[name], elapsed)
    return best["fp32"] / max(best["bf16"], 1e-9)

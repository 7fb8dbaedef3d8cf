"""What the machine can do and what a run cost: matmul peak, peak memory, threads, machine description.

The matmul peak is the yardstick for model FLOPs utilisation (MFU): a model forward is mostly matrix
products, so the best a square matmul loop reaches on this machine, in this process, with these threads,
is the ceiling the tagger can be compared against.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lsfa.models.placement import resolve_device
from lsfa.precision import bf16_is_faster
from lsfa.runs import machine_info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU; a GPU that is not there is one clear line
    (the same rule as ``lsfa predict --device``: :func:`lsfa.models.placement.resolve_device`)."""
    return resolve_device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls are faster than fp32 here (measured on CPU; see :mod:`lsfa.precision`)."""
    return bf16_is_faster(device.type)


def matmul_peak(
    dtype: torch.dtype, device: torch.device, size: int = 2048, seconds: float = 1.0, repeats: int = 3
) -> dict[str, Any]:
    """Best GFLOP/s of ``size x size`` matrix products over ``repeats`` timed loops of about ``seconds`` each.

    The best loop is reported (not the mean): the peak is what the hardware can do, and other processes can
    only make a loop slower.
    """
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    flops_per_product = 2 * size**3
    with torch.inference_mode():
        for _ in range(2):  # warm-up: kernel selection, page faults
            torch.matmul(left, right)
        synchronize(device)
        best = 0.0
        for _ in range(repeats):
            count, start = 0, time.perf_counter()
            while True:
                torch.matmul(left, right)
                count += 1
                synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            best = max(best, flops_per_product * count / elapsed / 1e9)
    name = str(dtype).removeprefix("torch.")
    return {"gflops": best, "size": size, "dtype": name, "threads": torch.get_num_threads()}


def _read_status_kib(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) for this process; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float | None:
    """Resident memory of this process now, in MiB (None off Linux)."""
    kib = _read_status_kib("VmRSS")
    return kib / 1024 if kib is not None else None


def process_peak_mb() -> float:
    """Peak resident memory of the whole process so far, in MiB (``ru_maxrss``, never reset)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class PeakMemory:
    """Peak memory of one measured call: process peak RSS on CPU, peak allocated memory on CUDA.

    ``before_mb`` is what was resident when the call started (models already loaded), so
    ``peak_mb - before_mb`` is what the call itself needed on top (activations, buffers).
    """

    device: torch.device
    before_mb: float | None = None
    peak_mb: float | None = None
    source: str = ""
    samples: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device) / 2**20
            yield
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.source = "cuda max_memory_allocated"
        else:
            reset = _reset_peak_rss()
            before = current_rss_mb()
            yield
            hwm = _read_status_kib("VmHWM")
            peak = hwm / 1024 if (reset and hwm is not None) else None
            self.source = "VmHWM (reset per call)" if peak is not None else "unavailable"
        if peak is not None:
            self.peak_mb = max(self.peak_mb or 0.0, peak)
            if before is not None:
                self.before_mb = before if self.before_mb is None else min(self.before_mb, before)

    def as_dict(self) -> dict[str, Any]:
        extra = None
        if self.peak_mb is not None and self.before_mb is not None:
            extra = max(self.peak_mb - self.before_mb, 0.0)
        return {"peak_mb": self.peak_mb, "resident_before_mb": self.before_mb, "call_extra_mb": extra,
                "source": self.source}  # fmt: skip


def thread_settings() -> dict[str, Any]:
    """The thread configuration in force: torch intra/inter-op threads and the environment that sets them."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")
    return {
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "environment": {name: os.environ[name] for name in names if name in os.environ},
    }


def machine_description(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from: CPU model, flags and cores, GPU, library versions, commit (the run record's
    :func:`lsfa.runs.machine_info`, so a bench and a training run name a machine the same way)."""
    info = machine_info()
    info.update({"cores": os.cpu_count(), "device": str(device)})
    with contextlib.suppress(AttributeError, OSError):
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    import transformers

    info["transformers"] = transformers.__version__
    return info

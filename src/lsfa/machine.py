"""What machine a number came from: CPU model, the instruction-set flags that decide lsfa's speed, torch's
CPU capability and whether bf16 pays here. Recorded with every run and printed by ``lsfa env`` (and by CI
before the tests, so a failing run says which machine it was)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from lsfa.precision import bf16_speedup, resolve_precision

SPEED_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
"""CPU flags that change which kernels run: AVX-512, native bf16 dot products, AMX tiles."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``AMD EPYC 9R14`` or ``Intel(R) Xeon(R) Processor``."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_label(summary: dict[str, Any]) -> str:
    """A recorded machine's CPU model, with " with AMX" where its flags say so: one model name (``Intel(R) Xeon(R)
    Processor``) covers Xeons with and without AMX, whose bf16 speeds differ several-fold, so times measured on
    the two must not read as one machine's. ``a CPU not recorded`` for records from before ``cpu_model``."""
    cpu = summary.get("cpu_model") or "a CPU not recorded"
    return cpu + (" with AMX" if "amx_bf16" in (summary.get("cpu_flags") or []) else "")


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`SPEED_FLAGS` this CPU reports."""
    present = set(_cpuinfo().get("flags", "").split())
    return {flag: flag in present for flag in SPEED_FLAGS}


def cpu_capability() -> str:
    """torch's view of the CPU (``AVX512``, ``AVX2``, ...), which picks its vectorised kernels."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:
        return "unknown"


def machine_summary(measure_bf16: bool = True) -> dict[str, Any]:
    """CPU, flags, torch capability, cores and threads, GPU, and (measured) what ``precision: auto`` picks."""
    summary: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": [flag for flag, present in cpu_flags().items() if present],
        "cpu_capability": cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
    if measure_bf16:
        summary["bf16_speedup"] = round(bf16_speedup(), 2)
        summary["auto_precision"] = resolve_precision("auto")
    return summary


def machine_line(summary: dict[str, Any] | None = None) -> str:
    """One line for logs and CI output."""
    info = summary or machine_summary()
    flags = ",".join(info["cpu_flags"]) or "none of " + ",".join(SPEED_FLAGS)
    line = (
        f"machine: {info['cpu_model']} | flags {flags} | torch {info['torch']} cpu capability "
        f"{info['cpu_capability']} | {info['cpu_count']} cores, {info['torch_threads']} torch threads"
    )
    if "bf16_speedup" in info:
        line += f" | bf16 matmul {info['bf16_speedup']}x fp32 -> auto = {info['auto_precision']}"
    return line + (f" | GPU {info['cuda']}" if info["cuda"] else " | no GPU")

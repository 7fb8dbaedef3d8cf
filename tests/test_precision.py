"""``auto`` precision follows measured bf16 speed, not the instruction set (lsfa.precision)."""

import pytest
import torch

from lsfa import precision
from lsfa.errors import LsfaError


@pytest.fixture(autouse=True)
def measured(monkeypatch):
    """No override from the environment, and a CPU that has bf16 kernels."""
    monkeypatch.delenv("LSFA_BF16", raising=False)
    monkeypatch.setattr(precision, "_cpu_has_bf16_kernels", lambda: True)


@pytest.mark.parametrize(("speedup", "expected"), [(3.0, "bf16"), (1.25, "bf16"), (1.1, "fp32"), (0.5, "fp32")])
def test_auto_picks_bf16_only_where_it_is_measured_faster(monkeypatch, speedup: float, expected: str) -> None:
    monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected


def test_explicit_precisions_are_kept_and_unknown_ones_named() -> None:
    for name in ("fp32", "bf16", "fp16", "bf16-full"):
        assert precision.resolve_precision(name) == name
    with pytest.raises(LsfaError, match=r"unknown precision 'fp8'.*auto, fp32, bf16, fp16, bf16-full"):
        precision.check_precision("fp8")


def test_environment_override_skips_the_measurement(monkeypatch) -> None:
    def fail() -> float:
        raise AssertionError("measured despite LSFA_BF16")

    monkeypatch.setattr(precision, "bf16_speedup", fail)
    monkeypatch.setenv("LSFA_BF16", "on")
    assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setenv("LSFA_BF16", "off")
    assert precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setenv("LSFA_BF16", "maybe")
    with pytest.raises(LsfaError, match="LSFA_BF16='maybe'"):
        precision.resolve_precision("auto", torch.device("cpu"))


def test_a_cpu_without_bf16_kernels_is_never_timed(monkeypatch) -> None:
    monkeypatch.setattr(precision, "_cpu_has_bf16_kernels", lambda: False)
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 10.0)
    assert precision.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_the_measurement_is_a_positive_ratio() -> None:
    assert precision.bf16_speedup() > 0


def test_the_measurement_runs_on_one_thread_and_restores_the_count(monkeypatch) -> None:
    """Two threads on a busy CPU made the ratio swing from 1.6 to 747; one thread keeps it to the kernels."""
    seen: list[int] = []
    real_matmul = torch.matmul

    def recording_matmul(left, right):
        seen.append(torch.get_num_threads())
        return real_matmul(left, right)

    monkeypatch.setattr(torch, "matmul", recording_matmul)
    precision.bf16_speedup.cache_clear()
    torch.set_num_threads(2)
    try:
        precision.bf16_speedup()
        assert torch.get_num_threads() == 2
    finally:
        precision.bf16_speedup.cache_clear()
    assert seen and set(seen) == {1}


def fake_cuda(monkeypatch, native_bf16: bool, capability: tuple[int, int] = (8, 0)) -> list[bool]:
    """A CUDA card as torch would report it; returns the ``including_emulation`` values bf16 was asked with."""
    asked: list[bool] = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native_bf16 or including_emulation  # emulated bf16 is "supported" on every card

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return asked


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_asks_for_native_bf16_and_falls_back_to_fp16(monkeypatch, native_bf16, expected) -> None:
    """A T4 or V100 only emulates bf16 (slower than fp32): the default query says yes there, so lsfa asks without
    emulation and picks fp16 (with loss scaling in training) instead."""
    asked = fake_cuda(monkeypatch, native_bf16)
    assert precision.resolve_precision("auto", torch.device("cuda")) == expected
    assert asked == [False]


def test_the_environment_override_pins_fp32_on_cuda_too(monkeypatch) -> None:
    fake_cuda(monkeypatch, native_bf16=True)
    monkeypatch.setenv("LSFA_BF16", "off")
    assert precision.resolve_precision("auto", torch.device("cuda")) == "fp32"


@pytest.mark.parametrize(("capability", "enabled"), [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_tf32_is_enabled_from_ampere_on(monkeypatch, capability, enabled) -> None:
    fake_cuda(monkeypatch, native_bf16=True, capability=capability)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # torch's flags, not attributes
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        assert precision.enable_tf32(torch.device("cuda")) is enabled
        assert torch.backends.cuda.matmul.allow_tf32 is enabled
        assert precision.enable_tf32(torch.device("cpu")) is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_autocast_dtypes() -> None:
    assert precision.autocast_dtype("fp16") is torch.float16
    assert precision.autocast_dtype("bf16") is torch.bfloat16
    assert precision.autocast_dtype("fp32") is None and precision.autocast_dtype("int8") is None

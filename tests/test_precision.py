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
    for name in ("fp32", "bf16", "bf16-full"):
        assert precision.resolve_precision(name) == name
    with pytest.raises(LsfaError, match=r"unknown precision 'fp16'.*auto, fp32, bf16, bf16-full"):
        precision.check_precision("fp16")


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

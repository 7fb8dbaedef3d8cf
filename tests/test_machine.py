"""The machine record's CPU label."""

from lsfa.machine import cpu_label


def test_cpu_label_names_amx_apart_and_old_records() -> None:
    """Xeons with and without AMX share a model name; only the flags tell them apart."""
    xeon = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx512f", "avx512_bf16"]}
    assert cpu_label(xeon) == "Intel(R) Xeon(R) Processor"
    assert cpu_label(xeon | {"cpu_flags": ["avx512f", "amx_bf16"]}) == "Intel(R) Xeon(R) Processor with AMX"
    assert cpu_label({}) == "a CPU not recorded"

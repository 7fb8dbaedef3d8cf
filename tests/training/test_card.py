"""The model card's machine line."""

from lsfa.training.card import _machine


def test_the_card_names_amx_and_reads_records_from_before_cpu_model() -> None:
    """A Xeon with AMX trains several times faster in bf16 than one without under the same model name."""
    amx = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_flags": ["amx_bf16"], "processor": "x86_64"}
    assert _machine(amx) == "Intel(R) Xeon(R) Processor with AMX"
    assert _machine({"processor": "AMD EPYC 9R14"}) == "AMD EPYC 9R14"
    assert _machine({}) == "not recorded"

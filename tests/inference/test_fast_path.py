"""A recorded fast path fills only the options a caller left at their defaults, and only on the CPU it was
measured on."""

from __future__ import annotations

from lsfa.inference.fast_path import FAST_PATH_KEY, add_record, recorded_choice, with_recorded_choice
from lsfa.inference.options import InferenceOptions

RECORD = {"choice": {"precision": "bf16-full", "pack": True, "max_batch_tokens": 1024}, "measured": []}
EXTRA = {FAST_PATH_KEY: {"CPU A": RECORD}, "distillation": {"teacher": "t"}}


def test_defaults_take_the_recorded_choice_of_this_cpu():
    options = with_recorded_choice(InferenceOptions(), EXTRA, cpu="CPU A")
    assert (options.precision, options.pack, options.max_batch_tokens) == ("bf16-full", True, 1024)


def test_explicit_options_win_over_the_record():
    chosen = InferenceOptions(precision="fp32", max_batch_tokens=4096)
    options = with_recorded_choice(chosen, EXTRA, cpu="CPU A")
    assert (options.precision, options.pack, options.max_batch_tokens) == ("fp32", True, 4096)


def test_another_cpu_or_a_broken_record_changes_nothing():
    assert with_recorded_choice(InferenceOptions(), EXTRA, cpu="CPU B") == InferenceOptions()
    assert recorded_choice({FAST_PATH_KEY: {"CPU A": "bf16"}}, "CPU A") is None
    assert recorded_choice({}, "CPU A") is None


def test_a_new_record_keeps_the_other_cpus_and_keys():
    extra = add_record(EXTRA, "CPU B", {"choice": {"precision": "fp32"}})
    assert set(extra[FAST_PATH_KEY]) == {"CPU A", "CPU B"} and extra["distillation"] == {"teacher": "t"}
    assert EXTRA[FAST_PATH_KEY].keys() == {"CPU A"}  # not changed in place


def _count_bf16_timings(monkeypatch) -> list[int]:
    """Replace the bf16 matmul timing by a counter (and claim bf16 kernels, so ``auto`` would time them here)."""
    import lsfa.precision

    calls: list[int] = []
    monkeypatch.delenv("LSFA_BF16", raising=False)
    monkeypatch.setattr(lsfa.precision, "_cpu_has_bf16_kernels", lambda: True)
    monkeypatch.setattr(lsfa.precision, "bf16_speedup", lambda *args, **kwargs: calls.append(1) or 1.0)
    return calls


def _tagger_copy(tiny_taggers, tmp_path, record: bool):
    """A copy of the rule tagger, with a fast path recorded for this CPU (fp32) or without one."""
    import shutil

    from lsfa.inference.fast_path import this_cpu
    from lsfa.models.saving import read_meta, update_meta

    folder = shutil.copytree(tiny_taggers["rule"], tmp_path / "rule")
    if record:
        chosen = {"choice": {"precision": "fp32", "pack": False, "max_batch_tokens": None}, "measured": []}
        update_meta(folder, extra=add_record(read_meta(folder).extra, this_cpu(), chosen))
    return folder


def test_predict_does_not_time_bf16_when_the_folder_records_this_cpus_choice(tiny_taggers, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lsfa.cli import app

    calls = _count_bf16_timings(monkeypatch)
    folder = _tagger_copy(tiny_taggers, tmp_path, record=True)
    result = CliRunner().invoke(app, ["predict", "--model-dir", str(folder), "--text", "Bob Carter sat."])
    assert result.exit_code == 0, result.output
    assert "Bob Carter" in result.output and calls == []


def test_without_a_record_auto_precision_is_timed(tiny_taggers, tmp_path, monkeypatch):
    from lsfa.inference.tagger import Tagger

    calls = _count_bf16_timings(monkeypatch)
    tagger = Tagger.load(_tagger_copy(tiny_taggers, tmp_path, record=False))
    assert calls and tagger.precision == "fp32"  # timed, and 1.0x is below the speed-up bf16 must show

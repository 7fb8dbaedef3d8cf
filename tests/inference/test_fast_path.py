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

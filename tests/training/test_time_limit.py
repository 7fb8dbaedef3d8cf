"""``--time-limit``: reading durations (the stop and resume of a real run are in test_train.py)."""

from __future__ import annotations

import time

import pytest

from lsfa.errors import LsfaError
from lsfa.training.time_limit import deadline_after, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("115m", 6900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("600", 600),
        (42, 42),
        (" 2H ", 7200),
    ],
)
def test_durations_read_as_seconds(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "2d", "m", "-5", "0", "1h-3m"])
def test_bad_durations_name_the_option(text) -> None:
    with pytest.raises(LsfaError, match="--time-limit"):
        parse_duration(text)


def test_no_limit_means_no_deadline() -> None:
    assert parse_duration(None) is None and deadline_after(None) is None
    assert deadline_after(60) == pytest.approx(time.time() + 60, abs=5)


def test_max_train_time_reads_durations_and_names_the_key() -> None:
    from lsfa.training.config import load_config

    assert load_config(None, {"max_train_time": "100m"}).max_train_time == pytest.approx(6000)
    assert load_config(None, {"max_train_time": 90}).max_train_time == 90
    assert load_config(None, {}).max_train_time is None
    with pytest.raises(LsfaError, match="max_train_time"):
        load_config(None, {"max_train_time": "soon"})


class _Timer:
    def __init__(self, seconds: float) -> None:
        self.train_seconds = seconds


@pytest.mark.parametrize(("strategy", "asks"), [("epoch", False), ("steps", True)])
def test_the_train_time_budget_ends_training_and_has_the_stop_evaluated(strategy: str, asks: bool) -> None:
    """Past the budget: stop; per-step evaluation/saving must be asked for at the step (the epoch end the stop
    causes does it for per-epoch strategies); within it: nothing."""
    from types import SimpleNamespace

    from transformers import TrainerControl

    from lsfa.training.time_limit import train_time_callback

    args = SimpleNamespace(world_size=1, eval_strategy=strategy, save_strategy=strategy)
    state = SimpleNamespace(global_step=7)
    within, past = train_time_callback(_Timer(99.0), 100.0), train_time_callback(_Timer(100.5), 100.0)
    control = TrainerControl()
    within.on_step_end(args, state, control)
    assert not control.should_training_stop and within.stopped_at is None
    past.on_step_end(args, state, control)
    assert control.should_training_stop and past.stopped_at == 7
    assert (control.should_evaluate, control.should_save) == (asks, asks)

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

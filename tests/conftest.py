"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: tiny models gain nothing from more threads and run many times faster than when
    fighting over the cores. Per test, because library code under test (bench, train) may set the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

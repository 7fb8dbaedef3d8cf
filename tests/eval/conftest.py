"""Fixtures for the evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def data_dir():
    """The shared data directory, or skip when LSFA_DATA_DIR is unset."""
    from lsfa.settings import data_dir as configured

    path = configured()
    if path is None or not path.is_dir():
        pytest.skip("LSFA_DATA_DIR is not set")
    return path

"""Fixtures for the data-layer tests: writing small CoNLL files, and the shared real corpora."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write text (or bytes) to a file in a temp folder and return its path."""

    def write(content: str | bytes, name: str = "data.txt") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return write


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real corpora folder from LSFA_DATA_DIR; tests using it skip when it is not set."""
    value = os.environ.get("LSFA_DATA_DIR")
    if not value:
        pytest.skip("LSFA_DATA_DIR is not set (points at the shared corpora)")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.skip(f"LSFA_DATA_DIR={value} is not a folder")
    return path

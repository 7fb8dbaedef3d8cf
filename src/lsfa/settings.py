"""Settings read from the environment, in one place.

``LSFA_DATA_DIR`` points at the folder holding the named corpora (``conll2003/``, ``bc5cdr/``,
``bc5cdr_mtl/``); ``LSFA_HOME`` is where provisioned models are cached. Both are read at call time so
tests and CLI flags can change them.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path | None:
    """The data directory from ``LSFA_DATA_DIR``, or ``None`` when unset."""
    value = os.environ.get("LSFA_DATA_DIR")
    return Path(value).expanduser() if value else None


def home_dir() -> Path:
    """The cache folder for provisioned models (``LSFA_HOME``, default ``~/.cache/lsfa``)."""
    value = os.environ.get("LSFA_HOME")
    if value:
        return Path(value).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "lsfa"

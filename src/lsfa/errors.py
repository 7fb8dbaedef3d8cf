"""User-facing errors.

Anything a user can cause (a bad file, an unknown model name, a wrong option) raises :class:`LsfaError`
or a subclass; the CLI prints its message and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from pathlib import Path


class LsfaError(Exception):
    """An error caused by input or settings, with a message meant for the user."""


class DataFormatError(LsfaError, ValueError):
    """A problem in an input file, located by file and 1-based line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")

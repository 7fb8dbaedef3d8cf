"""User-facing errors.

Anything a user can cause (a bad file, an unknown model name, a wrong option) raises :class:`LsfaError`
or a subclass; the CLI prints its message and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LsfaError(Exception):
    """An error caused by input or settings, with a message meant for the user."""


class DataFormatError(LsfaError, ValueError):
    """A problem in an input file, located by file and 1-based line number, or by 1-based record number where
    the file is one JSON list (a Label Studio export), whose records are not lines."""

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None, record: int | None = None
    ):
        self.path = str(path) if path is not None else None
        self.line = line
        self.record = record
        self.reason = message
        where = ""
        if self.path is not None and record is not None:
            where = f"{self.path}: record {record}: "
        elif self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class WriteError(LsfaError):
    """An output that could not be written (permissions, a read-only or full disk), named by its path."""


def cannot_write(path: str | Path, error: OSError) -> WriteError:
    """The one-line error for an OS error while writing ``path`` (the error's own file name wins when it has
    one: it is the file that failed), e.g. ``runs/x/model: cannot write (No space left on device)``."""
    where = error.filename if isinstance(error.filename, str) and error.filename else str(path)
    return WriteError(f"{where}: cannot write ({error.strerror or error})")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn OS errors raised inside the block into :func:`cannot_write` errors: a full disk or a read-only
    folder is the user's to fix, and deserves one line instead of a traceback through torch or safetensors."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        raise cannot_write(path, error) from None

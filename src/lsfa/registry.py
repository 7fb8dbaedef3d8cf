"""A named table the project grows by (data formats, the systems a grid runs): one class, so that every registry
refuses a name twice and answers an unknown name with the known ones, in the same words.

Why a ``dict`` subclass: the tables are read as dicts everywhere (``FORMATS["conll"]``, ``', '.join(SYSTEMS)``,
``.values()``); registration order is the dict's order.
"""

from __future__ import annotations

from typing import TypeVar

from lsfa.errors import LsfaError

T = TypeVar("T")


class Registry(dict[str, T]):
    """Entries by name, in registration order; ``kind`` names them in errors ("data format", "system")."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; a name already taken is refused (a name must mean one thing)."""
        if name in self:
            raise LsfaError(f"{self.kind} {name!r} is already registered")
        self[name] = entry
        return entry

    def named(self, name: str) -> T:
        """The entry called ``name``, or an error listing the known ones."""
        if name not in self:
            raise LsfaError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self)}")
        return self[name]

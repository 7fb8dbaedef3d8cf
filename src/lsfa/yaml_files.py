"""Reading YAML files users write (training configs, grids): every failure is one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lsfa.errors import LsfaError


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in ``path`` (empty for an empty file); ``what`` names the file's role in errors,
    e.g. "config file". A missing or unreadable file, a YAML syntax error (with its line and column) or
    a top level that is not a mapping is an :class:`LsfaError`."""
    path = Path(path)
    if not path.exists():
        raise LsfaError(f"{path}: {what} not found")
    if not path.is_file():
        raise LsfaError(f"{path}: {what} expected, found a folder")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LsfaError(f"{path}: cannot read the {what}: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise LsfaError(f"{yaml_location(path, error)}: YAML syntax error: {yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LsfaError(f"{path}: a {what} must be a mapping of keys to values, found a {type(data).__name__}")
    return data


def yaml_location(path: Path, error: yaml.YAMLError) -> str:
    """``path:line:column`` of a YAML error (1-based), or just ``path`` when YAML gives no position."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def yaml_problem(error: yaml.YAMLError) -> str:
    """The short reason of a YAML error, on one line."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    text = ", ".join(part for part in parts if part) or str(error)
    return " ".join(text.split())

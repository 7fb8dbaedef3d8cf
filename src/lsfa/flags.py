"""Command-line flags generated from the fields of a pydantic model: the flag of each field, its help line and
the parsing of ``--name value`` / ``--name=value`` / ``--flag`` / ``--no-flag`` into field values.

Why generated: a command whose options are a model's fields (``lsfa predict`` and ``lsfa evaluate`` take
:class:`lsfa.inference.options.InferenceOptions`) then gains a flag, with its help, whenever the model gains a
field, and cannot drift from it. Values are read as YAML scalars (numbers, booleans, null); the model validates
them. Torch-free, so a command's ``--help`` costs no model imports beyond the model class itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from lsfa.errors import LsfaError


class UnknownFlagError(LsfaError):
    """A flag that is no field of the model (a command shows it as a usage error, like any unknown option)."""


def flag_of(name: str) -> str:
    """``max_batch_tokens`` -> ``--max-batch-tokens``."""
    return "--" + name.replace("_", "-")


def model_flags(model: type[BaseModel], skip: Sequence[str] = ()) -> dict[str, str]:
    """Flag -> field name for every field of ``model`` but ``skip``."""
    return {flag_of(name): name for name in model.model_fields if name not in skip}


def flags_help(model: type[BaseModel], skip: Sequence[str] = (), defaults: Mapping[str, Any] | None = None) -> str:
    """One line per flag: the flag (``--pack / --no-pack`` for a boolean), the field's description, its default
    (``defaults`` where the command has its own, as `lsfa serve` does: the help shows what the command uses)."""
    lines = []
    for flag, name in model_flags(model, skip).items():
        field = model.model_fields[name]
        shown = f"{flag} / --no-{flag[2:]}" if field.annotation is bool else flag
        default = (defaults or {}).get(name, field.default)
        default = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        lines.append(f"  {shown:30s} {field.description or ''} (default: {default})")  # [...] is rich markup
    return "\n".join(lines)


def parse_flags(args: Sequence[str], model: type[BaseModel], skip: Sequence[str] = ()) -> dict[str, Any]:
    """``["--batch-size", "8", "--no-pack"]`` -> ``{"batch_size": 8, "pack": False}``; an unknown flag or a stray
    value is one :class:`LsfaError` listing the flags."""
    flags = model_flags(model, skip)
    values: dict[str, Any] = {}
    index = 0
    while index < len(args):
        name, has_inline, inline = args[index].partition("=")
        if name.startswith("--no-") and "--" + name[5:] in flags and not has_inline:
            values[flags["--" + name[5:]]] = False
            index += 1
            continue
        if name not in flags:
            raise UnknownFlagError(f"No such option: {name} (the run options are: {', '.join(flags)})")
        field = flags[name]
        if has_inline:
            values[field], index = _scalar(inline), index + 1
        elif model.model_fields[field].annotation is bool:
            values[field], index = True, index + 1
        elif index + 1 < len(args):
            values[field], index = _scalar(args[index + 1]), index + 2
        else:
            raise LsfaError(f"{name} needs a value")
    return values


def _scalar(text: str) -> Any:
    """A flag value as YAML reads it (``8`` a number, ``null`` nothing), else the text itself."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, int | float | bool) or value is None else text

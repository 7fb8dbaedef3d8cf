"""The one registry class behind the format table and the grid's systems."""

from __future__ import annotations

import pytest

from lsfa.data.formats import FORMATS, format_named
from lsfa.errors import LsfaError
from lsfa.experiments.systems import SYSTEMS
from lsfa.registry import Registry


def test_a_name_is_taken_once_and_an_unknown_one_lists_the_known() -> None:
    table: Registry[int] = Registry("widget")
    assert table.add("a", 1) == 1 and table.add("b", 2) == 2
    with pytest.raises(LsfaError, match="widget 'a' is already registered"):
        table.add("a", 3)
    assert table.named("b") == 2 and list(table) == ["a", "b"] and table["a"] == 1
    with pytest.raises(LsfaError, match="unknown widget 'c'; known widgets: a, b"):
        table.named("c")


def test_the_format_table_and_the_systems_are_registries() -> None:
    assert isinstance(FORMATS, Registry) and isinstance(SYSTEMS, Registry)
    assert next(iter(FORMATS)) == "conll"  # the fallback for unknown suffixes comes first
    with pytest.raises(LsfaError, match="unknown data format 'xml'; known data formats: conll"):
        format_named("xml")

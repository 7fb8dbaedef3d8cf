"""Fixtures for the prediction tests: tiny saved taggers (see ``tiny_taggers``), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inference.tiny_taggers import build_all


@pytest.fixture(scope="session")
def tiny_taggers(tmp_path_factory) -> dict[str, Path]:
    """Folders ``base`` (tiny llama), ``random``, ``lora`` (untrained) and ``rule`` (tags B*/C* words as PER)."""
    return build_all(tmp_path_factory.mktemp("taggers"))


@pytest.fixture(scope="session")
def rule_tagger(tiny_taggers):
    """The loaded rule tagger: "Bob Carter" is one PER entity wherever it stands."""
    from lsfa.inference.tagger import Tagger

    return Tagger.load(tiny_taggers["rule"], precision="fp32")

"""Fixtures shared by every test module."""

from __future__ import annotations

import sys

import pytest
import torch
from hypothesis import settings

# Hypothesis fails an example that takes over 200 ms: a timing assertion that a busy CI machine (or one core
# shared with a training job) trips on correct code. Property tests here check behaviour, never speed.
settings.register_profile("lsfa", deadline=None)
settings.load_profile("lsfa")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: tiny models gain nothing from more threads and run many times faster than when
    fighting over the cores. Per test, because library code under test (bench, train) may set the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _merged_cache_in_a_temporary_folder(tmp_path_factory):
    """Merged LoRA taggers (lsfa.models.merged_cache) are cached in a temporary folder, not the user's LSFA_HOME:
    a test run must not fill the real cache with the weights of test taggers."""
    from lsfa.models.merged_cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("merged-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_taggers(tmp_path_factory):
    """Folders ``base`` (tiny llama), ``random``, ``lora`` (untrained) and ``rule`` (tags B*/C* words as PER)."""
    from tests.inference.tiny_taggers import build_all

    return build_all(tmp_path_factory.mktemp("taggers"))


@pytest.fixture(scope="session")
def rule_tagger(tiny_taggers):
    """The loaded rule tagger: "Bob Carter" is one PER entity wherever it stands."""
    from lsfa.inference.tagger import Tagger

    return Tagger.load(tiny_taggers["rule"], precision="fp32")


@pytest.fixture
def run(monkeypatch, capsys):
    """Run the console entry point (so LsfaError handling is exercised): ``(exit code, stdout, stderr)``."""
    from lsfa.cli import main

    def invoke(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lsfa", *args])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke

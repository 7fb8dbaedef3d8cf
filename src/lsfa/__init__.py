"""lsfa: decoder-only LLMs as bidirectional token classifiers for NER and other sequence labelling.

The front door (imported lazily, so ``lsfa --help`` stays fast)::

    import lsfa
    tagger = lsfa.train("configs/main.yaml", epochs=1)   # or lsfa.train(model="smollm2-135m", corpus="conll2003")
    tagger("Peter Blackburn flew to Brussels.")          # [Entity(start=0, end=15, label='PER', ...), ...]
    tagger = lsfa.Tagger.load("runs/main/full/model")
    lsfa.evaluate(tagger, corpus="conll2003", split="test")["micro"]["f1"]

Layers, bottom to top (docs/architecture.md): core modules (errors, settings, precision, machine) <- ``data``
<- ``eval`` <- ``models`` <- ``inference`` <- ``training`` <- ``baselines`` <- ``experiments`` <- ``bench`` <-
``api`` (this front door) <- ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lsfa.version import __version__

_EXPORTS = {
    "Tagger": "lsfa.inference.tagger",
    "Entity": "lsfa.inference.tagger",
    "train": "lsfa.api",
    "evaluate": "lsfa.api",
    "TrainConfig": "lsfa.training.config",
    "load_config": "lsfa.training.config",
    "load_corpus": "lsfa.data.corpora",
    "set_attention": "lsfa.models.attention",
    "restore_attention": "lsfa.models.attention",
    "LsfaError": "lsfa.errors",
    "TimeLimitReached": "lsfa.training.time_limit",
}

__all__ = [
    "Entity",
    "LsfaError",
    "Tagger",
    "TimeLimitReached",
    "TrainConfig",
    "__version__",
    "evaluate",
    "load_config",
    "load_corpus",
    "restore_attention",
    "set_attention",
    "train",
]

if TYPE_CHECKING:  # for type checkers only: at run time __getattr__ imports each name on first use (no torch)
    from lsfa.api import evaluate, train
    from lsfa.data.corpora import load_corpus
    from lsfa.errors import LsfaError
    from lsfa.inference.tagger import Entity, Tagger
    from lsfa.models.attention import restore_attention, set_attention
    from lsfa.training.config import TrainConfig, load_config
    from lsfa.training.time_limit import TimeLimitReached


def __getattr__(name: str) -> Any:
    """Import the object behind ``lsfa.<name>`` on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lsfa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""The systems a grid can run, in one table: the token tagger (lsfa's own training run), the generative IFT
baseline and the spaCy peer. Each :class:`System` has a name, the mode label of its cells' folders and the
function that trains one cell.

Why one table: the grid checks a grid file's ``systems:`` against it, names its cells' folders from it and calls
a cell's function through it, so a new system to compare against is one function writing a run folder (in
:mod:`lsfa.baselines`) plus one :func:`register` call below, as a new data format is one module plus one line in
:mod:`lsfa.data.formats`.

A system's function is called as ``function(config, options, run_dir, log, deadline=...)`` and must write
``metrics.json`` in ``run_dir`` (:class:`lsfa.runs.RunFolder`); ``options`` are the extra keys of the grid's
entry. Past ``deadline`` (``time.time()`` scale, or None) it may stop at a saved checkpoint by raising
:class:`~lsfa.training.time_limit.TimeLimitReached`, and is then called again to resume.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsfa.registry import Registry
from lsfa.runs import CHECKPOINTS_DIR
from lsfa.training.config import TrainConfig

TrainCell = Callable[..., None]
"""``(config, options, run_dir, log, deadline=None) -> None``, writing ``run_dir/metrics.json``."""

TAGGER = "lsfa"
"""The token tagger's system name: a grid's model x mode x attention cells (``Cell.system``'s default)."""


@dataclass(frozen=True)
class System:
    """One system: its ``name``, the ``mode_label`` of its cells' folders (``<corpus>/<name>/<mode_label>/none``),
    and ``train``, the function that trains one cell, or its ``"module:function"`` path.

    Why a path is allowed: the baselines import torch, peft or spaCy (an optional extra) at the top, which reading
    a grid file, ``--dry-run`` and a grid that never runs them must not need; the path is imported on first call.
    ``peer``: listed under a grid's ``systems:`` (the token tagger is not: its cells come from the model, mode and
    attention axes).
    """

    name: str
    mode_label: str
    train: TrainCell | str
    description: str
    peer: bool = True

    def function(self) -> TrainCell:
        """The training function, imported now if it was given by path."""
        if not isinstance(self.train, str):
            return self.train
        module, _, name = self.train.partition(":")
        return getattr(importlib.import_module(module), name)

    def run(self, config: TrainConfig, options: dict[str, Any], run_dir: Path, log: Callable[[str], None],
            deadline: float | None = None) -> None:  # fmt: skip
        """Train one cell of this system into ``run_dir``."""
        self.function()(config, options, run_dir, log, deadline=deadline)


SYSTEMS: Registry[System] = Registry("system")
"""Every registered system by name, in registration order."""


def register(system: System) -> System:
    """Add a system; a name already taken is refused (a grid's cells must mean one thing)."""
    return SYSTEMS.add(system.name, system)


def system_named(name: str) -> System:
    """The system called ``name``, or an error listing the others."""
    return SYSTEMS.named(name)


def peer_names() -> list[str]:
    """The systems a grid file may list under ``systems:``."""
    return [name for name, system in SYSTEMS.items() if system.peer]


def train_tagger(
    config: TrainConfig, options: dict[str, Any], run_dir: Path, log: Callable[[str], None],
    deadline: float | None = None,
) -> None:  # fmt: skip
    """The token tagger's cell: one :func:`lsfa.training.runner.train` run, resumed from its last checkpoint when
    an earlier one was cut short (``options`` are unused: a tagger cell's settings are its config)."""
    from lsfa.training import runner  # torch and transformers: not for reading grid files or --dry-run

    runner.train(config, resume=(Path(run_dir) / CHECKPOINTS_DIR).is_dir(), log=log, deadline=deadline)


register(System(TAGGER, "", train_tagger, "lsfa token tagger (the grid's models x modes x attention)", peer=False))
register(System("spacy", "tok2vec", "lsfa.baselines.spacy_peer:train_spacy", "spaCy tok2vec NER peer"))
register(System("ift", "lora", "lsfa.baselines.ift_train:train_ift", "generative IFT baseline with LoRA"))

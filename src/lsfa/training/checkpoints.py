"""Checkpoints and resume: which ``checkpoint-N`` folders are complete, where a run would resume, and how a
resumed run continues (or, when its training had already ended, is only restored).

A checkpoint counts once its ``trainer_state.json``, which the Trainer writes last, parses; a kill mid-write
leaves an incomplete folder that :func:`last_complete_checkpoint` removes. The grid's dry run and the IFT
baseline read these functions too, so they live apart from the run itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerState

from lsfa.models.classifier import quiet_transformers
from lsfa.runs import CHECKPOINTS_DIR
from lsfa.training.callbacks import EpochTimer


def trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """A checkpoint's ``trainer_state.json`` (written last, so it also marks the checkpoint complete), or None
    when it is missing or cut short."""
    try:
        return json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def checkpoint_is_complete(folder: Path) -> bool:
    """A checkpoint counts only once its ``trainer_state.json`` (written last) parses."""
    return trainer_state(folder) is not None


def _checkpoints(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """The run's ``checkpoint-N`` folders by step: (complete ones, incomplete ones)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return [], []
    found = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]),
    )
    complete = [p for p in found if checkpoint_is_complete(p)]
    return complete, [p for p in found if p not in complete]


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N``; incomplete ones (a kill mid-write) are removed."""
    complete, partial = _checkpoints(run_dir)
    for folder in partial:
        shutil.rmtree(folder, ignore_errors=True)
    return complete[-1] if complete else None


def resume_point(run_dir: Path) -> dict[str, Any] | None:
    """Where an unfinished run would resume: the newest complete checkpoint's ``step``, ``max_steps`` and
    ``epoch`` (None without one). Read-only, unlike :func:`last_complete_checkpoint`: a dry run may look at a
    run another process is writing."""
    complete, _ = _checkpoints(run_dir)
    if not complete:
        return None
    state = trainer_state(complete[-1]) or {}
    return {"step": state.get("global_step"), "max_steps": state.get("max_steps"), "epoch": state.get("epoch")}


def stopped_at(checkpoint: Path | None) -> int | None:
    """The step at which training had already ended when ``checkpoint`` was saved (early stopping, or the last
    step), or None while it was still going.

    Why: a run killed after training (while it predicted dev and test) is resumed from its last checkpoint, and
    the Trainer clears its stop flag at the start of every ``train()``: an early-stopped run would then train on
    past its stop and could select another epoch. Capping ``max_steps`` at this step makes the resumed
    ``train()`` only restore the selected checkpoint, as the uninterrupted run ended.
    """
    if checkpoint is None:
        return None
    state = trainer_state(checkpoint) or {}
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
    return int(state["global_step"]) if control.get("should_training_stop") else None


def resume_from(trainer, checkpoint: Path | None, timer: EpochTimer, log) -> str | None:
    """Prepare ``trainer`` and ``timer`` to continue from ``checkpoint``; returns the path ``train()`` takes.

    The timer continues its saved record; a run whose training had ended trains no further (:func:`stopped_at`).
    """
    if checkpoint is None:
        return None
    if not timer.restore(checkpoint):
        log(f"note: {checkpoint.name} has no timing record: the time before it is not counted")
    stopped = stopped_at(checkpoint)
    if stopped is not None:
        trainer.args.max_steps = stopped
        log(f"note: training had ended at step {stopped}; the resumed run only restores the selected checkpoint")
    return str(checkpoint)


def train_or_restore(trainer, checkpoint: Path | None, timer: EpochTimer, log) -> int:
    """Train (from ``checkpoint`` when resuming) and return the final global step; a run whose training had
    already ended at ``checkpoint`` (killed while it saved or predicted) is restored instead, not trained.

    Why not ``train()`` capped at the stop: resumed mid-epoch (``max_steps`` or a train-time budget inside an
    epoch), the Trainer skips the epoch's steps already run and then takes one more before it checks the cap,
    so a run of 40 steps became one of 41, with a ``checkpoint-41`` and an extra ``epoch_log`` entry. Restoring
    makes the resume idempotent: the same weights, step and record as the run would have finished with.
    """

    ended = stopped_at(checkpoint)
    if checkpoint is not None and ended is not None:
        log(f"note: training had ended at step {ended}; the resumed run only restores the selected checkpoint")
        return restore_ended_run(trainer, checkpoint, timer, log)
    resume_path = resume_from(trainer, checkpoint, timer, log)
    with quiet_transformers():  # transformers' own deprecation notes are not the user's business
        return trainer.train(resume_from_checkpoint=resume_path).global_step


def restore_ended_run(trainer, checkpoint: Path, timer: EpochTimer, log) -> int:
    """Load the state and the selected weights a finished training left in ``checkpoint``, without a step.

    The selected checkpoint is found by name beside ``checkpoint`` (the run folder may have moved since)."""

    if not timer.restore(checkpoint):
        log(f"note: {checkpoint.name} has no timing record: the time before it is not counted")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    best_here = checkpoint.parent / Path(best).name if best else None
    if trainer.args.load_best_model_at_end and best_here is not None and best_here.is_dir():
        trainer.state.best_model_checkpoint = str(best_here)
        trainer._load_best_model()
    else:
        trainer._load_from_checkpoint(str(checkpoint))
    return int(trainer.state.global_step)

"""Timing and the Trainer callbacks every lsfa training run (tagger or IFT) uses.

:class:`EpochTimer` records each epoch's wall time into every checkpoint so that a resumed run still reports
all of them; :func:`run_callbacks` is the one list of callbacks (timer, resume checkpoints, early stopping, the
train-time budget and the session deadline); :func:`timing_record` turns the timer's facts into the timing keys
of ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback

from lsfa.runs import epoch_timing, epochs_run, write_json_atomic
from lsfa.training.config import TrainConfig
from lsfa.training.time_limit import time_limit_callback, train_time_callback

TIMING_FILE = "lsfa_timing.json"
"""The :class:`EpochTimer` record saved inside every checkpoint, so a resumed run still reports each epoch."""


def save_timing(checkpoint: Path, snapshot: dict[str, Any]) -> None:
    """Write the timer's record into a checkpoint the Trainer has just completed. If that fails (no space
    left), the checkpoint's ``trainer_state.json`` is removed before the error goes on, so a later ``--resume``
    does not trust a checkpoint that lacks part of its record."""
    try:
        write_json_atomic(checkpoint / TIMING_FILE, snapshot)
    except BaseException:
        (checkpoint / "trainer_state.json").unlink(missing_ok=True)
        raise


class EpochTimer:
    """Trainer callback recording wall time per epoch and the dev metrics after each one.

    Its record is written into every checkpoint (:data:`TIMING_FILE`) and read back by :meth:`restore`, so a
    run killed and resumed (a session limit, a pre-empted node) reports the time of every epoch, including the
    part of an epoch run before a mid-epoch checkpoint, and not only what the last process timed.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.seconds_before_resume = 0.0  # training seconds of the processes before this one
        self._epoch_start: float | None = None  # set while inside an epoch
        self._carried_epoch_seconds = 0.0  # part of the current epoch run before a resume
        self._train_start = time.perf_counter()
        timer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer._train_start = time.perf_counter()

            def on_epoch_begin(self, args, state, control, **kwargs):
                timer._epoch_start = time.perf_counter() - timer._carried_epoch_seconds
                timer._carried_epoch_seconds = 0.0

            def on_epoch_end(self, args, state, control, **kwargs):
                timer.epochs.append({"epoch": state.epoch, "seconds": time.perf_counter() - timer._epoch_start})
                timer._epoch_start = None

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if timer.epochs and metrics:
                    timer.epochs[-1].update({k: v for k, v in metrics.items() if k.startswith("eval_")})

            def on_save(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                    if folder.is_dir():
                        save_timing(folder, timer.snapshot())

        self.callback = _Callback()

    @property
    def train_seconds(self) -> float:
        """Training wall time so far, over every process of a resumed run."""
        return self.seconds_before_resume + time.perf_counter() - self._train_start

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint keeps: the finished epochs, the time into the current one, the total so far."""
        into_epoch = time.perf_counter() - self._epoch_start if self._epoch_start is not None else 0.0
        return {"epochs": self.epochs, "epoch_seconds": into_epoch, "train_seconds": self.train_seconds}

    def restore(self, checkpoint: Path | None) -> bool:
        """Continue the record saved in ``checkpoint``; False when there is none (a checkpoint from before
        timings were saved: the epochs run before it then go untimed)."""
        try:
            saved = json.loads((Path(checkpoint) / TIMING_FILE).read_text()) if checkpoint else None
        except (OSError, json.JSONDecodeError):
            saved = None
        if not saved:
            return False
        self.epochs = list(saved["epochs"])
        self._carried_epoch_seconds = float(saved["epoch_seconds"])
        self.seconds_before_resume = float(saved["train_seconds"])
        return True


def resume_checkpoints(every_steps: int):
    """A callback that also saves a checkpoint every ``every_steps`` optimiser steps, between the epoch-end ones.
    A killed run then loses at most that many steps; evaluation and model selection stay as they were, and the
    Trainer's rotation keeps the best checkpoint beside the newest one."""

    class _SaveEvery(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every_steps == 0:
                control.should_save = True

    return _SaveEvery()


def run_callbacks(config: TrainConfig, timer: EpochTimer, deadline: float | None = None) -> list[Any]:
    """The callbacks of every lsfa training run (tagger or IFT): the epoch timer, resume checkpoints every
    ``checkpoint_steps`` steps when set, early stopping when ``early_stopping_patience`` is set, and a stop at
    a saved checkpoint past ``deadline`` (:mod:`lsfa.training.time_limit`; last, so the timer has saved first)."""
    callbacks = [timer.callback]
    if config.checkpoint_steps:
        callbacks.append(resume_checkpoints(config.checkpoint_steps))
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    if config.max_train_time:
        callbacks.append(train_time_callback(timer, config.max_train_time))
    if deadline is not None:
        callbacks.append(time_limit_callback(deadline))
    return callbacks


def stopped_by_train_time(callbacks: Sequence[Any]) -> int | None:
    """The step at which ``max_train_time`` ended training, or None when the schedule ran its course."""
    return next((c.stopped_at for c in callbacks if getattr(c, "stopped_at", None) is not None), None)


def timing_record(facts: dict[str, Any]) -> dict[str, Any]:
    """The timing keys of a run's ``metrics.json`` (steps, epochs, seconds, tokens per second, the ranks'
    agreement), from the facts the run gathered; the tagger and the IFT baseline write the same keys."""
    epochs = facts["epochs"]
    tokens = facts["train_tokens"] * epochs_run(epochs)
    return {
        "global_step": facts["global_step"],
        "best_checkpoint": facts["best_checkpoint"],
        "stopped_by_max_train_time": facts.get("stopped_by_max_train_time"),
        **epoch_timing(epochs, facts["train_seconds"], tokens, facts["wall_start"]),
        "ranks": facts["ranks"],
        "train_batching": facts.get("batching"),
    }

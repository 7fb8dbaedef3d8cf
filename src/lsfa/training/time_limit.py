"""A wall-clock limit on training: stop at a saved checkpoint before a scheduler or a session ends the process.

Why: a job on a shared machine, a SLURM allocation or a notebook session has a fixed time; killed from outside
(``timeout``, the scheduler), a run loses everything since its last checkpoint and may die while writing one.
With ``--time-limit`` the run saves a checkpoint at the first optimiser step past its deadline and stops
there; the same command resumes it (``lsfa train --resume``, or ``lsfa experiment run`` again). The
checkpoint is an ordinary mid-epoch one: evaluation, early stopping and model selection are unchanged, and
the stop is not recorded as the end of training (a resumed run trains on).

The limit bounds training steps only: a dev evaluation under way, and the prediction of dev and test after
training, finish before the process exits, so leave them a margin.
"""

from __future__ import annotations

import re
import time

from lsfa.errors import LsfaError

EXIT_TIME_LIMIT = 75
"""Exit status of a command stopped by its time limit (sysexits' EX_TEMPFAIL: "try again"), so that a job
script can tell "resume me" from success (0) and failure (1, 2)."""

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class TimeLimitReached(Exception):  # not an LsfaError: the run stopped as asked and can be resumed
    """Training stopped at its deadline after saving a checkpoint at ``step`` (of ``max_steps``)."""

    def __init__(self, step: int, max_steps: int | None = None):
        self.step = step
        self.max_steps = max_steps
        of = f" of {max_steps}" if max_steps else ""
        super().__init__(f"time limit reached: checkpoint saved at step {step}{of}; run the same command to resume")


def parse_duration(text: str | float | int | None, option: str = "--time-limit") -> float | None:
    """Seconds from ``"115m"``, ``"2h"``, ``"1h30m"``, ``"90s"`` or a plain number of seconds; None for None.

    Raises :class:`LsfaError` naming ``option`` for anything else or for a limit that is not positive.
    """
    if text is None:
        return None
    value = str(text).strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if not value or match is None:
            raise LsfaError(f"{option} {text!r}: expected a duration such as 115m, 2h, 1h30m, 90s or seconds") from None
        hours, minutes, secs = (float(part) if part else 0.0 for part in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    if seconds <= 0:
        raise LsfaError(f"{option} {text!r}: the limit must be positive")
    return seconds


def deadline_after(seconds: float | None) -> float | None:
    """The wall-clock deadline ``seconds`` from now (``time.time()`` scale), or None without a limit."""
    return None if seconds is None else time.time() + seconds


def time_limit_callback(deadline: float):
    """A Trainer callback: at the first step end past ``deadline``, save a checkpoint, then raise
    :class:`TimeLimitReached` once it is written (``on_save`` runs after the trainer state is saved, and after
    the epoch timer's record, which comes earlier in the callback list).

    With several processes (DDP) the ranks agree on the step: rank 0's clock decides and is broadcast, else
    one rank could stop while the others wait in a collective for it.
    """
    from transformers import TrainerCallback

    class _TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.stopping = False

        def on_step_end(self, args, state, control, **kwargs):
            if _past(deadline, args.world_size):
                self.stopping = True
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            if self.stopping:
                raise TimeLimitReached(state.global_step, state.max_steps)

    return _TimeLimit()


def train_time_callback(timer, seconds: float):
    """A Trainer callback that *ends* training once ``timer.train_seconds`` reaches ``seconds`` (``max_train_time``).

    Unlike the deadline above, which pauses a run to be resumed, this is part of the schedule: a run that must
    finish inside a budget (a cell on a machine that may be gone tomorrow) stops at the first step past it, the
    state reached is evaluated on dev like any other (at the epoch end the stop causes, or at the step under a
    step-wise evaluation), and the best checkpoint on dev is what the run keeps and scores, as with
    ``max_steps``. ``stopped_at`` records the step (None while within budget).
    """
    from transformers import TrainerCallback

    class _MaxTrainTime(TrainerCallback):
        def __init__(self) -> None:
            self.stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_training_stop or not _agreed(timer.train_seconds >= seconds, args.world_size):
                return
            self.stopped_at = state.global_step
            control.should_training_stop = True
            # The loop then ends the epoch, which evaluates and saves under per-epoch strategies; per-step
            # strategies need it asked for here (as the Trainer does itself when max_steps is reached).
            if args.eval_strategy == "steps":  # str enums: IntervalStrategy.STEPS == "steps"
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True

    return _MaxTrainTime()


def _past(deadline: float, world_size: int) -> bool:
    """Whether the deadline has passed, by rank 0's clock when several processes train together."""
    return _agreed(time.time() >= deadline, world_size)


def _agreed(flag: bool, world_size: int) -> bool:
    """Rank 0's ``flag`` on every rank when several processes train together (each rank's own otherwise)."""
    if world_size <= 1:
        return flag
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    decided = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(decided, src=0)
    return bool(decided.item())

"""The run folder every training job writes, whatever it trains (LS tagger, IFT baseline, spaCy peer):

    RUN/config.yaml          the resolved config (written first)
    RUN/checkpoints/         Trainer checkpoints, for --resume
    RUN/model/               the selected model
    RUN/predictions/SPLIT.*  dev and test predictions
    RUN/metrics.json         the record of the run (written last, atomically: its presence means "finished")

One skeleton for all of them: the file names as constants, preparing (or resuming) a folder, atomic writes,
the machine and commit a run came from, timing per epoch, and :class:`RunMetrics`, the typed record of
``metrics.json`` that grids and reports read.

One writer per folder: a process claims a run folder by creating ``RUN/running.lock`` exclusively (its
``host:pid`` inside), ``lsfa train`` for its whole run and ``lsfa experiment run`` per cell. A second writer is
refused, so it can neither overwrite the first one's results nor delete the checkpoint it is writing. A lock
whose process is gone (same host, dead pid) is stale and taken over, so a killed run does not block its folder.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lsfa.errors import LsfaError, WriteError, cannot_write, writing
from lsfa.machine import cpu_model, machine_summary
from lsfa.version import __version__

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
PREDICTIONS_DIR = "predictions"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = "running.lock"


class Scores(BaseModel):
    """Span scores: micro precision, recall, F1 (and support where counted)."""

    model_config = ConfigDict(extra="allow")
    precision: float
    recall: float
    f1: float


class SplitResult(BaseModel):
    """One split's evaluation: strict micro scores (``micro``) or set-based ones (``set``), and the rest."""

    model_config = ConfigDict(extra="allow")
    micro: Scores | None = None
    set: Scores | None = None
    ms_per_sentence: float | None = None  # batched throughput: the split's tagging time / its sentences
    latency_ms: dict[str, Any] | None = None  # one sentence at a time: mean, std, ... (lsfa.inference.latency)


class RunMetrics(BaseModel):
    """The typed record of ``metrics.json``: what every run writes and every report reads. Extra keys (error
    taxonomy, decoding columns, baseline-specific facts) are kept as they are."""

    model_config = ConfigDict(extra="allow")
    config: dict[str, Any] = Field(default_factory=dict)
    dev: SplitResult | None = None
    test: SplitResult | None = None
    machine: dict[str, Any] = Field(default_factory=dict)
    train_seconds_per_epoch: list[float] = Field(default_factory=list)
    mean_epoch_seconds: float | None = None
    epochs_run: float | None = None  # spaCy counts fractional passes over the training words

    @classmethod
    def read(cls, path: str | Path) -> RunMetrics:
        """A run's record from its folder or its ``metrics.json``; unreadable files are one clear error."""
        path = Path(path)
        file = path / METRICS_FILE if path.is_dir() else path
        try:
            return cls.model_validate(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as error:
            raise LsfaError(f"{file}: not a readable run record ({error})") from None


class RunFolder:
    """The folder of one run: paths by role, preparing it, and writing its record last."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def predictions(self, split: str, suffix: str = "conll") -> Path:
        folder = self.path / PREDICTIONS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{split}.{suffix}"

    @property
    def finished(self) -> bool:
        """A run is finished once its record exists (it is written last)."""
        return self.metrics.exists()

    def prepare(self, resume: bool) -> RunFolder:
        """Create the folder; refuse to overwrite a finished run unless resuming."""
        if self.finished and not resume:
            raise LsfaError(
                f"{self.path}: a finished run is already there; choose another --output-dir or pass --resume"
            )
        ensure_writable(self.path)
        return self

    @contextmanager
    def hold(self) -> Iterator[RunFolder]:
        """Hold this folder's lock for the block: checks it is writable first (before any model is loaded),
        refuses a second writer in one line, and releases the lock at the end. A lock this process already
        holds (a grid claims its cell, then trains it) is kept, and left for its taker to release."""
        ensure_writable(self.path)
        holder = claim_folder(self.path)
        if holder == lock_owner():
            yield self
            return
        if holder is not None:
            raise LsfaError(
                f"{self.path}: another lsfa process ({holder}) is writing this run; wait for it to end or "
                "choose another --output-dir"
            )
        try:
            yield self
        finally:
            release_folder(self.path)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Validate the record against :class:`RunMetrics`, then write it atomically."""
        RunMetrics.model_validate(json.loads(json.dumps(metrics, default=str)))
        write_json_atomic(self.metrics, metrics)


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and check a file can be written in it, so a read-only or missing
    output location fails at once, in one line, not after the model has loaded and trained."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{folder}: cannot write (not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".lsfa-write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise cannot_write(folder, error) from None
    return folder


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file; a failed write
    leaves neither half a file nor its temporary behind."""
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        try:
            tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def lock_owner() -> str:
    """This process as a lock names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_alive(owner: str) -> bool:
    """Whether a lock's ``host:pid`` may still be running (always True for another host: we cannot tell)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_folder(folder: str | Path) -> str | None:
    """Claim a run folder for this process: None when claimed, else the ``host:pid`` holding it (this
    process's own when it holds it already). A lock of a dead process is taken over."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = lock.read_text().strip()
                age = time.time() - lock.stat().st_mtime
            except OSError:
                continue  # released meanwhile: try again
            if (owner and lock_alive(owner)) or (not owner and age < 60):
                return owner or "a process still writing its lock"
            lock.unlink(missing_ok=True)  # stale: its process is gone, take it over
            continue
        except OSError as error:
            raise cannot_write(lock, error) from None
        with os.fdopen(handle, "w") as stream:
            stream.write(lock_owner() + "\n")
        return None
    return "unknown (the lock could not be taken)"


def release_folder(folder: str | Path) -> None:
    """Remove this process's claim on a folder (another process's lock is left alone)."""
    lock = Path(folder) / LOCK_FILE
    try:
        if lock.read_text().strip() == lock_owner():
            lock.unlink()
    except OSError:
        pass


def lock_holder(folder: str | Path) -> str | None:
    """The live ``host:pid`` holding a folder's lock, or None (no lock, or a stale one). Read-only."""
    try:
        owner = (Path(folder) / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return owner if owner and lock_alive(owner) else None


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CUDA: peak allocated) in MiB."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info() -> dict[str, Any]:
    """Where a run happened (CPU model and flags, threads, GPU, versions, commit), recorded with its numbers."""
    return {
        "platform": platform.platform(),
        "processor": cpu_model(),
        **machine_summary(measure_bf16=False),
        "lsfa": __version__,
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The short commit of the lsfa checkout running, ``-dirty`` with uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=here,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def epochs_run(epochs: list[dict[str, Any]]) -> float | int:
    """How many epochs a timer's record reaches: its last entry's ``epoch`` (the Trainer's count, fractional when
    training ended inside an epoch, e.g. 2.43), or the number of entries when they carry no count."""
    if not epochs:
        return 0
    last = epochs[-1].get("epoch")
    if last is None:
        return len(epochs)
    return round(last) if abs(last - round(last)) < 1e-6 else round(last, 4)


def _epoch_fraction(entry: dict[str, Any]) -> float:
    """The share of an epoch a timer entry covers: 1 for an epoch run to its end, the part run for a cut one."""
    epoch = entry.get("epoch")
    part = 0.0 if epoch is None else epoch - round(epoch)
    return 1.0 if abs(part) < 1e-6 else part % 1.0


def epoch_timing(
    epochs: list[dict[str, Any]], train_seconds: float, train_tokens: int, wall_start: float
) -> dict[str, Any]:
    """The timing keys every run records: seconds per epoch and their mean, tokens per second, peak memory.

    A last epoch cut short (``max_train_time``, ``max_steps``) counts as the part of it that ran, so the mean
    stays seconds per whole epoch.
    """
    covered = sum(_epoch_fraction(entry) for entry in epochs)
    return {
        "epochs_run": epochs_run(epochs),
        "epoch_log": epochs,
        "train_seconds": train_seconds,
        "train_seconds_per_epoch": [e["seconds"] for e in epochs],
        "mean_epoch_seconds": sum(e["seconds"] for e in epochs) / covered if covered else None,
        "train_tokens_per_second": train_tokens / train_seconds if train_seconds > 0 else None,
        "peak_memory_mb": peak_memory_mb(),
        "wall_seconds": time.perf_counter() - wall_start,
    }

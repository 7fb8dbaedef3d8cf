"""The shared run skeleton: folder roles, refusing to overwrite a finished run, and the typed record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsfa.errors import LsfaError
from lsfa.runs import METRICS_FILE, RunFolder, RunMetrics, epoch_timing, machine_info

RECORD = {"config": {"model": "m"}, "dev": {"micro": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}},
          "test": {"set": {"precision": 1.0, "recall": 0.5, "f1": 0.6667}}, "machine": {"cpu_model": "x"},
          "errors": {"exact_matches": 1}}  # fmt: skip


def test_a_finished_run_is_not_overwritten_unless_resuming(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run").prepare(resume=False)
    assert not folder.finished and folder.predictions("dev").parent.is_dir()
    folder.write_metrics(RECORD)
    assert folder.finished and not list(folder.path.glob("*.tmp"))
    with pytest.raises(LsfaError, match="a finished run is already there"):
        RunFolder(tmp_path / "run").prepare(resume=False)
    assert RunFolder(tmp_path / "run").prepare(resume=True).finished


def test_the_record_is_typed_and_keeps_extra_keys(tmp_path: Path) -> None:
    RunFolder(tmp_path).write_metrics(RECORD)
    metrics = RunMetrics.read(tmp_path)
    assert metrics.dev.micro.f1 == 0.5 and metrics.test.set.recall == 0.5 and metrics.test.micro is None
    assert metrics.model_dump()["errors"] == {"exact_matches": 1}
    with pytest.raises(Exception, match="f1"):
        RunFolder(tmp_path / "bad").prepare(False).write_metrics({"dev": {"micro": {"precision": 1, "recall": 1}}})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / METRICS_FILE).write_text("{not json")
    with pytest.raises(LsfaError, match="not a readable run record"):
        RunMetrics.read(tmp_path / "broken")


def test_committed_grid_records_still_read(tmp_path: Path) -> None:
    """Every metrics.json committed under docs/results reads as a RunMetrics (the reports depend on it)."""
    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    files = [p for p in root.rglob(METRICS_FILE) if "checkpoints" not in p.parts]
    assert files
    for path in files:
        RunMetrics.read(path)


def test_timing_and_machine_facts() -> None:
    timing = epoch_timing([{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.0}], 6.0, 600, wall_start=0.0)
    assert timing["mean_epoch_seconds"] == 3.0 and timing["train_tokens_per_second"] == 100.0
    assert timing["train_seconds_per_epoch"] == [2.0, 4.0] and timing["epochs_run"] == 2
    machine = machine_info()
    assert {"cpu_model", "cpu_flags", "cpu_capability", "torch", "lsfa", "git_commit"} <= set(machine)
    json.dumps(machine)


def test_an_epoch_cut_short_counts_as_the_part_that_ran() -> None:
    """max_train_time (or max_steps) can end training inside an epoch: 1.5 epochs in 15 s is 10 s an epoch."""
    timing = epoch_timing([{"epoch": 1.0, "seconds": 10.0}, {"epoch": 1.5, "seconds": 5.0}], 15.0, 1500, 0.0)
    assert timing["epochs_run"] == 1.5 and timing["mean_epoch_seconds"] == pytest.approx(10.0)
    only_part = epoch_timing([{"epoch": 0.25, "seconds": 3.0}], 3.0, 300, 0.0)
    assert only_part["epochs_run"] == 0.25 and only_part["mean_epoch_seconds"] == pytest.approx(12.0)
    assert epoch_timing([{"seconds": 2.0}], 2.0, 200, 0.0)["epochs_run"] == 1, "entries without a count"


def test_a_held_folder_refuses_a_second_writer_and_is_released(tmp_path: Path) -> None:
    """One writer per run folder (issue #37 item 1): another live process's lock refuses, ours is released."""
    import os
    import socket

    from lsfa.runs import LOCK_FILE, claim_folder, lock_owner

    run = RunFolder(tmp_path / "run")
    with run.hold():
        assert (run.path / LOCK_FILE).read_text().strip() == lock_owner()
    assert not (run.path / LOCK_FILE).exists()
    assert claim_folder(run.path) is None  # a grid claims its cell, then trains it: the hold is ours already
    with run.hold():
        pass
    assert (run.path / LOCK_FILE).exists(), "left for the grid, which took it, to release"
    other = f"{socket.gethostname()}:{os.getppid()}"
    (run.path / LOCK_FILE).write_text(other + "\n")
    with pytest.raises(LsfaError, match=rf"another lsfa process \({other}\) is writing this run"), run.hold():
        pytest.fail("entered a folder another process holds")
    assert (run.path / LOCK_FILE).read_text().strip() == other


def test_an_unwritable_folder_is_one_error_and_a_failed_record_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from lsfa.errors import WriteError
    from lsfa.runs import ensure_writable

    (tmp_path / "file").write_text("x\n")
    with pytest.raises(WriteError, match=r"file/run: cannot write \(Not a directory\)"):
        RunFolder(tmp_path / "file" / "run").prepare(resume=False)
    with pytest.raises(WriteError, match=r"file: cannot write \(not a folder\)"):
        ensure_writable(tmp_path / "file")
    folder = RunFolder(tmp_path / "run").prepare(resume=False)

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(WriteError, match=r"metrics.json: cannot write \(No space left on device\)"):
        folder.write_metrics(RECORD)
    assert not folder.finished and not list(folder.path.iterdir()), "no record and no temporary file"

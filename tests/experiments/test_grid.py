"""``lsfa experiment run``: grid expansion, resume, failure recording, peers, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from lsfa.errors import LsfaError
from lsfa.experiments import grid as grid_module
from lsfa.experiments.grid import expand_cells, layer_group_patterns, load_grid, parse_grid, run_grid, safe_name
from lsfa.experiments.systems import SYSTEMS, TAGGER, System, register
from lsfa.models.attention import parse_attention
from tests.training.synthetic import tiny_grid_file

BASE = {"epochs": 1, "learning_rate": 2.0e-4}


def _grid(**axes) -> dict:
    return {**BASE, "output_dir": "out", **axes}


# --- layer patterns ----------------------------------------------------------------------------------
def test_layer_group_patterns_cover_all_sixteen_from_causal_to_full() -> None:
    patterns = layer_group_patterns(4)
    assert len(patterns) == len(set(patterns)) == 16
    assert patterns[0] == "groups=4:0000" and patterns[-1] == "groups=4:1111"
    assert parse_attention(patterns[0], 8).bidirectional_layers(8) == ()
    assert parse_attention(patterns[-1], 8).bidirectional_layers(8) == tuple(range(8))
    assert parse_attention("groups=4:1010", 8).bidirectional_layers(8) == (0, 1, 4, 5)


def test_layer_group_patterns_can_name_the_ends() -> None:
    patterns = layer_group_patterns(4, named_ends=True)
    assert patterns[0] == "causal" and patterns[-1] == "full"
    assert "groups=4:0110" in patterns


def test_layer_groups_shorthand_expands_in_the_attention_axis() -> None:
    spec = parse_grid(_grid(models=["m"], attention=["full", "layer-groups:2"]))
    assert spec.attention == ["full", "groups=2:00", "groups=2:01", "groups=2:10", "groups=2:11"]
    keys = [cell.key for cell in expand_cells(spec)]
    assert "conll2003/m/lora/groups2-01/seed42" in keys


def test_safe_names_match_lsfa_compare_folders() -> None:
    assert safe_name("groups=4:1010") == "groups4-1010"
    assert safe_name("0-7,24-29") == "0-7_24-29"
    assert safe_name("a b/c") == "a_b_c"


# --- expansion -----------------------------------------------------------------------------------------
def test_grid_expands_models_modes_attention_corpora_seeds_and_systems() -> None:
    spec = parse_grid(
        _grid(
            corpora=["conll2003", "bc5cdr"],
            seeds=[1, 2],
            models=["smollm2-135m", {"name": "minilm-l6", "modes": ["full"]}],
            attention=["causal", "full"],
            modes=[
                {"name": "lora-r8", "mode": "lora", "lora": {"r": 8}},
                {"name": "full", "mode": "full", "learning_rate": 5.0e-5},
            ],
            systems=["spacy"],
        )
    )
    cells = expand_cells(spec)
    # per corpus and seed: decoder 2 modes x 2 attentions + encoder 1 mode x 1 attention + spacy
    assert len(cells) == 2 * 2 * (4 + 1 + 1)
    encoder = [c for c in cells if c.model == "minilm-l6"]
    assert {c.attention for c in encoder} == {"full"}, "catalogue encoders get only attention full"
    lora = next(c for c in cells if c.mode == "lora-r8")
    assert lora.config.lora.r == 8 and lora.config.lora.alpha == 64 and lora.config.learning_rate == 2.0e-4
    full = next(c for c in cells if c.mode == "full" and c.model == "smollm2-135m")
    assert full.config.finetune == "full" and full.config.learning_rate == 5.0e-5
    first = cells[0]
    assert first.key == "conll2003/smollm2-135m/lora-r8/causal/seed1"
    assert first.config.output_dir == str(Path("out") / first.key)
    spacy = [c for c in cells if c.system == "spacy"]
    assert [c.key for c in spacy[:2]] == ["conll2003/spacy/tok2vec/none/seed1", "conll2003/spacy/tok2vec/none/seed2"]


def test_model_overrides_beat_mode_overrides() -> None:
    spec = parse_grid(
        _grid(
            models=[{"name": "mpnet-base", "learning_rate": 3.0e-5}],
            modes=[{"name": "full", "mode": "full", "learning_rate": 5.0e-5}],
        )
    )
    (cell,) = expand_cells(spec)
    assert cell.config.learning_rate == 3.0e-5


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (_grid(models=["m"], modes=[{"name": "x", "mode": "lora"}], bogus=1), "bogus"),
        (_grid(models=[{"name": "m", "modes": ["nope"]}]), "nope"),
        (_grid(systems=["crf"]), "unknown system 'crf'"),
        (_grid(model="a", models=["b"]), "'models'"),
        (_grid(models=["/x/m", "/y/m"]), "share the folder"),
        (_grid(modes=[{"name": "x", "mode": "qlora"}]), "modes"),
        (_grid(attention=["layer-groups:x"]), "layer-groups:"),
    ],
)
def test_bad_grids_are_user_errors(grid: dict, message: str) -> None:
    with pytest.raises(LsfaError, match=message):
        expand_cells(parse_grid(grid, source="g.yaml"))


def test_load_grid_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("models: [m]\nlearning_rate: -1\n")
    with pytest.raises(LsfaError, match=r"g\.yaml.*learning_rate"):
        load_grid(path)


def test_only_selects_cells_by_glob_or_substring() -> None:
    cells = expand_cells(parse_grid(_grid(corpora=["a", "b"], models=["m"], attention=["causal", "full"])))
    assert [c.key for c in grid_module.select_cells(cells, "b/*/*/full/*")] == ["b/m/lora/full/seed42"]
    assert len(grid_module.select_cells(cells, "causal")) == 2


def test_dry_run_lists_cells_and_writes_nothing(tmp_path: Path) -> None:
    spec = parse_grid(_grid(models=["m"], attention=["causal", "full"], output_dir=str(tmp_path / "g")))
    lines: list[str] = []
    outcome = run_grid(spec, dry_run=True, log=lines.append)
    assert len(outcome.cells) == 2 and not outcome.trained and not outcome.failed
    assert any("to run" in line and "attention causal" in line for line in lines)
    assert not (tmp_path / "g").exists()


def test_dry_run_says_where_unfinished_cells_stand_and_touches_nothing(tmp_path: Path) -> None:
    """A cell with checkpoints would resume (from its newest complete one), a locked cell is being trained by a
    live process; the dry run must not remove the checkpoint a running process is still writing."""
    spec = parse_grid(_grid(models=["m"], attention=["causal", "full"], output_dir=str(tmp_path / "g")))
    causal, full = (cell.folder(Path(spec.output_dir)) for cell in expand_cells(spec))
    for step, epoch in ((10, 1.0), (15, 1.5)):
        folder = causal / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 30, "epoch": epoch}))
    being_written = causal / "checkpoints" / "checkpoint-20"
    being_written.mkdir()
    full.mkdir(parents=True)
    (full / grid_module.LOCK_FILE).write_text(f"{socket.gethostname()}:{os.getpid()}\n")
    lines: list[str] = []
    run_grid(spec, dry_run=True, log=lines.append)
    assert "causal/seed42: to resume, step 15 of 30 saved (epoch 1.50) (" in lines[0]
    assert f"full/seed42: being trained by {socket.gethostname()}:{os.getpid()} (" in lines[1]
    assert being_written.is_dir()


# --- peers (dispatch only: the spaCy run itself is tested in test_spacy_peer.py) ----------------------
def fake_system(config, options, run_dir: Path, log, deadline=None) -> None:
    """A stand-in peer: writes a metrics.json as a real one does."""
    (run_dir / "metrics.json").write_text(json.dumps({"system": "fake", "seed": config.seed, "options": options}))


@pytest.fixture
def fake_peer() -> Iterator[System]:
    """A system registered as a new baseline would be (one ``register`` call), taken out again after the test."""
    system = register(System("fake", "peer", fake_system, "a stand-in peer"))
    yield system
    del SYSTEMS["fake"]


def test_system_cells_call_their_trainer_with_options(tmp_path: Path, fake_peer) -> None:
    spec = parse_grid(_grid(models=[], systems=[{"name": "fake", "depth": 3}], output_dir=str(tmp_path / "g")))
    outcome = run_grid(spec, log=lambda _: None)
    assert outcome.trained == ["conll2003/fake/peer/none/seed42"]
    written = json.loads((tmp_path / "g" / outcome.trained[0] / "metrics.json").read_text())
    assert written == {"system": "fake", "seed": 42, "options": {"depth": 3}}
    cell = json.loads((tmp_path / "g" / outcome.trained[0] / "cell.json").read_text())
    assert cell["system"] == "fake" and cell["attention"] == "none"


def test_systems_are_one_registry(tmp_path: Path, fake_peer, monkeypatch) -> None:
    """The grid names, checks and dispatches systems through lsfa.experiments.systems only: a registered system is
    accepted in a grid file (by path too: the baselines are imported on first call), a name is taken once, the
    token tagger is no peer to list, and a model cell dispatches to the tagger's entry."""
    with pytest.raises(LsfaError, match="already registered"):
        register(System("fake", "other", fake_system, "a second fake"))
    assert [name for name in ("spacy", "ift") if SYSTEMS[name].peer] == ["spacy", "ift"]
    assert SYSTEMS["ift"].function().__name__ == "train_ift"  # the path resolves to the baseline's function
    with pytest.raises(LsfaError, match="unknown system 'lsfa'; known systems: spacy, ift, fake"):
        parse_grid(_grid(models=[], systems=["lsfa"], output_dir=str(tmp_path / "g")))
    tagged: list[str] = []

    def train_tagger(config, options, run_dir: Path, log, deadline=None) -> None:
        tagged.append(config.model)
        (run_dir / "metrics.json").write_text("{}")

    monkeypatch.setitem(SYSTEMS, TAGGER, System(TAGGER, "", train_tagger, "a stand-in tagger", peer=False))
    spec = parse_grid(_grid(models=["m"], systems=["fake"], output_dir=str(tmp_path / "g")))
    outcome = run_grid(spec, log=lambda _: None)
    assert tagged == ["m"] and outcome.trained == ["conll2003/m/lora/full/seed42", "conll2003/fake/peer/none/seed42"]


def test_a_cell_claimed_by_a_live_process_is_passed_over(tmp_path: Path, fake_peer) -> None:
    spec = parse_grid(_grid(models=[], systems=["fake"], seeds=[1, 2], output_dir=str(tmp_path / "g")))
    busy = tmp_path / "g" / "conll2003/fake/peer/none/seed1"
    busy.mkdir(parents=True)
    (busy / grid_module.LOCK_FILE).write_text(f"{socket.gethostname()}:{os.getppid()}\n")  # alive: our parent
    lines: list[str] = []
    outcome = run_grid(spec, log=lines.append)
    assert outcome.busy == ["conll2003/fake/peer/none/seed1"]
    assert outcome.trained == ["conll2003/fake/peer/none/seed2"]
    assert any("being trained by another process" in line for line in lines)
    assert not (tmp_path / "g" / outcome.trained[0] / grid_module.LOCK_FILE).exists()  # released after training
    assert (busy / grid_module.LOCK_FILE).exists()  # another process's lock is left alone


def test_claims_are_exclusive_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    from lsfa.experiments.grid import claim_cell, release_cell

    cell = tmp_path / "cell"
    assert claim_cell(cell) is None
    assert claim_cell(cell) == f"{socket.gethostname()}:{os.getpid()}"  # held (by us): not claimed twice
    release_cell(cell)
    assert claim_cell(cell) is None
    release_cell(cell)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (cell / grid_module.LOCK_FILE).write_text(f"{socket.gethostname()}:{dead.pid}\n")
    assert claim_cell(cell) is None  # its process is gone: stale, taken over
    (cell / grid_module.LOCK_FILE).write_text("other-host:1\n")
    assert claim_cell(cell) == "other-host:1"  # another machine's claim cannot be checked: respected


# --- a real tiny grid ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    """Two attentions of a tiny llama that trains, plus a model path that does not exist (fails)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("grid")
    missing = {"name": "missing", "path": str(root / "no-such-model")}
    path = tiny_grid_file(root, ["causal", "full"], models=[missing, {"name": "tiny", "path": str(root / "model")}])
    spec = load_grid(path)
    lines: list[str] = []
    outcome = run_grid(spec, log=lines.append)
    return spec, outcome, lines


def test_tiny_grid_trains_cells_and_goes_on_after_failures(tiny_grid) -> None:
    spec, outcome, lines = tiny_grid
    grid_dir = Path(spec.output_dir)
    assert outcome.trained == ["synth/tiny/lora/causal/seed0", "synth/tiny/lora/full/seed0"]
    assert [f["cell"] for f in outcome.failed] == ["synth/missing/lora/causal/seed0", "synth/missing/lora/full/seed0"]
    for key in outcome.trained:
        metrics = json.loads((grid_dir / key / "metrics.json").read_text())
        assert set(metrics) >= {"dev", "test", "parameters", "mean_epoch_seconds"}
        cell = json.loads((grid_dir / key / "cell.json").read_text())
        assert cell["model"] == "tiny" and cell["corpus"] == "synth" and key.endswith(f"/{cell['attention']}/seed0")
    assert json.loads((grid_dir / outcome.trained[0] / "metrics.json").read_text())["attention"] == "causal"
    failures = json.loads((grid_dir / "failures.json").read_text())["failures"]
    assert [f["cell"] for f in failures] == [f["cell"] for f in outcome.failed]
    assert all("no-such-model" in f["error"] for f in failures), failures
    assert any("FAILED" in line for line in lines)
    assert yaml.safe_load((grid_dir / "grid.yaml").read_text())["name"] == "tiny"


def test_tiny_grid_resumes_without_training_finished_cells(tiny_grid, monkeypatch) -> None:
    spec, first, _ = tiny_grid
    from lsfa.training import runner

    trained_models: list[str] = []

    def no_training(config, resume=False, log=print, deadline=None):
        trained_models.append(config.model)
        raise LsfaError(f"model {config.model} still missing")

    monkeypatch.setattr(runner, "train", no_training)
    lines: list[str] = []
    outcome = run_grid(spec, log=lines.append)
    assert outcome.trained == []
    assert outcome.skipped == first.trained
    assert all(model.endswith("no-such-model") for model in trained_models) and len(trained_models) == 2
    failures = json.loads((Path(spec.output_dir) / "failures.json").read_text())["failures"]
    assert [f["error"] for f in failures] == [f"model {trained_models[0]} still missing"] * 2
    assert not any("trained with other" in line for line in lines)


def test_a_finished_cell_with_another_config_is_skipped_with_a_note(tiny_grid, monkeypatch) -> None:
    spec, first, _ = tiny_grid
    changed = spec.model_copy(update={"base": {**spec.base, "learning_rate": 1.0e-3}})
    lines: list[str] = []
    outcome = run_grid(changed, only="tiny", log=lines.append)
    assert outcome.skipped == first.trained and not outcome.trained
    assert all("trained with other learning_rate" in line for line in lines), lines


# --- time limit --------------------------------------------------------------------------------------------
def test_a_time_limit_pauses_the_running_cell_starts_no_other_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch
) -> None:
    """The limit runs out during the first cell's first step: it stops at a checkpoint, the second cell is not
    started; running the grid again resumes the first (it trains its remaining step) and trains the second."""
    from lsfa.training import time_limit

    torch.set_num_threads(1)
    spec = load_grid(tiny_grid_file(tmp_path, ["causal", "full"]))
    lines: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(time_limit, "_past", lambda deadline, world_size: True)  # the clock inside training only
        first = run_grid(spec, log=lines.append, time_limit=3600)
    paused, waiting = "synth/tiny/lora/causal/seed0", "synth/tiny/lora/full/seed0"
    assert (first.paused, first.not_started, first.trained, first.failed) == (paused, [waiting], [], [])
    grid_dir = Path(spec.output_dir)
    assert (grid_dir / paused / "checkpoints" / "checkpoint-1").is_dir()
    assert not (grid_dir / paused / "metrics.json").exists() and not (grid_dir / waiting).exists()
    assert not (grid_dir / paused / "running.lock").exists(), "the claim is released"
    assert any("time limit reached: checkpoint saved at step 1 of 2" in line for line in lines), lines
    failures = grid_dir / "failures.json"
    assert not failures.exists() or not json.loads(failures.read_text())["failures"], "a pause is not a failure"

    second = run_grid(spec, log=lines.append)
    assert second.trained == [paused, waiting] and second.paused is None
    assert json.loads((grid_dir / paused / "metrics.json").read_text())["global_step"] == 2


def test_cli_time_limit_exit_status_and_bad_durations(tmp_path: Path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    path = tiny_grid_file(tmp_path, ["full"])
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(path), "--time-limit", "0.000001"])
    assert code == 75 and "1 not started (time limit)" in out, out
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(path), "--time-limit", "soon"])
    assert code == 2 and "--time-limit 'soon'" in out
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(path), "--time-limit", "1h"])
    assert code == 0 and "1 trained" in out, out


# --- CLI ---------------------------------------------------------------------------------------------------
def _cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    from lsfa.cli import main

    monkeypatch.setattr(sys, "argv", ["lsfa", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_dry_run_and_failure_exit_status(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        yaml.safe_dump(
            _grid(
                corpora=[str(tmp_path / "no-corpus")],
                models=[{"name": "gone", "path": str(tmp_path / "gone")}],
                attention=["full"],
            )
        )
    )
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(path), "--dry-run"])
    assert code == 0 and "gone/lora/full/seed42: to run" in out and "1 cells" in out
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(path), "--output-dir", str(tmp_path / "g")])
    assert code == 1 and "1 failed" in out and (tmp_path / "g" / "failures.json").exists()
    code, out = _cli(monkeypatch, capsys, ["experiment", "run", str(tmp_path / "nope.yaml")])
    assert code == 2 and "grid file not found" in out


COMMITTED_GRIDS = sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("grid_file", COMMITTED_GRIDS, ids=lambda path: path.name)
def test_every_committed_grid_loads_and_expands(grid_file: Path) -> None:
    """A grid the docs tell users to run must parse, name unique folders and give at least one cell."""
    spec = load_grid(grid_file)
    cells = expand_cells(spec)
    assert cells
    assert len({cell.folder(spec.output_dir) for cell in cells}) == len(cells)
    from lsfa.baselines.ift_train import split_options

    for cell in cells:
        if cell.system == "ift":  # its options are checked when the cell starts: a typo must not wait for that
            split_options(cell.config, cell.options)


def test_the_gpu_paper_grid_is_the_paper_s_schedule_over_hub_models() -> None:
    """configs/experiments/paper-gpu.yaml: seven hub decoders, LS-CA and LS-FA, LoRA and full, 10 epochs, lr 5e-5,
    batch 8 (the paper's Table 2 settings), every model a hub id so that nothing in it needs lsfa's catalogue."""
    spec = load_grid(Path(__file__).resolve().parents[2] / "configs" / "experiments" / "paper-gpu.yaml")
    cells = expand_cells(spec)
    assert len({cell.config.model for cell in cells}) == 7 and all("/" in cell.config.model for cell in cells)
    assert {(cell.config.attention, cell.config.finetune) for cell in cells} == {
        ("causal", "lora"), ("full", "lora"), ("causal", "full"), ("full", "full")
    }  # fmt: skip
    assert {(c.config.epochs, c.config.learning_rate, c.config.batch_size) for c in cells} == {(10, 5e-5, 8)}
    assert len(cells) == 7 * 2 * 2 * 2


def test_an_older_record_saying_mode_is_compared_as_finetune(tmp_path: Path) -> None:
    """Run records written before ``finetune:`` say ``mode:``; a skipped finished cell is checked against it."""
    from lsfa.training.config import TrainConfig

    cell = grid_module.Cell("c", "m", "full", "full", 0, TrainConfig(finetune="full"))
    old = {key: value for key, value in cell.config.model_dump().items() if key != "finetune"}
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {**old, "mode": "full"}}))
    assert grid_module.config_drift(tmp_path, cell) == []
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {**old, "mode": "lora"}}))
    assert grid_module.config_drift(tmp_path, cell) == ["finetune"]

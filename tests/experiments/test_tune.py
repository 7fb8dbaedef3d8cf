"""`lsfa tune` on a tiny model: a 3-trial search with pruning reports, resumes after an interruption, and refuses
bad search spaces with one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from lsfa.errors import LsfaError
from lsfa.experiments.tune import load_space, overrides_of, tune
from lsfa.training.config import load_config
from tests.tiny import tiny_decoder_dir
from tests.training.synthetic import write_synthetic_corpus

pytest.importorskip("optuna")
SPACE = {
    "lora.r": {"choices": [2, 4]},
    "lora.alpha_ratio": {"choices": [1, 2]},
    "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    "budget": {"epochs": 2, "train_limit": 16},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    corpus = write_synthetic_corpus(root / "corpus", train=24, dev=8, test=8)
    model = tiny_decoder_dir(root / "tiny")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    base = {"model": str(model), "corpus": str(corpus), "epochs": 1, "batch_size": 8, "max_length": 64,
            "precision": "fp32", "lora": {"r": 4, "alpha": 8}, "early_stopping_patience": None}  # fmt: skip
    return root, base


def test_search_resumes_reports_and_retrains_the_best(setup, tmp_path: Path) -> None:
    root, base = setup
    config = load_config(None, {**base, "output_dir": str(tmp_path / "study")})
    logs: list[str] = []
    first = tune(config, root / "space.yaml", tmp_path / "study", trials=2, final=False, log=logs.append)
    assert first["best_trial"] in (0, 1)
    second = tune(config, root / "space.yaml", tmp_path / "study", trials=3, final=True, log=logs.append)  # resumed
    assert sum(line.startswith("trial ") for line in logs) == 3  # two, then only the missing one
    rates = [line.split('"learning_rate": ')[1].split(",")[0] for line in logs if line.startswith("trial ")]
    assert len(set(rates)) == 3  # the resumed process does not redraw the first process's start-up values
    report = (tmp_path / "study" / "report.md").read_text()
    assert "| trial | state |" in report and "trainable (% of model)" in report and "importances" in report
    assert (tmp_path / "study" / "history.png").stat().st_size > 0
    assert second["final"]["test_f1"] is not None  # the test split is scored once, for the best configuration
    assert f"test F1 {second['final']['test_f1']:.4f}" in report
    for trial in range(3):
        trial_metrics = tmp_path / "study" / "trials" / f"{trial:03d}" / "metrics.json"
        assert not trial_metrics.exists() or '"test"' not in trial_metrics.read_text()  # trials never see test


def test_a_pruned_trial_is_reported_with_its_time_and_last_dev_f1(setup, tmp_path: Path, monkeypatch) -> None:
    import optuna

    from lsfa.experiments import tune as tune_module

    class PruneAfterTheFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return trial.number > 0

    monkeypatch.setattr(tune_module, "make_pruner", lambda optuna: PruneAfterTheFirst())
    root, base = setup
    config = load_config(None, {**base, "output_dir": str(tmp_path / "study")})
    result = tune(config, root / "space.yaml", tmp_path / "study", trials=3, final=False, log=lambda _: None)
    assert result["best_trial"] == 0
    rows = [row for row in (tmp_path / "study" / "report.md").read_text().splitlines() if row.startswith("| 1 |")]
    assert len(rows) == 1 and "| pruned |" in rows[0]
    cells = rows[0].strip("| ").split(" | ")
    assert cells[-2].startswith("(") and cells[-2].endswith("after epoch 1)")  # its last dev F1
    assert float(cells[-1]) >= 0  # and the time it cost


def test_the_base_config_is_the_first_trial_once(setup, tmp_path: Path) -> None:
    root, base = setup
    config = load_config(None, {**base, "learning_rate": 5.0e-3, "output_dir": str(tmp_path / "study")})
    logs: list[str] = []
    tune(config, root / "space.yaml", tmp_path / "study", trials=2, final=False, log=logs.append)
    tune(config, root / "space.yaml", tmp_path / "study", trials=2, final=False, log=logs.append)  # resumed
    assert logs[0].startswith("trial 0: ")
    assert json.loads(logs[0].removeprefix("trial 0: ")) == {"lora.r": 4, "lora.alpha_ratio": 2, "learning_rate": 0.005}
    assert sum(line.startswith("trial ") for line in logs) == 2  # not enqueued again on resume
    report = (tmp_path / "study" / "report.md").read_text()
    assert "| 0 | complete (base config) | 0.005 | 2 | 4 |" in report  # learning_rate, alpha ratio, r


def test_a_base_config_outside_the_space_is_not_a_trial(setup) -> None:
    from lsfa.experiments.tune import base_values

    root, base = setup
    space, _ = load_space(root / "space.yaml")
    assert base_values(load_config(None, {**base, "learning_rate": 5.0e-3}), space) == {
        "lora.r": 4, "lora.alpha_ratio": 2, "learning_rate": 5.0e-3}  # fmt: skip
    assert base_values(load_config(None, {**base, "learning_rate": 1.0e-4}), space) == {}  # below the range


def test_alpha_ratio_becomes_alpha() -> None:
    assert overrides_of({"lora.r": 8, "lora.alpha_ratio": 2, "learning_rate": 1e-3}) == {
        "lora": {"r": 8, "alpha": 16}, "learning_rate": 1e-3}  # fmt: skip


@pytest.mark.parametrize(
    ("space", "problem"),
    [({"lora.rank": {"choices": [8]}}, "unknown search key 'lora.rank'"),
     ({"lora.r": {"choices": []}}, "empty choices"),
     ({"learning_rate": {"low": 1e-3, "high": 1e-4}}, "empty range"),
     ({"lora.r": [8, 16]}, "needs {choices"),
     ({"budget": {"epochs": 1}}, "no search keys")],
)  # fmt: skip
def test_bad_spaces_are_one_clear_error(tmp_path: Path, space, problem) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(LsfaError, match=problem.replace("{", r"\{")):
        load_space(path)


def test_cli_bad_trial_budget_is_one_line(setup, monkeypatch, capsys) -> None:
    from lsfa.cli import main

    root, _ = setup
    monkeypatch.setattr(sys, "argv", ["lsfa", "tune", "--space", str(root / "space.yaml"), "--trials", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "--trials must be at least 1" in capsys.readouterr().err


def test_the_pruning_callback_stops_a_trial_that_is_behind() -> None:
    import optuna

    from lsfa.experiments.tune import pruning_callback

    class Behind:
        def __init__(self) -> None:
            self.reports: list = []

        def report(self, value, step):
            self.reports.append((value, step))

        def should_prune(self):
            return True

    class State:
        epoch = 1.0

    trial = Behind()
    with pytest.raises(optuna.TrialPruned, match=r"dev F1 0\.1000 after epoch 1"):
        pruning_callback(trial, optuna).on_evaluate(None, State(), None, metrics={"eval_f1": 0.1})
    assert trial.reports == [(0.1, 1)]

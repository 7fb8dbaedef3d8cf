"""The committed test F1 and speed that ``lsfa models`` shows (lsfa.models.results): the packaged file agrees with
the committed cells, the right cell is chosen, and the table and ``lsfa --help`` say where to start."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from lsfa.cli import app
from lsfa.models.catalogue import CATALOGUE, DEFAULT_MODEL
from lsfa.models.results import CORPORA, RESULTS_FILE, build_results, load_results

ROOT = Path(__file__).resolve().parents[2]
CELLS = ROOT / "docs" / "results" / "cpu-paper" / "cells"


def test_packaged_results_agree_with_the_committed_cells():
    assert load_results() == build_results(CELLS, list(CATALOGUE)), "re-run scripts/catalogue_results.py"


def test_every_catalogue_model_has_both_corpora_read_from_its_metrics_file():
    record = load_results()["models"]
    assert set(record) == set(CATALOGUE)
    for model, corpora in record.items():
        assert set(corpora) == set(CORPORA), model
        for corpus, summary in corpora.items():
            metrics = json.loads((CELLS / summary["cell"] / "metrics.json").read_text())
            assert summary["cell"].startswith(f"{corpus}/{model}/")
            assert abs(summary["test_f1"] - metrics["test"]["micro"]["f1"]) < 5e-5
            assert summary["ms_per_sentence"] > 0 and summary["cpu"], (model, corpus)


def _cell(root: Path, key: str, f1: float, **config) -> None:
    folder = root / key / "seed42"
    folder.mkdir(parents=True)
    test = {"micro": {"f1": f1}, "n_sentences": 10, "latency_ms": {"median": 12.34}}
    if "later" in config:
        test["latency_ms"]["measured_later"] = {"cpu_model": config.pop("later"), "torch_threads": 1}
    metrics = {"config": config, "test": test, "precision": "fp32", "machine": {"cpu_model": "Run CPU"}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_best_ls_fa_lora_cell_on_full_data_is_chosen(tmp_path):
    _cell(tmp_path, "conll2003/m/lora/causal", 0.99)  # LS-CA: not the recipe quoted
    _cell(tmp_path, "conll2003/m/lora/full", 0.95, train_limit=100)  # a slice: not full data
    _cell(tmp_path, "conll2003/m/lora/full-b", 0.97)  # another attention name: not LS-FA
    _cell(tmp_path, "conll2003/m/full/full", 0.90, later="Later CPU")
    _cell(tmp_path, "bc5cdr/m/lora/full", 0.80)
    record = build_results(tmp_path, ["m", "absent"])["models"]
    assert set(record) == {"m"}
    assert record["m"]["conll2003"]["cell"] == "conll2003/m/full/full/seed42"
    assert (record["m"]["conll2003"]["cpu"], record["m"]["bc5cdr"]["cpu"]) == ("Later CPU", "Run CPU")
    assert record["m"]["bc5cdr"]["ms_per_sentence"] == 12.3


def test_results_file_is_installed_with_the_package():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert f"models/{RESULTS_FILE}" in package_data["lsfa"]


def test_models_table_shows_f1_speed_and_cpu():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if f"{DEFAULT_MODEL}*" in line)
    quoted = load_results()["models"][DEFAULT_MODEL]
    assert f"{100 * quoted['conll2003']['test_f1']:.1f}" in row and f"{100 * quoted['bc5cdr']['test_f1']:.1f}" in row
    assert f"{quoted['conll2003']['ms_per_sentence']:.0f} ms" in row and "Xeon" in row
    assert "Highest test F1" in result.output


def test_app_help_says_what_to_run_first():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # wherever the help wrapped its lines
    assert "Start here: `lsfa models`" in text and "`lsfa train -c configs/main.yaml`" in text

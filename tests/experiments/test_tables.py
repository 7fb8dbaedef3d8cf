"""``lsfa experiment report``: paper-shaped tables and plots from fabricated cells and from a real tiny grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lsfa.errors import LsfaError
from lsfa.eval.errors import ERROR_CATEGORIES
from lsfa.experiments.tables import build_tables, collect_cells, format_value, stat, table_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_TABLES = {"main", "attention_gain", "paper", "lora", "set", "time", "inference", "errors", "by_length"}


def split_result(f1: float, ms: float = 2.0) -> dict:
    """A metrics.json split section (the keys of lsfa.eval.report.evaluate_sentences plus timings)."""
    prf = {"precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1}
    errors = dict.fromkeys(ERROR_CATEGORIES, 0) | {"exact_matches": 90, "too_short": 4, "false_negatives": 6}
    return {
        "micro": prf | {"support": 100},
        "set": {"precision": f1, "recall": f1, "f1": f1 + 0.02},
        "by_length": {
            "1": {"precision": 1, "recall": 1, "f1": f1 + 0.05, "support": 60},
            "2": {"precision": 1, "recall": 1, "f1": f1, "support": 30},
            "3+": {"precision": 1, "recall": 1, "f1": f1 - 0.2, "support": 10},
        },
        "errors": errors,
        "errors_pct": {"too_short": 40.0, "false_negatives": 60.0},
        "ms_per_sentence": ms,
        "n_sentences": 50,
    }


def write_cell(root: Path, key: str, cell: dict | None, metrics: dict) -> Path:
    folder = root / key
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if cell is not None:
        (folder / "cell.json").write_text(json.dumps(cell))
    return folder


def lsfa_metrics(model: str, mode: str, attention: str, seed: int, f1: float, total: int, seconds: float,
                 ms: float = 2.0, test: bool = True, corpus: str = "conll2003") -> dict:  # fmt: skip
    trainable = total // 100 if mode == "lora" else total
    metrics = {
        "config": {"model": model, "corpus": corpus, "mode": mode, "seed": seed,
                   "lora": {"r": 32, "alpha": 64, "dropout": 0.05, "target_modules": "all-linear"}},
        "attention": attention,
        "dev": split_result(f1 - 0.01, ms),
        "parameters": {"trainable": trainable, "total": total, "trainable_pct": 100 * trainable / total},
        "mean_epoch_seconds": seconds,
        "epochs_run": 3,
    }  # fmt: skip
    if test:
        metrics["test"] = split_result(f1, ms)
    return metrics


@pytest.fixture
def fabricated(tmp_path: Path) -> Path:
    """conll2003: a decoder (2 seeds x causal/full), two encoders, spaCy; bc5cdr: a decoder only, no test."""
    root = tmp_path / "grid"
    for seed, (fa, ca, ms) in {1: (0.80, 0.60, 4.0), 2: (0.90, 0.70, 6.0)}.items():
        for attention, f1 in (("full", fa), ("causal", ca)):
            cell = {"corpus": "conll2003", "model": "smollm2-135m", "mode": "lora", "training": "lora",
                    "attention": attention, "seed": seed, "system": "lsfa"}  # fmt: skip
            metrics = lsfa_metrics("smollm2-135m", "lora", attention, seed, f1, 135_000_000, 300.0 + seed, ms)
            metrics["test"]["latency_ms"] = {"mean": 30.0 + 20 * (seed - 1), "std": 5.0 + 2 * (seed - 1), "n": 200}
            write_cell(root, f"conll2003/smollm2-135m/lora/{attention}/seed{seed}", cell, metrics)
    # encoders without cell.json: the axes come from metrics.json's config
    write_cell(root, "conll2003/minilm-l6/full/full/seed1", None,
               lsfa_metrics("minilm-l6", "full", "full", 1, 0.75, 22_000_000, 100.0))  # fmt: skip
    write_cell(root, "conll2003/mpnet-base/full/full/seed1", None,
               lsfa_metrics("mpnet-base", "full", "full", 1, 0.85, 109_000_000, 400.0))  # fmt: skip
    spacy = lsfa_metrics("spacy", "full", "none", 1, 0.70, 1_500_000, 20.0) | {"system": "spacy"}
    write_cell(root, "conll2003/spacy/tok2vec/none/seed1", None, spacy)
    no_test = lsfa_metrics("smollm2-135m", "lora", "full", 1, 0.8, 135_000_000, 50.0, test=False, corpus="bc5cdr")
    write_cell(root, "bc5cdr/smollm2-135m/lora/full/seed1", None, no_test)
    for bits, f1 in (("0000", 0.5), ("1010", 0.7), ("1111", 0.6)):
        write_cell(root, f"conll2003/smollm2-135m/lora/groups4-{bits}/seed1", None,
                   lsfa_metrics("smollm2-135m", "lora", f"groups=4:{bits}", 1, f1, 135_000_000, 300.0))  # fmt: skip
    (root / "failures.json").write_text(
        json.dumps({"failures": [{"cell": "conll2003/gemma3-270m/lora/full/seed1", "error": "out of memory"}]})
    )
    return root


def rows_of(table, **match) -> list[dict]:
    return [row for row in table.rows if all(row.get(k) == v for k, v in match.items())]


def test_cells_are_collected_with_axes_from_cell_json_or_config(fabricated: Path) -> None:
    cells = collect_cells(fabricated)
    assert len(cells) == 4 + 2 + 1 + 1 + 3
    kinds = {cell.model: cell.kind for cell in cells}
    assert kinds == {"smollm2-135m": "decoder", "minilm-l6": "encoder", "mpnet-base": "encoder", "spacy": "peer"}
    spacy = next(c for c in cells if c.model == "spacy")
    assert (spacy.corpus, spacy.attention, spacy.system) == ("conll2003", "none", "spacy")


def test_main_table_aggregates_seeds_as_mean_and_sample_std(fabricated: Path) -> None:
    tables = build_tables(collect_cells(fabricated))
    assert set(tables) == ALL_TABLES | {"layer_patterns"}
    (full,) = rows_of(tables["main"], corpus="conll2003", model="smollm2-135m", attention="LS-FA")
    assert full["seeds"] == 2
    assert full["f1"]["mean"] == pytest.approx(0.85) and full["f1"]["std"] == pytest.approx(0.0707107, rel=1e-4)
    assert format_value(full, "f1", "stat") == "0.8500 ± 0.0707"
    (encoder,) = rows_of(tables["main"], model="minilm-l6")
    assert encoder["attention"] == "-" and encoder["f1"]["std"] is None
    (bc5cdr,) = rows_of(tables["main"], corpus="bc5cdr")
    assert bc5cdr["f1"] is None, "a cell without a test split is missing, not invented"
    assert any("no test results" in note and "bc5cdr" in note for note in tables["main"].notes)
    assert any("0.891" in note for note in tables["main"].notes), "paper reference shown beside ours"
    markdown = table_markdown(tables["main"])
    assert "| bc5cdr | smollm2-135m | lora | LS-FA | 1 | - | - | - |" in markdown


def test_attention_gain_is_ls_fa_minus_ls_ca_in_points(fabricated: Path) -> None:
    (row,) = build_tables(collect_cells(fabricated))["attention_gain"].rows
    assert row["gain"] == pytest.approx(20.0)


def test_a_tokens_task_is_labelled_as_accuracy_and_has_no_span_tables(fabricated: Path) -> None:
    assert not any("token accuracy" in note for note in build_tables(collect_cells(fabricated))["main"].notes)
    pos = lsfa_metrics("smollm2-135m", "lora", "full", 1, 0.9, 135_000_000, 50.0, corpus="conll2003_pos")
    write_cell(fabricated, "conll2003_pos/smollm2-135m/lora/full/seed1", None, pos | {"task": "tokens"})
    tables = build_tables(collect_cells(fabricated))
    assert any(note.startswith("conll2003_pos:") and "token accuracy" in note for note in tables["main"].notes)
    for name in ("set", "errors", "by_length"):
        assert any(note.startswith("conll2003_pos:") and "no spans" in note for note in tables[name].notes)


def test_lora_table_reports_trainable_parameters(fabricated: Path) -> None:
    table = build_tables(collect_cells(fabricated))["lora"]
    (lora,) = rows_of(table, corpus="conll2003", model="smollm2-135m")
    assert (lora["r"], lora["alpha"], lora["trainable"], lora["trainable_pct"]) == (32, 64, 1_350_000, 1.0)
    (full,) = rows_of(table, model="minilm-l6")
    assert full["r"] is None and full["trainable_pct"] == 100.0


def test_time_ratio_is_to_the_smallest_encoder_of_the_corpus(fabricated: Path) -> None:
    table = build_tables(collect_cells(fabricated))["time"]
    (decoder,) = rows_of(table, corpus="conll2003", model="smollm2-135m", attention="LS-FA")
    assert decoder["seconds_per_epoch"]["mean"] == pytest.approx(301.5)
    assert decoder["ratio"] == pytest.approx(3.015), "minilm-l6 (22M) is smaller than mpnet-base (109M)"
    (mpnet,) = rows_of(table, model="mpnet-base")
    assert mpnet["ratio"] == pytest.approx(4.0)
    (bc5cdr,) = rows_of(table, corpus="bc5cdr")
    assert bc5cdr["ratio"] is None and format_value(bc5cdr, "ratio", "ratio") == "-"
    assert any(note.startswith("bc5cdr: no encoder") for note in table.notes)


def test_inference_errors_set_and_length_tables(fabricated: Path) -> None:
    tables = build_tables(collect_cells(fabricated))
    (row,) = rows_of(tables["inference"], corpus="conll2003", model="smollm2-135m", attention="LS-CA")
    assert row["ms_per_sentence"]["mean"] == pytest.approx(5.0) and row["ms_per_sentence"]["std"] > 0
    assert row["latency"] == {"mean": pytest.approx(40.0), "std": pytest.approx(6.0), "n": 2}, "means over seeds"
    assert row["latency_n"] == 200 and format_value(row, "latency", "stat1") == "40.0 ± 6.0"
    (spacy,) = rows_of(tables["inference"], model="spacy")
    assert spacy["latency"] is None and format_value(spacy, "latency", "stat1") == "-", "not measured: missing"
    (errors,) = rows_of(tables["errors"], model="spacy")
    assert errors["too_short"]["mean"] == 4 and format_value(errors, "too_short", "count_pct") == "4 (40.0%)"
    (set_row,) = rows_of(tables["set"], model="mpnet-base")
    assert set_row["f1"]["mean"] == pytest.approx(0.87) and set_row["strict_f1"]["mean"] == pytest.approx(0.85)
    (length,) = rows_of(tables["by_length"], model="mpnet-base")
    assert length["f1_3+"]["mean"] == pytest.approx(0.65) and length["support_3+"] == 10


def test_layer_patterns_are_ranked_on_dev(fabricated: Path) -> None:
    rows = build_tables(collect_cells(fabricated))["layer_patterns"].rows
    assert [(r["rank"], r["attention_setting"]) for r in rows] == [
        (1, "groups=4:1010"),
        (2, "groups=4:1111"),
        (3, "groups=4:0000"),
    ]
    headers = [[label for _, label, _ in build_tables(collect_cells(fabricated), split=s)["layer_patterns"].columns]
               for s in ("test", "dev")]  # fmt: skip
    assert headers[0][-2:] == ["dev F1", "test F1"] and headers[1][-1] == "dev F1" and "test F1" not in headers[1]


def test_write_report_writes_markdown_json_and_plots(fabricated: Path, tmp_path: Path) -> None:
    paths = write_report(fabricated, tmp_path / "report")
    for name in ("f1_by_model_attention", "error_categories", "f1_by_length"):
        assert paths[name].read_bytes().startswith(PNG_MAGIC)
    report = json.loads(paths["json"].read_text())
    assert set(report["tables"]) == ALL_TABLES | {"layer_patterns"}
    assert report["failures"][0]["cell"] == "conll2003/gemma3-270m/lora/full/seed1"
    markdown = paths["markdown"].read_text()
    assert (
        "paper Table 4" in markdown and "out of memory" in markdown and "![f1_by_length](f1_by_length.png)" in markdown
    )


def test_stat_of_nothing_is_missing() -> None:
    assert stat([None, None]) is None
    assert stat([1.0, None]) == {"mean": 1.0, "std": None, "n": 1}


def test_report_of_an_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="no finished cells"):
        write_report(tmp_path)
    with pytest.raises(LsfaError, match="no such folder"):
        write_report(tmp_path / "missing")


def test_report_from_a_real_tiny_grid(tmp_path: Path, monkeypatch, capsys) -> None:
    """Two tiny LoRA cells trained for real, then `lsfa experiment report` through the CLI."""
    import torch

    from lsfa.cli import main
    from lsfa.experiments.grid import load_grid, run_grid
    from tests.training.synthetic import tiny_grid_file

    torch.set_num_threads(1)
    spec = load_grid(tiny_grid_file(tmp_path, ["causal", "full"]))
    assert len(run_grid(spec, log=lambda _: None).trained) == 2
    monkeypatch.setattr(sys, "argv", ["lsfa", "experiment", "report", spec.output_dir, "--out", str(tmp_path / "r")])
    main()
    assert "markdown:" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["tables"]) == ALL_TABLES - {"paper"}, "a synthetic corpus has no published numbers"
    (gain,) = report["tables"]["attention_gain"]["rows"]
    assert gain["model"] == "tiny" and gain["gain"] is not None
    main_rows = report["tables"]["main"]["rows"]
    assert {row["attention"] for row in main_rows} == {"LS-CA", "LS-FA"}
    assert all(row["f1"] is not None and 0 <= row["f1"]["mean"] <= 1 for row in main_rows)
    (lora,) = report["tables"]["lora"]["rows"]
    assert lora["r"] == 2 and 0 < lora["trainable_pct"] < 100
    assert report["tables"]["time"]["rows"][0]["ratio"] is None, "no encoder in the tiny grid"
    assert (tmp_path / "r" / "f1_by_length.png").read_bytes().startswith(PNG_MAGIC)


def test_grid_order_decides_the_row_order(fabricated: Path) -> None:
    cells = collect_cells(fabricated)
    default = [row["corpus"] for row in build_tables(cells)["main"].rows]
    assert default[0] == "bc5cdr", "alphabetical without a grid file"
    hinted = build_tables(cells, order_hint={"corpora": ["conll2003", "bc5cdr"], "models": ["mpnet-base"]})
    corpora = [row["corpus"] for row in hinted["main"].rows]
    assert corpora[0] == "conll2003" and corpora[-1] == "bc5cdr"
    encoders = [row["model"] for row in hinted["main"].rows if row["kind"] == "encoder"]
    assert encoders == ["mpnet-base", "minilm-l6"]


def test_paper_table_puts_each_published_number_before_the_lsfa_cells_in_its_role(fabricated: Path) -> None:
    table = build_tables(collect_cells(fabricated))["paper"]
    lsfa_fa = rows_of(table, role="decoder LS-FA, LoRA", source="lsfa")
    assert [row["system"] for row in lsfa_fa] == ["smollm2-135m lora LS-FA"], "layer patterns are not LS-FA"
    assert lsfa_fa[0]["conll2003"]["mean"] == pytest.approx(0.85)
    assert lsfa_fa[0]["bc5cdr"] is None, "the bc5cdr cell has no test split: missing, not invented"
    (qwen, *_) = rows_of(table, role="decoder LS-FA, LoRA", source="paper")
    assert (qwen["conll2003"], qwen["bc5cdr"]) == (0.891, 0.863)
    assert table.rows.index(qwen) < table.rows.index(lsfa_fa[0])
    encoders = rows_of(table, role="encoder, full fine-tuning", source="lsfa")
    assert {row["system"] for row in encoders} == {"minilm-l6 full", "mpnet-base full"}
    (ift,) = rows_of(table, role="generative NER (IFT), LoRA", source="lsfa")
    assert ift["system"] == "(no finished cell yet)"
    (ratio,) = rows_of(table, role="decoder LS-FA, LoRA (time)", source="lsfa")
    assert ratio["conll2003"]["mean"] == pytest.approx(3.015)
    markdown = table_markdown(table)
    columns = [header for _, header, _ in table.columns][-2:]  # corpora in report order (here alphabetical)
    assert columns == ["bc5cdr", "conll2003"]
    assert "| RoBERTa-base | 0.880 | 0.915 |" in markdown and "| 3.3× | 3.3× |" in markdown
    assert "| smollm2-135m lora LS-FA | - | 3.02× |" in markdown


def test_paper_table_only_for_the_papers_corpora_on_test(fabricated: Path) -> None:
    assert "paper" not in build_tables(collect_cells(fabricated), split="dev")


def test_several_grid_folders_make_one_report_and_only_selects_cells(fabricated: Path, tmp_path: Path) -> None:
    """A second grid with two more seeds of the LS-FA decoder: one row of four seeds; --only narrows both."""
    extra = tmp_path / "seeds"
    for seed, f1 in ((3, 0.70), (4, 1.00)):
        metrics = lsfa_metrics("smollm2-135m", "lora", "full", seed, f1, 135_000_000, 300.0)
        write_cell(extra, f"conll2003/smollm2-135m/lora/full/seed{seed}", None, metrics)
    cells = collect_cells([fabricated, extra], only="conll2003/smollm2-135m/lora/full/*")
    assert sorted(cell.seed for cell in cells) == [1, 2, 3, 4]
    (row,) = build_tables(cells)["main"].rows
    assert row["seeds"] == 4 and row["f1"]["mean"] == pytest.approx(0.85)
    assert len(collect_cells([fabricated, extra], only="mpnet")) == 1, "a plain word matches as a substring"

    paths = write_report([fabricated, extra], tmp_path / "out", only="conll2003/smollm2-135m/lora/*")
    markdown = paths["markdown"].read_text()
    assert f"# Experiment report: {fabricated} + {extra}" in markdown and "cells matching" in markdown
    report = json.loads(paths["json"].read_text())
    assert report["grids"] == [str(fabricated), str(extra)] and len(report["cells"]) == 4 + 3 + 2  # + layer groups
    with pytest.raises(LsfaError, match="no finished cells matching 'nothing'"):
        write_report([fabricated, extra], tmp_path / "none", only="nothing")


def test_the_same_cell_in_two_folders_is_refused_not_counted_twice(fabricated: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fabricated / "conll2003/mpnet-base", copy / "conll2003/mpnet-base")
    with pytest.raises(LsfaError, match="the same cell as"):
        collect_cells([fabricated, copy])
    assert len(collect_cells([fabricated, copy], only="minilm")) == 1, "only the selected cells are compared"


def test_cells_with_their_own_epoch_budget_or_machine_are_named_in_notes(fabricated: Path) -> None:
    """Cells sized to a time budget (fewer epochs) or run on another CPU/precision get a note; alike cells none."""
    tables = build_tables(collect_cells(fabricated))
    assert not any("epoch budget" in note or note.startswith("run on") for t in tables.values() for note in t.notes)

    for key, epochs in (("conll2003/minilm-l6/full/full/seed1", 3), ("conll2003/mpnet-base/full/full/seed1", 1)):
        path = fabricated / key / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics["config"]["epochs"] = epochs
        metrics["machine"] = {"cpu_model": "AMD EPYC", "torch_threads": 2}
        metrics["precision"] = "bf16"
        path.write_text(json.dumps(metrics))
    tables = build_tables(collect_cells(fabricated))
    (budget,) = [note for note in tables["main"].notes if note.startswith("epoch budget")]
    assert budget == "epoch budget: up to 3 epochs, except (epochs: cells) 1: conll2003 mpnet-base full"
    assert budget in tables["set"].notes and budget in tables["paper"].notes
    assert not any("time budget" in note for note in tables["main"].notes)
    path = fabricated / "conll2003/mpnet-base/full/full/seed1/metrics.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"stopped_by_max_train_time": 40, "epochs_run": 0.4}))
    notes = build_tables(collect_cells(fabricated))["main"].notes
    assert "training ended by its time budget (max_train_time): conll2003 mpnet-base full (after 0.4 epochs)" in notes
    (machine,) = [note for note in tables["time"].notes if note.startswith("run on")]
    assert machine.startswith("run on a CPU not recorded, ?, ? thread(s), except AMD EPYC, bf16, 2 thread(s): ")
    assert "conll2003 minilm-l6 full" in machine and "conll2003 mpnet-base full" in machine
    assert machine in tables["inference"].notes and machine in tables["paper"].notes

    path = fabricated / "conll2003/minilm-l6/full/full/seed1/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["machine"] = {"cpu_model": "Intel Xeon", "cpu_flags": ["avx512f", "amx_bf16"], "torch_threads": 1}
    path.write_text(json.dumps(metrics))
    (machine,) = [n for n in build_tables(collect_cells(fabricated))["time"].notes if n.startswith("run on")]
    assert "Intel Xeon with AMX, bf16, 1 thread(s): conll2003 minilm-l6 full" in machine, "AMX Xeons named apart"

"""`lsfa compare` (what `make main` runs): every variant trained once, reused on a re-run, and one table."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from lsfa.cli import main
from tests.tiny import tiny_decoder_dir
from tests.training.synthetic import write_synthetic_corpus


def test_compare_trains_each_variant_once_and_writes_the_table(tmp_path: Path, monkeypatch, capsys) -> None:
    config = {"model": str(tiny_decoder_dir(tmp_path / "tiny")), "corpus": str(write_synthetic_corpus(tmp_path / "c")),
              "epochs": 1, "batch_size": 8, "max_length": 64, "precision": "fp32", "test_split": None,
              "lora": {"r": 4, "alpha": 8}, "output_dir": str(tmp_path / "cmp")}  # fmt: skip
    (tmp_path / "main.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(sys, "argv", ["lsfa", "compare", "-c", str(tmp_path / "main.yaml")])
    main()
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "LS-FA" in table and "LS-CA" in table
    assert (tmp_path / "cmp" / "full" / "metrics.json").is_file() and (
        tmp_path / "cmp" / "causal" / "metrics.json"
    ).is_file()
    first = (tmp_path / "cmp" / "full" / "metrics.json").stat().st_mtime
    main()  # finished variants are reused, not retrained
    assert (tmp_path / "cmp" / "full" / "metrics.json").stat().st_mtime == first
    assert "LS-FA" in capsys.readouterr().out

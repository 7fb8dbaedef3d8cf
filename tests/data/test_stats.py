"""Corpus statistics and the ``lsfa data`` commands on small files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lsfa.cli import app, main
from lsfa.data.corpora import load_corpus
from lsfa.data.stats import corpus_stats, stats_table

TRAIN = """-DOCSTART- O

New B-LOC
York I-LOC
City I-LOC
is O
big O

Ann B-PER
Lee I-PER
met O
Bo B-PER

-DOCSTART- O

Acme B-ORG
"""


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A folder corpus with a two-document train split and an IOB1 test split."""
    (tmp_path / "train.txt").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "test.txt").write_text("x I-PER\ny O\n\n \nz O\n", encoding="utf-8")
    return tmp_path


def test_corpus_stats_counts_per_split(corpus_dir: Path) -> None:
    stats = corpus_stats(load_corpus(corpus_dir))
    train = stats["train"]
    assert (train["sentences"], train["tokens"], train["documents"]) == (3, 10, 2)
    assert train["entities"] == {"LOC": 1, "ORG": 1, "PER": 2}
    assert train["entity_lengths"] == {"1": 2, "2": 1, "3+": 1}
    test = stats["test"]
    # Every type of the corpus is listed in every split, so tables and JSON line up.
    assert test["entities"] == {"LOC": 0, "ORG": 0, "PER": 1}
    assert test["scheme"] == "IOB1"


def test_stats_table_shows_the_numbers(corpus_dir: Path) -> None:
    console = Console(width=100, record=True)
    console.print(stats_table(corpus_stats(load_corpus(corpus_dir)), title="demo"))
    text = console.export_text()
    assert "sentences" in text
    assert "3+ words" in text
    assert "IOB1" in text


def test_cli_stats_json(corpus_dir: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", str(corpus_dir), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["labels"] == ["LOC", "ORG", "PER"]
    assert payload["splits"]["train"]["entities"]["PER"] == 2


def test_cli_stats_named_corpus_with_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "bc5cdr"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.txt").write_text("Naloxone B-Chemical\n I-Chemical\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "stats", "bc5cdr", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Chemical" in result.stdout
    assert "train.txt:2: empty token kept as ''" in result.stderr


def test_cli_convert_to_bioes_and_back(corpus_dir: Path, tmp_path: Path) -> None:
    bioes, back = tmp_path / "out.bioes", tmp_path / "back.txt"
    runner = CliRunner()
    assert (
        runner.invoke(app, ["data", "convert", str(corpus_dir / "train.txt"), str(bioes), "--to", "IOBES"]).exit_code
        == 0
    )
    assert "S-PER" in bioes.read_text(encoding="utf-8")
    assert runner.invoke(app, ["data", "convert", str(bioes), str(back), "--to", "IOB2"]).exit_code == 0
    assert back.read_text(encoding="utf-8") == TRAIN + "\n"


def test_cli_user_error_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "train.txt"
    bad.write_text("a O\nb X-PER\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["lsfa", "data", "stats", str(bad)])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {bad}:2: unknown tag 'X-PER': expected 'O' or B-/I-/E-/S- followed by an entity type"
    ]

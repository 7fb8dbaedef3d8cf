"""`lsfa bench --choose-fast-path` on a tiny tagger: every candidate measured and scored, the fastest eligible one
recorded for this CPU, and Tagger.load / the CLI using it."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from lsfa.bench.fast_path import choose_fast_path
from lsfa.inference.fast_path import FAST_PATH_KEY, this_cpu
from lsfa.inference.tagger import Tagger
from lsfa.models.saving import read_meta


@pytest.fixture
def tagger_and_corpus(tiny_taggers, tmp_path):
    folder = shutil.copytree(tiny_taggers["rule"], tmp_path / "tagger")
    lines = []
    for sentence in (["Bob", "Carter", "sat", "on", "the", "mat"], ["the", "dog", "said", "Bill", "."]) * 6:
        lines += [f"{w} {'B-PER' if w[0] == 'B' else 'I-PER' if w[0] == 'C' else 'O'}" for w in sentence] + [""]
    corpus = tmp_path / "dev.txt"
    corpus.write_text("\n".join(lines) + "\n")
    return folder, corpus


def test_the_fastest_path_within_tolerance_is_recorded_and_used(tagger_and_corpus):
    folder, corpus = tagger_and_corpus
    record = choose_fast_path(str(folder), str(corpus), split="dev", sentences=None, rounds=1)
    rows = record["measured"]
    assert {row["precision"] for row in rows} >= {"fp32", "bf16", "bf16-full"}
    assert {row["max_batch_tokens"] for row in rows} == {1024, 2048, 4096} and {row["pack"] for row in rows} == {
        True, False}  # fmt: skip
    fp32 = next(row["f1"] for row in rows if row["precision"] == "fp32")
    assert fp32 == 1.0  # the rule tagger tags this corpus exactly
    choice = record["choice"]
    chosen = [row for row in rows if {k: row[k] for k in choice} == choice]
    assert chosen and chosen[0]["f1"] >= fp32 - record["f1_tolerance"]
    saved = read_meta(folder).extra[FAST_PATH_KEY][this_cpu()]
    assert saved["choice"] == choice and saved["sentences"] == 12
    loaded = Tagger.load(folder)
    assert (loaded.options.precision, loaded.options.pack, loaded.options.max_batch_tokens) == (
        choice["precision"], choice["pack"], choice["max_batch_tokens"])  # fmt: skip
    assert Tagger.load(folder, precision="fp32").precision == "fp32"
    assert Tagger.load(folder, fast_path=False).options.max_batch_tokens is None


def test_the_command_prints_the_table_and_records(tagger_and_corpus, tmp_path):
    from lsfa.cli import app

    folder, corpus = tagger_and_corpus
    out = tmp_path / "fast.json"
    args = ["bench", "--model-dir", str(folder), "--corpus", str(corpus), "--split", "dev", "--choose-fast-path"]
    args += ["--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sentences/s" in result.output and "recorded in" in result.output and out.is_file()
    assert this_cpu() in read_meta(folder).extra[FAST_PATH_KEY]

"""Bad command-line input ends with exit status 2 and one readable line on stderr, never a traceback.

One case per entry point and kind of mistake (issue: a missing model, a wrong corpus, an unreadable or
malformed config, an unknown key). Everything fails before any model is loaded, so the cases are cheap."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lsfa.cli import main

BROKEN_YAML = "model: [unclosed\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "broken.yaml").write_text(BROKEN_YAML)
    (tmp_path / "unknown.yaml").write_text("modle: smollm2-135m\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "gold.conll").write_text("EU B-ORG\n\n")
    (tmp_path / "corpus").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "corpus" / f"{split}.txt").write_text("EU B-ORG\n\n")
    return {name: str(tmp_path / name) for name in ("broken.yaml", "unknown.yaml", "list.yaml", "binary.yaml",
            "folder.yaml", "gold.conll", "missing.yaml", "no-tagger", "corpus")}  # fmt: skip


CASES = {
    "train: unknown model": (["train", "--model", "nonexistent-model", "--corpus", "{corpus}"], "unknown model"),
    "train: wrong corpus": (["train", "--corpus", "no-such-corpus"], "no corpus 'no-such-corpus'"),
    "train: YAML syntax": (["train", "-c", "{broken.yaml}"], "broken.yaml:2:1: YAML syntax error"),
    "train: unknown key": (["train", "-c", "{unknown.yaml}"], "modle: Extra inputs are not permitted"),
    "train: not a mapping": (["train", "-c", "{list.yaml}"], "must be a mapping of keys to values"),
    "train: unreadable": (["train", "-c", "{binary.yaml}"], "cannot read the config file"),
    "train: a folder": (["train", "-c", "{folder.yaml}"], "config file expected, found a folder"),
    "train: missing config": (["train", "-c", "{missing.yaml}"], "config file not found"),
    "compare: YAML syntax": (["compare", "-c", "{broken.yaml}"], "broken.yaml:2:1: YAML syntax error"),
    "predict: missing tagger": (["predict", "--model-dir", "{no-tagger}", "--text", "EU"], "no-tagger"),
    "evaluate: missing tagger": (
        ["evaluate", "--model-dir", "{no-tagger}", "--corpus", "{gold.conll}", "--split", "train"],
        "no-tagger",
    ),
    "evaluate: missing prediction file": (
        ["evaluate", "--gold", "{gold.conll}", "--pred", "{missing.yaml}"],
        "missing.yaml: no such file",
    ),
    "serve: missing tagger": (["serve", "--model-dir", "{no-tagger}"], "no-tagger"),
    "bench: missing tagger": (["bench", "--model-dir", "{no-tagger}", "--corpus", "conll2003"], "no-tagger"),
    "experiment run: YAML syntax": (["experiment", "run", "{broken.yaml}"], "broken.yaml:2:1: YAML syntax error"),
    "experiment run: unknown key": (["experiment", "run", "{unknown.yaml}"], "modle: Extra inputs"),
    "experiment run: missing grid": (["experiment", "run", "{missing.yaml}"], "grid file not found"),
    "experiment report: missing folder": (["experiment", "report", "{no-tagger}"], "no such folder"),
    "data stats: wrong corpus": (["data", "stats", "no-such-corpus"], "no corpus 'no-such-corpus'"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_and_status_2(case: str, files, monkeypatch, capsys) -> None:
    args, expected = CASES[case]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["lsfa", *(files.get(arg.strip("{}"), arg) for arg in args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2, errors
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert expected in errors[0] and "Traceback" not in errors[0]


def test_unknown_model_names_the_catalogue_and_the_network(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for split in ("train", "dev"):
        (tmp_path / f"{split}.txt").write_text("EU B-ORG\n\n")
    monkeypatch.setattr(sys, "argv", ["lsfa", "train", "--model", "nonexistent-model", "--corpus", str(tmp_path)])
    with pytest.raises(SystemExit):
        main()
    error = capsys.readouterr().err
    assert "smollm2-135m" in error and "not a local folder" in error and "network access" in error


@pytest.mark.parametrize(
    "args, expected",
    [(["nosuch"], "No such command 'nosuch'"), (["experiment", "nosuch"], "No such command 'nosuch'"),
     (["evaluate", "--nosuch"], "No such option"), (["experiment", "run"], "Missing argument")],
    ids=["command", "subcommand", "option", "argument"],
)  # fmt: skip
def test_usage_errors_show_usage_not_a_traceback(args: list[str], expected: str, monkeypatch, capsys) -> None:
    """Typos in commands and options end with click's usage message and status 2 (typer's own copy of click
    included, whose errors are not ``click.ClickException``)."""
    monkeypatch.setattr(sys, "argv", ["lsfa", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2, error
    assert expected in error and "Usage:" in error and "Traceback" not in error

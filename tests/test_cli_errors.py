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
    names = {name: str(tmp_path / name) for name in ("broken.yaml", "unknown.yaml", "list.yaml", "binary.yaml",
             "folder.yaml", "gold.conll", "missing.yaml", "no-tagger", "corpus")}  # fmt: skip
    return {**names, "in-a-file": str(tmp_path / "gold.conll" / "out")}  # an output path under a file


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
    # Outputs that cannot be written fail before any work (issue #37 item 2): here under a file, not a folder.
    "train: output not writable": (
        ["train", "--model", "{corpus}", "--corpus", "{corpus}", "--output-dir", "{in-a-file}"],
        "gold.conll/out: cannot write (Not a directory)",
    ),
    "data convert: output not writable": (
        ["data", "convert", "{gold.conll}", "{in-a-file}"],
        "gold.conll: cannot write (not a folder)",
    ),
    "export: output not writable": (["export", "{no-tagger}", "{in-a-file}"], "gold.conll: cannot write"),
    "evaluate --calibration: output not writable": (
        ["evaluate", "--model-dir", "{no-tagger}", "--corpus", "{corpus}", "--calibration", "{in-a-file}"],
        "gold.conll/out: cannot write (Not a directory)",
    ),
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


def _run_main(args: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["lsfa", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_second_train_into_one_output_dir_is_refused_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Another live process holds the run folder's lock (issue #37 item 1): exit 2, one line, its lock kept."""
    import os
    import socket

    from lsfa.runs import LOCK_FILE

    for split in ("train", "dev"):
        (tmp_path / f"{split}.txt").write_text("EU B-ORG\n\n")
    run = tmp_path / "run"
    run.mkdir()
    owner = f"{socket.gethostname()}:{os.getppid()}"  # alive: our parent
    (run / LOCK_FILE).write_text(owner + "\n")
    args = ["train", "--model", "nonexistent-model", "--corpus", str(tmp_path), "--output-dir", str(run)]
    code, errors = _run_main(args, monkeypatch, capsys)
    assert code == 2 and len(errors) == 1, errors
    assert f"{run}: another lsfa process ({owner}) is writing this run" in errors[0]
    assert (run / LOCK_FILE).read_text().strip() == owner


def test_a_full_disk_while_converting_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """An OS error in the middle of writing (no space left) names the file, exit 2, no traceback."""
    import errno
    import os
    from dataclasses import replace

    from lsfa.data import formats

    def full_disk(sentences, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setitem(formats.FORMATS, "jsonl", replace(formats.FORMATS["jsonl"], write=full_disk))
    (tmp_path / "gold.conll").write_text("EU B-ORG\n\n")
    code, errors = _run_main(["data", "convert", str(tmp_path / "gold.conll"), str(tmp_path / "out.jsonl")],
                             monkeypatch, capsys)  # fmt: skip
    assert code == 2 and len(errors) == 1, errors
    assert errors[0] == f"error: {tmp_path / 'out.jsonl'}: cannot write (No space left on device)"

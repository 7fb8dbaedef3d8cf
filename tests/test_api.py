"""The front door: ``import lsfa`` gives the documented names, and the README's Python example runs as written
(on a tiny random model and a synthetic corpus standing in for smollm2-135m and CoNLL-2003)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lsfa
from tests.tiny import tiny_decoder_dir
from tests.training.synthetic import write_synthetic_corpus

README = Path(__file__).resolve().parents[1] / "README.md"
FRONT_DOOR = ["Tagger", "Entity", "train", "evaluate", "TrainConfig", "load_config", "load_corpus",
              "set_attention", "restore_attention", "LsfaError", "TimeLimitReached"]  # fmt: skip


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("readme-python-example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_front_door_names_resolve_and_are_listed() -> None:
    for name in FRONT_DOOR:
        assert getattr(lsfa, name) is not None and name in lsfa.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lsfa.nope  # noqa: B018


def test_importing_lsfa_loads_no_heavy_module() -> None:
    """``lsfa --help`` and ``import lsfa`` must stay fast: nothing of torch or transformers until used."""
    code = "import sys, lsfa; print(sorted(m for m in ('torch', 'transformers', 'lsfa.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_evaluate_takes_tag_lists_and_files(tmp_path: Path) -> None:
    gold, predicted = [["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]
    assert lsfa.evaluate(gold, predicted, words=[["Peter", "Smith", "left"]])["micro"]["f1"] == 1.0
    (tmp_path / "gold.conll").write_text("Peter B-PER\nSmith I-PER\nleft O\n\n")
    (tmp_path / "pred.conll").write_text("Peter B-PER\nSmith O\nleft O\n\n")
    assert lsfa.evaluate(tmp_path / "gold.conll", tmp_path / "pred.conll")["micro"]["f1"] == 0.0
    with pytest.raises(lsfa.LsfaError, match="only when evaluating a tagger"):
        lsfa.evaluate(gold, predicted, corpus="conll2003")


def test_readme_python_example_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    write_synthetic_corpus(data / "conll2003", train=32, dev=8, test=8)
    (tmp_path / "configs").mkdir()
    config = {"model": str(tiny_decoder_dir(tmp_path / "tiny", "llama")), "corpus": "conll2003",
              "output_dir": "runs/main", "mode": "lora", "lora": {"r": 4, "alpha": 8}, "epochs": 2,
              "batch_size": 8, "learning_rate": 5.0e-3, "max_length": 64, "precision": "fp32",
              "test_split": None}  # fmt: skip
    (tmp_path / "configs" / "main.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LSFA_DATA_DIR", str(data))
    exec(compile(readme_example(), str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "Entity(" in out or "[]" in out
    assert (tmp_path / "runs" / "main" / "model").is_dir() and (tmp_path / "runs" / "main" / "metrics.json").is_file()


def test_train_overrides_of_a_config_object_merge_nested_keys() -> None:
    from lsfa.api import _config_of

    config = _config_of(lsfa.TrainConfig(), {"lora": {"r": 8}, "epochs": 1})
    assert (config.lora.r, config.lora.alpha, config.epochs) == (8, 64, 1)  # alpha kept, not reset

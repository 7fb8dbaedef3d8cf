"""End-to-end training on a tiny random llama and a synthetic corpus: run folder, test-split hygiene, early stopping,
document context, gradient accumulation, resume after SIGKILL, and a two-rank torchrun run.

Every run uses one CPU thread per process and a few dozen optimiser steps, so each takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lsfa.data.conll import read_conll
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.machine import cpu_label
from lsfa.training.callbacks import TIMING_FILE
from lsfa.training.checkpoints import last_complete_checkpoint, stopped_at
from lsfa.training.config import TrainConfig, load_config
from lsfa.training.runner import train
from lsfa.training.time_limit import TimeLimitReached
from tests.tiny import tiny_decoder_dir
from tests.training.synthetic import synthetic_sentence

SENTENCES = {"train": 160, "dev": 40, "test": 40}
SENTENCES_PER_DOCUMENT = 8
BATCH_SIZE = 16
STEPS_PER_EPOCH = SENTENCES["train"] // BATCH_SIZE  # 10
EPOCHS = 3
TIMING_KEYS = {"train_seconds_per_epoch", "train_tokens_per_second", "peak_memory_mb", "wall_seconds"}
SPLIT_EXTRA_KEYS = {"inference_seconds", "ms_per_sentence", "cut_words", "decoding"}
SUBPROCESS_TIMEOUT = 600


def write_corpus(folder: Path, splits=("train", "dev", "test"), seed: int = 0) -> Path:
    """Two-column CoNLL files with a ``-DOCSTART-`` every few sentences (documents for context tests)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in SENTENCES.items():
        lines: list[str] = []
        for index in range(count):
            if index % SENTENCES_PER_DOCUMENT == 0:
                lines += ["-DOCSTART- O", ""]
            lines += [f"{word} {tag}" for word, tag in synthetic_sentence(rng)]
            lines.append("")
        if split in splits:
            (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def tiny_model(workspace: Path) -> Path:
    return tiny_decoder_dir(workspace / "model", "llama")


@pytest.fixture(scope="module")
def corpus(workspace: Path) -> Path:
    return write_corpus(workspace / "corpus")


def settings_for(model: Path, corpus: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A run that learns the synthetic corpus in a few seconds (LoRA r=4, high learning rate)."""
    return {
        "model": str(model),
        "corpus": str(corpus),
        "output_dir": str(output_dir),
        "mode": "lora",
        "lora": {"r": 4, "alpha": 8},
        "epochs": EPOCHS,
        "learning_rate": 5.0e-3,
        "batch_size": BATCH_SIZE,
        "eval_batch_size": 32,
        "max_length": 64,
        "precision": "fp32",
        "logging_steps": 5,
        "seed": 0,
        "threads": 1,
        **overrides,
    }


@pytest.fixture(scope="module")
def main_run(workspace: Path, tiny_model: Path, corpus: Path):
    """One in-process LoRA run whose test split does not exist until ``Trainer.train`` has returned.

    The test file is written by a wrapper around ``Trainer.train`` right after it returns, so any read of
    the test split during training fails loudly instead of passing unnoticed. Every CoNLL read is logged.
    """
    import transformers

    import lsfa.data.formats

    hidden = workspace / "corpus-hidden-test"
    write_corpus(hidden, splits=("train", "dev"))
    events: list[str] = []
    original_train = transformers.Trainer.train
    original_read = lsfa.data.formats.read_conll  # corpora read CoNLL through the format registry

    def train_then_reveal_test(self, *args, **kwargs):
        events.append("train:start")
        result = original_train(self, *args, **kwargs)
        events.append("train:end")
        shutil.copy(corpus / "test.txt", hidden / "test.txt")
        return result

    def logged_read(path, *args, **kwargs):
        events.append(f"read:{Path(path).name}")
        return original_read(path, *args, **kwargs)

    config = load_config(None, settings_for(tiny_model, hidden, workspace / "main-run"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transformers.Trainer, "train", train_then_reveal_test)
        patch.setattr(lsfa.data.formats, "read_conll", logged_read)
        metrics = train(config, log=lambda message: None)
    return {"metrics": metrics, "run_dir": workspace / "main-run", "events": events, "config": config}


# --------------------------------------------------------------------------------------------------------------
# One complete run
# --------------------------------------------------------------------------------------------------------------


def test_run_folder_has_config_metrics_predictions_and_model(main_run) -> None:
    run_dir = main_run["run_dir"]
    for name in ("config.yaml", "metrics.json", "predictions/dev.conll", "predictions/test.conll", "model/lsfa.json"):
        assert (run_dir / name).is_file(), name
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["dev"]["micro"] == main_run["metrics"]["dev"]["micro"]
    assert load_config(run_dir / "config.yaml") == main_run["config"]


def test_metrics_hold_evaluation_reports_and_timings(main_run) -> None:
    metrics = main_run["metrics"]
    gold = read_conll(main_run["run_dir"] / "predictions" / "dev.conll").sentences
    report_keys = set(evaluate_sentences([s.tags for s in gold], [s.tags for s in gold], [s.tokens for s in gold]))
    assert set(metrics["dev"]) == report_keys | SPLIT_EXTRA_KEYS
    assert set(metrics["test"]) == report_keys | SPLIT_EXTRA_KEYS | {"latency_ms"}, "batch-of-one timing on test"
    latency = metrics["test"]["latency_ms"]
    assert latency["n"] == SENTENCES["test"] and latency["batch_size"] == 1 and latency["mean"] > 0
    assert set(metrics) >= TIMING_KEYS
    assert len(metrics["train_seconds_per_epoch"]) == metrics["epochs_run"] == EPOCHS
    assert metrics["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert metrics["train_tokens_per_second"] > 0
    assert metrics["ranks"] == {"world_size": 1, "fingerprints": metrics["ranks"]["fingerprints"], "agree": True}
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"]
    assert metrics["dev"]["micro"]["f1"] > 0.3, "the synthetic corpus should be learnable in three epochs"
    for split in ("dev", "test"):  # viterbi beside argmax, over the same outputs
        decoding = metrics[split]["decoding"]
        assert decoding["argmax_ill_formed_tags"] >= 0 and 0 <= decoding["viterbi"]["micro"]["f1"] <= 1


def test_temperature_is_fitted_on_dev_and_saved_with_the_tagger(main_run) -> None:
    from lsfa.models.saving import read_meta

    temperature = main_run["metrics"]["temperature"]
    assert 0.05 <= temperature <= 20 and temperature != 1.0
    assert read_meta(main_run["run_dir"] / "model").temperature == temperature


def test_test_split_is_read_only_after_training(main_run) -> None:
    events = main_run["events"]
    assert events.count("read:test.txt") == 1
    assert events.index("read:test.txt") > events.index("train:end")
    assert "read:train.txt" in events[: events.index("train:start")]
    assert main_run["metrics"]["test"]["micro"]["support"] > 0


def test_prediction_files_match_the_reported_scores(main_run, corpus: Path) -> None:
    for split in ("dev", "test"):
        gold = read_conll(corpus / f"{split}.txt").sentences
        predicted = read_conll(main_run["run_dir"] / "predictions" / f"{split}.conll").sentences
        assert [s.tokens for s in predicted] == [s.tokens for s in gold]
        report = evaluate_sentences([s.tags for s in gold], [s.tags for s in predicted], [s.tokens for s in gold])
        assert report["micro"] == main_run["metrics"][split]["micro"]


def test_saved_model_reproduces_the_dev_predictions(main_run, corpus: Path) -> None:
    from lsfa.inference.predictor import predict_words
    from lsfa.models.saving import load_tagger

    model, tokenizer, meta = load_tagger(main_run["run_dir"] / "model")
    assert meta.weights == "lora"
    assert meta.attention == "full"
    dev = read_conll(corpus / "dev.txt").sentences
    predicted = predict_words(model, tokenizer, [s.tokens for s in dev], max_length=meta.max_length)
    written = read_conll(main_run["run_dir"] / "predictions" / "dev.conll").sentences
    assert predicted.tags == [s.tags for s in written]


def test_a_finished_run_is_not_overwritten(main_run) -> None:
    with pytest.raises(LsfaError, match="finished run"):
        train(main_run["config"], log=lambda message: None)


# --------------------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------------------


def test_early_stopping_ends_training_when_dev_f1_stalls(tmp_path: Path, tiny_model: Path, corpus: Path) -> None:
    """A learning rate too small to change any prediction: dev F1 never improves after epoch 1. Resumed after
    training had stopped (a kill while predicting: no metrics.json yet), the run must not train on."""
    settings = settings_for(
        tiny_model, corpus, tmp_path / "run", epochs=6, learning_rate=1e-12, early_stopping_patience=1, test_split=None
    )
    metrics = train(load_config(None, settings), log=lambda message: None)
    assert metrics["epochs_run"] == 2
    assert metrics["global_step"] == 2 * STEPS_PER_EPOCH
    assert "test" not in metrics
    assert not (tmp_path / "run" / "predictions" / "test.conll").exists()

    (tmp_path / "run" / "metrics.json").unlink()
    lines: list[str] = []
    resumed = train(load_config(None, settings), resume=True, log=lines.append)
    assert resumed["global_step"] == 2 * STEPS_PER_EPOCH, "the Trainer clears its stop flag: capped at the stop"
    assert resumed["epochs_run"] == 2 and resumed["best_checkpoint"] == metrics["best_checkpoint"]
    assert any(f"training had ended at step {2 * STEPS_PER_EPOCH}" in line for line in lines)


@pytest.mark.parametrize("context", ["document", "document-windows"])
def test_document_context_run_with_merged_export(tmp_path: Path, tiny_model: Path, corpus: Path, context: str) -> None:
    from transformers import AutoModelForTokenClassification

    from lsfa.models.attention import restore_attention
    from lsfa.models.saving import read_meta

    settings = settings_for(tiny_model, corpus, tmp_path / "run", epochs=1, context=context, save_merged=True)
    metrics = train(load_config(None, settings), log=lambda message: None)
    assert metrics["config"]["context"] == context
    assert metrics["dev"]["micro"]["support"] > 0 and metrics["test"]["micro"]["support"] > 0
    meta = read_meta(tmp_path / "run" / "model")
    assert (meta.context, meta.weights) == (context, "merged")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "run" / "model")
    assert str(restore_attention(model)) == "full"


def test_gradient_accumulation_divides_the_loss(tmp_path: Path, tiny_model: Path) -> None:
    """Regression: token classifiers accept **kwargs, so the stock Trainer skipped the division by
    gradient_accumulation (and multiplied by world_size under DDP). The logged loss of the first step must be
    the mean loss of its batches, not their sum."""
    from transformers import DataCollatorForTokenClassification, set_seed

    from lsfa.data.align import IGNORE_INDEX
    from lsfa.data.types import Sentence
    from lsfa.training.dataset import RowDataset, encode_split
    from lsfa.training.model import build_model
    from lsfa.training.trainer import ner_trainer_class, training_arguments

    labels = ["O", "B-PER", "B-LOC"]
    sentences = [Sentence(["Peter", "visited", "Paris"], ["B-PER", "O", "B-LOC"])] * 4
    config = load_config(
        None,
        settings_for(
            tiny_model, tmp_path, tmp_path / "run", lora={"r": 4, "alpha": 8, "dropout": 0.0},
            batch_size=2, gradient_accumulation=2, max_steps=1, logging_steps=1, early_stopping_patience=None,
        ),
    )  # fmt: skip
    set_seed(config.seed)
    model, tokenizer, _ = build_model(config, labels)
    rows = encode_split(tokenizer, sentences, labels, config, train=True)
    collator = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    batch = collator([RowDataset(rows)[k] for k in range(4)])
    with torch.no_grad():
        initial_loss = model(**batch).loss.item()
    args = training_arguments(config, "fp32", tmp_path / "run")
    args.eval_strategy = args.save_strategy = "no"
    args.load_best_model_at_end = False
    trainer = ner_trainer_class()(
        model=model, args=args, train_dataset=RowDataset(rows), data_collator=collator, processing_class=tokenizer
    )
    trainer.train()
    logged = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    # Not exact: the classifier's dropout is active in training. Unscaled, the loss would be twice as large.
    assert logged == pytest.approx(initial_loss, rel=0.05)


def test_last_complete_checkpoint_skips_and_removes_partial_ones(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    assert last_complete_checkpoint(tmp_path) is None
    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_step": 10}'), (15, '{"global_st'), (20, None)):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (checkpoints / "notes").mkdir()
    assert last_complete_checkpoint(tmp_path) == checkpoints / "checkpoint-10"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-10", "checkpoint-5", "notes"]


def test_last_complete_checkpoint_orders_steps_numerically(tmp_path: Path) -> None:
    for step in (9, 10, 100):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-100"


# --------------------------------------------------------------------------------------------------------------
# Separate processes: resume after SIGKILL, torchrun with two ranks
# --------------------------------------------------------------------------------------------------------------


def write_run_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def run_cli(args: list[str], cwd: Path, timeout: int = SUBPROCESS_TIMEOUT, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    return subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout, check=False)


def lsfa_train(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "lsfa.cli", "train", "--config", str(config), *flags]


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("checkpoint_steps", [None, STEPS_PER_EPOCH // 2], ids=["epoch-checkpoint", "mid-epoch"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(
    main_run, tiny_model: Path, corpus: Path, tmp_path, checkpoint_steps
) -> None:
    """Kill mid-epoch 2 and resume: same final step and dev F1 as ``main_run``, and every epoch still timed.

    With epoch checkpoints only, the run resumes from epoch 1's; with ``checkpoint_steps`` it resumes from the
    step checkpoint in the middle of epoch 2, and that epoch's time adds the part run before the kill."""
    run_dir = tmp_path / "run"
    settings = settings_for(tiny_model, corpus, run_dir, checkpoint_steps=checkpoint_steps)
    config = write_run_config(tmp_path / "run.yaml", settings)
    kill_step = STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2 + 2
    resume_step = kill_step - 2 if checkpoint_steps else STEPS_PER_EPOCH

    killer = Path(__file__).with_name("killed_train.py")
    killed = run_cli([sys.executable, str(killer), str(config), str(kill_step)], cwd=tmp_path)
    assert killed.returncode == -9, describe(killed)
    assert not (run_dir / "metrics.json").exists()
    resume_from = run_dir / "checkpoints" / f"checkpoint-{resume_step}"
    assert last_complete_checkpoint(run_dir) == resume_from
    saved_timing = json.loads((resume_from / TIMING_FILE).read_text())
    assert len(saved_timing["epochs"]) == 1
    assert (saved_timing["epoch_seconds"] > 0) == bool(checkpoint_steps)
    # A checkpoint whose trainer_state.json was cut short by the kill must be ignored, and removed.
    partial = run_dir / "checkpoints" / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    partial.mkdir()
    (partial / "trainer_state.json").write_text('{"global_step": 2')

    resumed = run_cli(lsfa_train(config, "--resume"), cwd=tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    assert f"resuming from {resume_from}" in resumed.stdout
    assert not partial.exists() or (partial / "trainer_state.json").read_text() != '{"global_step": 2'
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reference = main_run["metrics"]
    assert metrics["global_step"] == reference["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert metrics["dev"]["micro"]["f1"] == pytest.approx(reference["dev"]["micro"]["f1"], abs=0.005)
    # The killed process's epoch and part-epoch are counted: three epochs, and the total covers them all.
    assert metrics["epochs_run"] == EPOCHS
    assert metrics["train_seconds_per_epoch"][0] == pytest.approx(saved_timing["epochs"][0]["seconds"])
    assert metrics["train_seconds_per_epoch"][1] > saved_timing["epoch_seconds"]
    assert metrics["train_seconds"] > saved_timing["train_seconds"] + metrics["train_seconds_per_epoch"][2]


def test_a_run_past_its_deadline_stops_at_a_checkpoint_and_resumes_to_the_same_end(
    main_run, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """A deadline already passed: the first step saves checkpoint-1 and stops; resuming ends like ``main_run``."""
    run_dir = tmp_path / "run"
    config = load_config(None, settings_for(tiny_model, corpus, run_dir))
    with pytest.raises(TimeLimitReached) as stop:
        train(config, log=lambda _: None, deadline=time.time() - 1)
    assert (stop.value.step, stop.value.max_steps) == (1, EPOCHS * STEPS_PER_EPOCH)
    assert "run the same command to resume" in str(stop.value)
    assert not (run_dir / "metrics.json").exists(), "a stopped run is not a finished one"
    checkpoint = last_complete_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name == "checkpoint-1"
    assert stopped_at(checkpoint) is None, "the stop is not recorded as the end of training"
    assert json.loads((checkpoint / TIMING_FILE).read_text())["train_seconds"] > 0, "the timer saved first"

    metrics = train(config, resume=True, log=lambda _: None, deadline=time.time() + 3600)
    reference = main_run["metrics"]
    assert metrics["global_step"] == reference["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert metrics["dev"]["micro"]["f1"] == pytest.approx(reference["dev"]["micro"]["f1"], abs=0.005)
    assert metrics["epochs_run"] == EPOCHS


def test_max_train_time_ends_the_run_at_the_state_reached_and_finishes_it(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """A budget spent by the first step: training ends there (a tenth into epoch 1), that state is evaluated on
    dev, kept as the best checkpoint and scored on test; the run is finished, not paused."""
    run_dir = tmp_path / "run"
    config = load_config(None, settings_for(tiny_model, corpus, run_dir, max_train_time=1e-6))
    metrics = train(config, log=lambda _: None)
    assert metrics["global_step"] == 1 and metrics["stopped_by_max_train_time"] == 1
    assert metrics["epochs_run"] == pytest.approx(1 / STEPS_PER_EPOCH)
    assert metrics["best_checkpoint"].endswith("checkpoint-1") and "eval_f1" in metrics["epoch_log"][-1]
    assert metrics["mean_epoch_seconds"] == pytest.approx(metrics["train_seconds_per_epoch"][0] * STEPS_PER_EPOCH)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "predictions" / "test.conll").is_file()


def test_cli_train_time_limit_exits_75_and_resume_finishes(
    tiny_model: Path, corpus: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from lsfa.cli import main

    config = write_run_config(tmp_path / "run.yaml", settings_for(tiny_model, corpus, tmp_path / "run", epochs=1))

    def cli(*flags: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["lsfa", "train", "--config", str(config), *flags])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        return code, capsys.readouterr().out

    code, out = cli("--time-limit", "0.000001")
    assert code == 75 and "time limit reached: checkpoint saved at step 1" in out, out
    code, out = cli("--resume", "--time-limit", "1h")
    assert code == 0 and json.loads((tmp_path / "run" / "metrics.json").read_text())["global_step"] == STEPS_PER_EPOCH


def test_torchrun_two_ranks_agree(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    """Two CPU ranks (gloo) train one model: rank 0 writes the run folder, both hold identical weights."""
    run_dir = tmp_path / "run"
    config = write_run_config(tmp_path / "run.yaml", settings_for(tiny_model, corpus, run_dir, epochs=2))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    result = run_cli([*command, *lsfa_train(config)[2:]], cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["ranks"]["world_size"] == 2
    assert metrics["ranks"]["agree"] is True
    assert len(metrics["ranks"]["fingerprints"]) == 2
    # Each optimiser step consumes two per-rank batches.
    assert metrics["global_step"] == 2 * -(-SENTENCES["train"] // (2 * BATCH_SIZE))
    assert (run_dir / "predictions" / "test.conll").is_file()
    assert (run_dir / "model" / "lsfa.json").is_file()
    assert result.stdout.count("run folder:") == 1, "only rank 0 reports and writes the run folder"


def test_torchrun_ranks_stop_at_the_time_limit_together(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    """Rank 1's clock never reaches the deadline (skewed_clock_train.py): rank 0's decision stops both at the
    same step, with a checkpoint and no hang."""
    run_dir = tmp_path / "run"
    config = write_run_config(tmp_path / "run.yaml", settings_for(tiny_model, corpus, run_dir, epochs=2))
    script = Path(__file__).with_name("skewed_clock_train.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    # Ranks that disagree hang in a collective: a short timeout makes that a failure, not a 10-minute wait.
    result = run_cli([*command, "--config", str(config), "--time-limit", "0.000001"], cwd=tmp_path, timeout=180)
    assert result.returncode != 0 and result.stdout.count("time limit reached: checkpoint saved at step 1") == 2, (
        describe(result)
    )
    assert last_complete_checkpoint(run_dir).name == "checkpoint-1" and not (run_dir / "metrics.json").exists()


def test_bf16_lora_run_casts_frozen_weights_and_its_saved_model_predicts_the_same(
    tmp_path: Path, tiny_model: Path, corpus: Path, monkeypatch
) -> None:
    """bf16 LoRA training stores the frozen base weights in bf16 once and trains short rows with the math
    attention kernel; the saved adapter (on an fp32 base, under autocast) must give the written predictions."""
    import lsfa.models.optimise
    import lsfa.training.kernels
    import lsfa.training.runner
    import lsfa.training.trainer
    from lsfa.inference.predictor import predict_words
    from lsfa.models.saving import load_tagger

    widths: list[int] = []
    original = lsfa.training.kernels.training_attention_context

    def recording(width, device, kernels="fast"):
        widths.append(width)
        assert kernels == "fast"
        return original(width, device, kernels)

    cast_layers: list[int] = []
    original_cast = lsfa.models.optimise.cast_frozen_linear_weights

    def recording_cast(model, dtype=torch.bfloat16):
        cast_layers.append(original_cast(model, dtype))
        assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
        return cast_layers[-1]

    monkeypatch.setattr(lsfa.training.trainer, "training_attention_context", recording)  # where the Trainer calls it
    monkeypatch.setattr(lsfa.training.runner, "cast_frozen_linear_weights", recording_cast)
    settings = settings_for(tiny_model, corpus, tmp_path / "run", epochs=1, precision="bf16", test_split=None)
    metrics = train(load_config(None, settings), log=lambda message: None)
    assert metrics["precision"] == "bf16"
    assert cast_layers and cast_layers[0] > 0
    assert len(widths) == STEPS_PER_EPOCH
    model, tokenizer, meta = load_tagger(tmp_path / "run" / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    dev = read_conll(corpus / "dev.txt").sentences
    predicted = predict_words(model, tokenizer, [s.tokens for s in dev], max_length=meta.max_length, precision="bf16")
    written = read_conll(tmp_path / "run" / "predictions" / "dev.conll").sentences
    assert predicted.tags == [s.tags for s in written]


def test_the_saved_tagger_has_a_model_card(main_run) -> None:
    card = (main_run["run_dir"] / "model" / "README.md").read_text()
    metrics = main_run["metrics"]
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: token-classification")
    for needle in ("attention: `full`", "LoRA r=4, alpha=8", "## Scores", f"{metrics['test']['micro']['f1']:.4f}",
                   "calibrated temperature", "- command: `", "## Intended use and limits", "lsfa 0.1.0",
                   f"machine {cpu_label(metrics['machine'])}"):  # fmt: skip
        assert needle in card, needle


def test_a_shallow_tagger_trains_saves_and_reloads_with_its_k_layers(tiny_model: Path, corpus: Path, tmp_path) -> None:
    import lsfa

    settings = settings_for(tiny_model, corpus, tmp_path / "shallow", layers=1, epochs=1)
    tagger = lsfa.train(TrainConfig.model_validate(settings), log=lambda _: None)
    assert tagger.meta.layers == 1 and tagger.model.config.num_hidden_layers == 1
    assert json.loads((tmp_path / "shallow" / "metrics.json").read_text())["config"]["layers"] == 1


# --------------------------------------------------------------------------------------------------------------
# One writer per run folder, write errors, an idempotent final save (issue #37 items 1, 2, 6)
# --------------------------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_before_any_work(tmp_path: Path, corpus: Path) -> None:
    """A live process's lock in the output folder: refused in one line, before the (missing) model is loaded,
    and the other process's lock and checkpoints are left alone."""
    import socket

    from lsfa.runs import LOCK_FILE

    run_dir = tmp_path / "run"
    partial = run_dir / "checkpoints" / "checkpoint-3"  # the other process is writing it
    partial.mkdir(parents=True)
    owner = f"{socket.gethostname()}:{os.getppid()}"  # alive: our parent
    (run_dir / LOCK_FILE).write_text(owner + "\n")
    config = load_config(None, settings_for(tmp_path / "no-such-model", corpus, run_dir))
    with pytest.raises(LsfaError, match=f"another lsfa process \\({owner}\\) is writing this run"):
        train(config, resume=True, log=lambda message: None)
    assert (run_dir / LOCK_FILE).read_text().strip() == owner
    assert partial.is_dir(), "--resume must not remove a checkpoint another process is writing"


def test_the_lock_is_released_when_a_run_ends(tmp_path: Path, tiny_model: Path, corpus: Path) -> None:
    from lsfa.runs import LOCK_FILE

    run_dir = tmp_path / "run"
    config = load_config(None, settings_for(tiny_model, corpus, run_dir, max_steps=1, test_split=None))
    seen: list[bool] = []
    train(config, log=lambda message: seen.append((run_dir / LOCK_FILE).exists()))
    assert seen and all(seen), "held while the run writes"
    assert not (run_dir / LOCK_FILE).exists()


def test_an_output_folder_that_cannot_be_written_fails_before_loading(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    config = load_config(None, settings_for(tmp_path / "no-such-model", corpus, tmp_path / "a-file" / "run"))
    with pytest.raises(LsfaError, match=r"a-file/run: cannot write \(Not a directory\)"):
        train(config, log=lambda message: None)


def _no_space_in_final_save(monkeypatch) -> None:
    """The final save of the selected tagger fails as on a full disk, after writing part of the folder."""
    import errno

    import lsfa.training.runner

    def full_disk(model, tokenizer, folder, meta, merge=False):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "adapter_model.safetensors"))

    monkeypatch.setattr(lsfa.training.runner, "save_tagger", full_disk)  # the run's final save


def test_a_write_error_is_one_line_and_leaves_no_finished_record(
    tmp_path: Path, tiny_model: Path, corpus: Path, monkeypatch
) -> None:
    from lsfa.errors import WriteError
    from lsfa.runs import LOCK_FILE

    run_dir = tmp_path / "run"
    config = load_config(None, settings_for(tiny_model, corpus, run_dir, max_steps=2, test_split=None))
    _no_space_in_final_save(monkeypatch)
    with pytest.raises(WriteError, match=r"model/adapter_model.safetensors: cannot write \(No space left on device\)"):
        train(config, log=lambda message: None)
    assert not (run_dir / "metrics.json").exists(), "a later --resume must not take the run as finished"
    assert not (run_dir / LOCK_FILE).exists()


def test_a_resume_after_a_failed_final_save_reports_the_run_as_it_ended(
    tmp_path: Path, tiny_model: Path, corpus: Path, monkeypatch
) -> None:
    """Training ended inside an epoch (``max_steps`` 4 of 10 per epoch), then the final save failed: the
    resumed run restores that state, and takes no further step (it used to report step 5 and 0.5 epochs)."""
    run_dir = tmp_path / "run"
    steps = 4
    config = load_config(None, settings_for(tiny_model, corpus, run_dir, max_steps=steps, test_split=None))
    with monkeypatch.context() as patch:
        _no_space_in_final_save(patch)
        with pytest.raises((LsfaError, OSError)):  # a WriteError; OSError before issue #37
            train(config, log=lambda message: None)
    saved = json.loads((run_dir / "checkpoints" / f"checkpoint-{steps}" / TIMING_FILE).read_text())
    metrics = train(config, resume=True, log=lambda message: None)
    assert metrics["global_step"] == steps
    assert metrics["epochs_run"] == pytest.approx(steps / STEPS_PER_EPOCH)
    assert len(metrics["epoch_log"]) == len(saved["epochs"]) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"checkpoint-{steps}"]
    assert (run_dir / "model" / "lsfa.json").is_file()

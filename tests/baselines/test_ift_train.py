"""The IFT baseline's training: loss masking, options, a tiny end-to-end run and its metrics, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsfa.baselines.ift import build_prompt
from lsfa.baselines.ift_train import encode_example, loss_sample, split_options, train_ift
from lsfa.data.align import IGNORE_INDEX
from lsfa.errors import LsfaError
from lsfa.training.config import load_config
from tests.tiny import CORPUS, byte_bpe_tokenizer, tiny_causal_lm_dir
from tests.training.synthetic import ENTITIES, FILLERS, write_synthetic_corpus

SPLIT_KEYS = {"set", "malformed", "n_sentences", "ms_per_sentence", "inference_seconds", "cut_responses"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ift")


@pytest.fixture(scope="module")
def corpus(workspace: Path) -> Path:
    return write_synthetic_corpus(workspace / "corpus", train=16, dev=6, test=5)


def tiny_lm(folder: Path, tied: bool = True) -> Path:
    """A tiny causal LM whose tokenizer has learnt the prompt's words (~120 tokens a prompt, not ~350 bytes)."""
    prompt = build_prompt(["Peter", "visited", "New", "York"], ["LOC", "ORG", "PER"])
    answers = " ".join([*ENTITIES, *FILLERS, "New York"]) + " :LOC; :ORG; :PER; None"
    return tiny_causal_lm_dir(folder, tied=tied, texts=CORPUS + [prompt, answers] * 3)


def tiny_config(model: Path, corpus: Path, **overrides):
    settings = {
        "model": str(model),
        "corpus": str(corpus),
        "epochs": 2,
        "batch_size": 8,
        "eval_batch_size": 8,
        "learning_rate": 5e-3,
        "lora": {"r": 2, "alpha": 4},
        "max_length": 256,
        "precision": "fp32",
        "early_stopping_patience": 1,
        "logging_steps": 1,
        "threads": 1,
        **overrides,
    }
    return load_config(None, settings)


# --- examples --------------------------------------------------------------------------------------------
def test_loss_is_on_the_response_and_end_token_only() -> None:
    tokenizer = byte_bpe_tokenizer()
    prompt = build_prompt(["Peter", "visited", "Paris"], ["PER", "LOC"])
    row = encode_example(tokenizer, prompt, "Peter:PER;Paris:LOC;", max_length=4096)
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer("Peter:PER;Paris:LOC;", add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert row["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert row["labels"][len(prompt_ids) :] == [*response_ids, tokenizer.eos_token_id]
    assert IGNORE_INDEX not in row["labels"][len(prompt_ids) :]


def test_pairs_longer_than_max_length_are_left_out_not_cut() -> None:
    tokenizer = byte_bpe_tokenizer()
    prompt = build_prompt(["Peter"], ["PER"])
    length = len(tokenizer(prompt)["input_ids"]) + len(tokenizer("None", add_special_tokens=False)["input_ids"]) + 1
    assert encode_example(tokenizer, prompt, "None", max_length=length) is not None
    assert encode_example(tokenizer, prompt, "None", max_length=length - 1) is None


# --- options ---------------------------------------------------------------------------------------------
def test_grid_options_split_into_training_overrides_and_generation_settings() -> None:
    base = load_config(None, {"learning_rate": 1e-4})
    config, settings = split_options(base, {"model": "some/model", "epochs": 1, "max_new_tokens": 32})
    assert (config.model, config.epochs, config.learning_rate) == ("some/model", 1, 1e-4)
    assert settings.max_new_tokens == 32 and settings.generation_batch_size is None
    with pytest.raises(LsfaError, match=r"unknown option.*max_tokens"):
        split_options(base, {"max_tokens": 3})
    with pytest.raises(LsfaError, match="max_new_tokens"):
        split_options(base, {"max_new_tokens": 0})
    with pytest.raises(LsfaError, match="learning_rate"):
        split_options(base, {"learning_rate": -1})
    assert split_options(base, {"mode": "full"})[0].finetune == "full"  # the old key name, as in every config
    with pytest.raises(LsfaError, match="ift options: mode: full and finetune: lora disagree"):
        split_options(base, {"mode": "full", "finetune": "lora"})


def test_dev_loss_batches_are_no_larger_than_training_batches(tmp_path: Path) -> None:
    """Vocabulary-sized logits for every dev prompt token: big eval batches ran a real run out of memory."""
    from lsfa.baselines.ift_train import ift_training_arguments

    config = load_config(None, {"batch_size": 8, "eval_batch_size": 64})
    args = ift_training_arguments(config, "fp32", tmp_path)
    assert args.per_device_eval_batch_size == 8 and args.prediction_loss_only
    assert args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.eval_strategy == args.save_strategy == "epoch"


def test_the_papers_stopping_rule_evaluates_every_n_steps(tmp_path: Path) -> None:
    """eval_steps N + early_stopping_patience 10 is the paper's rule: dev loss every N steps, checkpoints with
    it (so the best one can be restored), stop after 10 evaluations without a lower loss."""
    from lsfa.baselines.ift_train import ift_training_arguments

    config, settings = split_options(load_config(None, {}), {"eval_steps": 50, "early_stopping_patience": 10})
    args = ift_training_arguments(config, "fp32", tmp_path, settings.eval_steps)
    assert (args.eval_strategy, args.eval_steps, args.save_strategy, args.save_steps) == ("steps", 50, "steps", 50)
    assert config.early_stopping_patience == 10 and args.load_best_model_at_end
    with pytest.raises(LsfaError, match="eval_steps"):
        split_options(config, {"eval_steps": 0})


def test_the_grid_knows_the_ift_system() -> None:
    from lsfa.experiments.grid import expand_cells, parse_grid

    spec = parse_grid({"models": [], "corpora": ["c"], "seeds": [1], "systems": [{"name": "ift", "model": "m"}]})
    (cell,) = expand_cells(spec)
    assert cell.key == "c/ift/lora/none/seed1" and cell.options == {"model": "m"}


def live_lora_lm(workspace: Path, corpus: Path, types: list[str]):
    """The tiny LM with LoRA whose B matrices are non-zero (at init they are 0, and adapters would not matter),
    no dropout, and six encoded training examples: inputs for exact loss and gradient comparisons."""
    import torch

    from lsfa.baselines.ift_train import apply_causal_lora, encode_sentences_for_ift, load_causal_lm
    from lsfa.data.conll import read_conll

    config = tiny_config(tiny_lm(workspace / "lm-live"), corpus)
    model, tokenizer = load_causal_lm(config)
    torch.manual_seed(0)
    model = apply_causal_lora(model, config.model_copy(update={"lora": config.lora.model_copy(update={"dropout": 0})}))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    rows, _ = encode_sentences_for_ift(tokenizer, read_conll(corpus / "train.txt").sentences[:6], types, 256)
    return model, tokenizer, rows


def loss_and_grads(model, compute):
    """The loss ``compute()`` returns and the gradient it gives every trainable parameter, flattened."""
    import torch

    model.zero_grad()
    loss = compute()
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def test_the_ift_lora_wrap_raises_no_gradient_checkpointing_warning(workspace: Path, corpus: Path) -> None:
    """peft's own read of the deprecated ``is_gradient_checkpointing`` showed on every IFT run (issue #37 item 8);
    the tagger's wrap was silenced already, the IFT baseline's ``get_peft_model`` was not."""
    import warnings

    from lsfa.baselines.ift_train import apply_causal_lora, load_causal_lm

    config = tiny_config(tiny_lm(workspace / "lm-warning"), corpus)
    model, _ = load_causal_lm(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_causal_lora(model, config)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_packed_batches_give_the_padded_loss_and_gradients(workspace: Path, corpus: Path) -> None:
    """Packing the IFT batches (each example its own causal block, positions from 0) must not change what is
    learnt: the same loss and the same LoRA gradients as the padded batch, up to float summation order
    (a block leaking across examples, or a label pair crossing into the next example, moves both by far more)."""
    import torch

    from lsfa.baselines.ift_train import ift_collator

    model, tokenizer, rows = live_lora_lm(workspace, corpus, ["LOC", "ORG", "PER"])
    results = {}
    for pack in (False, True):
        collator, batching = ift_collator(model, tokenizer, rows, pack)
        batch = collator([dict(rows[k]) for k in range(len(rows))])
        results[pack] = (batch["input_ids"].shape, batching, *loss_and_grads(model, lambda b=batch: model(**b).loss))
    (padded_shape, _, padded_loss, padded_grads), (packed_shape, batching, packed_loss, packed_grads) = results.values()
    assert batching.startswith("packed") and packed_shape[0] < padded_shape[0]
    assert torch.allclose(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(packed_grads, padded_grads, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_answer_only_loss_is_the_models_loss(workspace: Path, corpus: Path, pack: bool) -> None:
    """The vocabulary projection on the scored positions only must give the model's own loss and gradients,
    with the Trainer's token count as divisor or without it (then the mean)."""
    import torch

    from lsfa.baselines.ift_train import answer_only_loss, ift_collator

    model, tokenizer, rows = live_lora_lm(workspace, corpus, ["PER"])
    collator, _ = ift_collator(model, tokenizer, rows, pack)
    batch = collator([dict(rows[k]) for k in range(len(rows))])
    scored = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    reference = loss_and_grads(model, lambda: model(**batch).loss)
    mean = loss_and_grads(model, lambda: answer_only_loss(model.get_base_model(), batch))
    summed = loss_and_grads(model, lambda: answer_only_loss(model.get_base_model(), batch, 2 * scored))
    for (loss, grads), scale in ((mean, 1.0), (summed, 0.5)):
        assert torch.allclose(loss, scale * reference[0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(grads, scale * reference[1], rtol=1e-4, atol=1e-6)


# --- end to end ------------------------------------------------------------------------------------------
def test_tiny_ift_run_writes_lsfa_style_metrics_and_jsonl_predictions(workspace: Path, corpus: Path) -> None:
    model = tiny_lm(workspace / "lm")
    run_dir = workspace / "run"
    lines: list[str] = []
    config = tiny_config(model, corpus)
    metrics = train_ift(config, {"max_new_tokens": 4, "generation_batch_size": 3}, run_dir, lines.append)

    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["system"] == "ift" and written["config"]["model"] == str(model)
    options = {"max_new_tokens": 4, "generation_batch_size": 3, "prompt": "paper", "eval_steps": None}
    assert written["ift"]["options"] == {**options, "dev_loss_sentences": None}
    assert written["ift"]["dev_loss_examples"] == 6, "the stopping loss covers the whole dev split by default"
    assert written["ift"]["prompt_example"].startswith("### Instruction:\nplease extract named entities")
    assert written["ift"]["types"] == ["LOC", "ORG", "PER"], "the corpus's sorted types are the options"
    for split, count in (("dev", 6), ("test", 5)):
        assert set(written[split]) >= SPLIT_KEYS
        assert set(written[split]["set"]) >= {"precision", "recall", "f1"}
        assert written[split]["n_sentences"] == count
        records = [json.loads(line) for line in (run_dir / "predictions" / f"{split}.jsonl").read_text().splitlines()]
        assert len(records) == count
        assert sum(r["malformed"] for r in records) == written[split]["malformed"]
        assert sum(len(r["gold"]) for r in records) == written[split]["n_gold_entities"] > 0
    for key in ("train_seconds_per_epoch", "mean_epoch_seconds", "parameters", "epochs_run", "epoch_log"):
        assert written[key] is not None, key
    assert 0 < written["parameters"]["trainable"] < written["parameters"]["total"], "LoRA trains adapters only"
    assert written["train_batching"].startswith("packed rows"), "pack: true (the default) packs IFT batches"

    # model selection on dev loss: the kept checkpoint is the epoch with the lowest eval_loss
    losses = [epoch["eval_loss"] for epoch in written["epoch_log"]]
    assert len(losses) == 2 and written["global_step"] == 4
    best_epoch = losses.index(min(losses)) + 1
    assert written["best_checkpoint"].endswith(f"checkpoint-{2 * best_epoch}")
    assert (run_dir / "model" / "adapter_config.json").is_file() and (run_dir / "model" / "lsfa-ift.json").is_file()
    assert metrics["test"]["set"] == written["test"]["set"]
    assert any(line.startswith("test: set P") for line in lines)
    assert written["test"]["latency_ms"]["n"] == 5 and "latency_ms" not in written["dev"]

    from lsfa.experiments.tables import build_tables, collect_cells

    (row,) = build_tables(collect_cells(workspace))["set"].rows
    assert row["model"] == "ift" and row["f1"]["mean"] == pytest.approx(written["test"]["set"]["f1"])

    with pytest.raises(LsfaError, match="finished run"):
        train_ift(config, {}, run_dir)


def test_an_ift_run_past_its_deadline_stops_at_a_checkpoint_and_resumes(workspace: Path, corpus: Path) -> None:
    import time

    from lsfa.training.checkpoints import last_complete_checkpoint
    from lsfa.training.time_limit import TimeLimitReached

    run_dir = workspace / "run-time-limit"
    config = tiny_config(tiny_lm(workspace / "lm-time-limit"), corpus)
    options = {"max_new_tokens": 4, "generation_batch_size": 3}
    with pytest.raises(TimeLimitReached, match="step 1 of 4"):
        train_ift(config, options, run_dir, lambda _: None, deadline=time.time() - 1)
    assert last_complete_checkpoint(run_dir).name == "checkpoint-1" and not (run_dir / "metrics.json").exists()
    lines: list[str] = []
    metrics = train_ift(config, options, run_dir, lines.append)
    assert any(line.startswith("resuming from") and line.endswith("checkpoint-1") for line in lines), lines
    assert metrics["global_step"] == 4 and metrics["epochs_run"] == 2


def test_an_ift_resume_after_a_failed_final_save_reports_the_run_as_it_ended(
    workspace: Path, corpus: Path, monkeypatch
) -> None:
    """Training ended inside an epoch (``max_steps`` 1 of 2 per epoch), then the final save failed: the resumed
    run restores that state and takes no further step (as ``lsfa train`` does, issue #37 item 6); with a plain
    ``train(resume_from_checkpoint=...)`` the Trainer takes one more step and saves a ``checkpoint-2``."""
    import errno
    import os

    import lsfa.baselines.ift_train

    run_dir = workspace / "run-final-save"
    config = tiny_config(tiny_lm(workspace / "lm-final-save"), corpus, max_steps=1, test_split=None)
    options = {"max_new_tokens": 4, "generation_batch_size": 3}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(lsfa.baselines.ift_train, "_save_model", full_disk)
        with pytest.raises(OSError):
            train_ift(config, options, run_dir, lambda _: None)
    assert not (run_dir / "metrics.json").exists()
    metrics = train_ift(config, options, run_dir, lambda _: None)
    assert metrics["global_step"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-1"]


def test_the_dev_loss_sample_is_fixed_by_the_seed_and_keeps_file_order() -> None:
    sentences = [f"sentence {index}" for index in range(50)]
    sample = loss_sample(sentences, 10, seed=42)
    assert sample == loss_sample(sentences, 10, seed=42) and len(set(sample)) == 10
    assert sample == sorted(sample, key=sentences.index), "drawn sentences keep their order in the file"
    assert loss_sample(sentences, 10, seed=43) != sample
    assert loss_sample(sentences, None, seed=42) == sentences == loss_sample(sentences, 80, seed=42)


def test_a_dev_loss_sample_stops_on_fewer_sentences_but_scores_all_of_dev(workspace: Path, corpus: Path) -> None:
    run_dir = workspace / "run-loss-sample"
    config = tiny_config(tiny_lm(workspace / "lm-loss-sample"), corpus)
    options = {"max_new_tokens": 4, "generation_batch_size": 3, "dev_loss_sentences": 3}
    metrics = train_ift(config, options, run_dir, lambda _: None)
    assert metrics["ift"]["dev_loss_examples"] == 3 and metrics["ift"]["options"]["dev_loss_sentences"] == 3
    assert metrics["dev"]["n_sentences"] == 6, "dev is still answered and scored in full"
    with pytest.raises(LsfaError, match="dev_loss_sentences"):
        split_options(config, {"dev_loss_sentences": 0})


def test_max_train_time_ends_ift_training_with_a_dev_loss_at_the_stop(workspace: Path, corpus: Path) -> None:
    """Under per-step evaluation the stop must be evaluated and saved at its step, to be the kept checkpoint."""
    run_dir = workspace / "run-max-time"
    config = tiny_config(tiny_lm(workspace / "lm-max-time"), corpus, max_train_time=1e-6)
    options = {"max_new_tokens": 4, "generation_batch_size": 3, "eval_steps": 3}
    metrics = train_ift(config, options, run_dir, lambda _: None)
    assert metrics["global_step"] == 1 and metrics["stopped_by_max_train_time"] == 1
    assert metrics["best_checkpoint"].endswith("checkpoint-1") and metrics["test"]["n_sentences"] == 5


def test_a_decoder_without_its_language_model_head_is_refused(workspace: Path, corpus: Path) -> None:
    backbone = tiny_lm(workspace / "backbone", tied=False)
    with pytest.raises(LsfaError, match="no trained language-model head"):
        train_ift(tiny_config(backbone, corpus), {}, workspace / "refused")

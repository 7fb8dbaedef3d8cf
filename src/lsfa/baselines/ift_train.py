"""The generative NER baseline (IFT): the same decoder, LoRA-tuned to write ``entity:type;`` answers.

This is the reference paper's instruction-tuning baseline, trained and scored on exactly the splits the token
classifiers use. The causal LM (``AutoModelForCausalLM`` on the folder :func:`lsfa.models.catalogue.resolve_model`
gives, so a catalogue name means the same weights as for the taggers) gets LoRA on its projections and learns
the response of each Alpaca prompt (:mod:`lsfa.baselines.ift`) with the loss on the response tokens only:
the prompt is the same for every sentence but its input, and learning to reproduce it would spend the
gradient on copying. The transformers Trainer evaluates the dev *loss* after every epoch, or every ``eval_steps``
steps, and keeps the best checkpoint (early stopping on dev loss, as the paper does: generating the whole dev
set at each evaluation would cost more than training on CPU; the paper stops after 10 evaluations without a
lower dev loss, i.e. ``eval_steps: N`` with ``early_stopping_patience: 10``). The best model then answers dev
and test greedily; the answers are parsed, scored with set-based P/R/F1 and written to
``predictions/<split>.jsonl``, and ``metrics.json`` gets the keys
``lsfa experiment report`` reads (``dev``/``test`` with ``set``, ``ms_per_sentence`` and ``n_sentences``,
per-epoch timings, ``parameters``), so the baseline lands in Tables 5-7 like any other cell.

Configuration is an ordinary :class:`~lsfa.training.config.TrainConfig` (model, corpus, limits, lora, epochs,
learning_rate, batch sizes, seed, output_dir, precision, max_length, early_stopping_patience, pack, kernels,
checkpoint_steps) plus the options of :class:`IftOptions`. As a grid system (``systems: [{name: ift,
model: smollm2-135m, max_new_tokens: 128}]``) the entry's keys that are training-config fields override the
grid's base config for this system; the others are generation options. ``attention``, ``context`` and
``label_all_subtokens`` do not apply: a generative model reads its prompt causally.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from lsfa.baselines import ift as generative
from lsfa.data.align import IGNORE_INDEX
from lsfa.data.corpora import load_split
from lsfa.data.schemes import entity_types
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError
from lsfa.inference.latency import sentence_latency
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import count_parameters, is_encoder, linear_targets, load_tokenizer, peft_quietly
from lsfa.models.optimise import optimise_for_inference
from lsfa.precision import resolve_precision
from lsfa.runs import CONFIG_FILE, MODEL_DIR, RunFolder, machine_info
from lsfa.training.callbacks import EpochTimer, run_callbacks, stopped_by_train_time, timing_record
from lsfa.training.checkpoints import last_complete_checkpoint, train_or_restore
from lsfa.training.collate import packing_collator
from lsfa.training.config import TrainConfig, canonical_keys, dump_config, load_config
from lsfa.training.dataset import load_training_data
from lsfa.training.kernels import use_fast_lora_dropout
from lsfa.training.trainer import kernel_trainer_class, training_arguments

SYSTEM = "ift"
MODEL = MODEL_DIR
IFT_FILE = "lsfa-ift.json"
IGNORED_CONFIG_KEYS = ("attention", "context", "label_all_subtokens")


class IftOptions(BaseModel):
    """Generation settings of the baseline (training settings are the ``TrainConfig``'s)."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(128, gt=0, le=4096, description="longest answer generated, in tokens")
    generation_batch_size: int | None = Field(None, gt=0, description="prompts per generate call (eval_batch_size)")
    prompt: Literal["paper", "lsfa"] = Field("paper", description="the paper's prompt (Appendix B) or lsfa's own")
    eval_steps: int | None = Field(
        None,
        gt=0,
        description="evaluate the dev loss (and checkpoint) every N optimizer steps instead of every epoch; with "
        "early_stopping_patience 10 this is the paper's rule (stop after 10 evaluations without a lower dev loss)",
    )
    dev_loss_sentences: int | None = Field(
        None,
        gt=0,
        description="compute the dev loss (the stopping criterion) on this many dev sentences, drawn once with the "
        "seed, instead of all; dev and test are still answered and scored in full",
    )


def split_options(config: TrainConfig, options: dict[str, Any]) -> tuple[TrainConfig, IftOptions]:
    """Apply the training-config keys of a grid entry's options; the rest must be :class:`IftOptions`."""
    try:
        options = canonical_keys(options)  # mode: is finetune:, as in every other config
    except ValueError as error:
        raise LsfaError(f"ift options: {error}") from None
    overrides = {key: value for key, value in options.items() if key in TrainConfig.model_fields}
    rest = {key: value for key, value in options.items() if key not in overrides}
    unknown = sorted(set(rest) - set(IftOptions.model_fields))
    if unknown:
        known = ", ".join([*IftOptions.model_fields, "any training-config key"])
        raise LsfaError(f"ift baseline: unknown option(s) {', '.join(unknown)}; options are {known}")
    try:
        settings = IftOptions.model_validate(rest)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise LsfaError(f"ift baseline: invalid option: {problems}") from error
    if overrides:
        config = load_config(None, {**config.model_dump(), **overrides})
    return config, settings


# --- examples ------------------------------------------------------------------------------------------
def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]] | None:
    """``input_ids`` = prompt + response + end token; ``labels`` the same with every prompt position -100.

    Prompt and response are tokenised separately, so the boundary is exact and generation later
    continues from the very ids the prompt had in training. Returns None when the pair is longer than
    ``max_length`` (cutting it would teach an answer that stops mid-entity).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is None:
        raise LsfaError("ift baseline: the tokenizer has no end-of-sequence token to end answers with")
    response_ids = [*response_ids, tokenizer.eos_token_id]
    if len(prompt_ids) + len(response_ids) > max_length:
        return None
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + response_ids,
    }


class PairDataset(torch.utils.data.Dataset):
    """Encoded (prompt, response) rows as the Trainer wants them."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def encode_sentences_for_ift(
    tokenizer, sentences: Sequence[Sentence], types: Sequence[str], max_length: int, prompt: str = "paper"
) -> tuple[PairDataset, int]:
    """A dataset of the sentences' prompt/response rows and how many were too long to keep."""
    rows = []
    too_long = 0
    for sentence in sentences:
        row = encode_example(tokenizer, *generative.build_pair(sentence, types, prompt), max_length)
        if row is None:
            too_long += 1
        else:
            rows.append(row)
    return PairDataset(rows), too_long


def loss_sample(sentences: Sequence[Sentence], size: int | None, seed: int) -> list[Sentence]:
    """The dev sentences the stopping loss is computed on: all, or ``size`` of them drawn once with ``seed``.

    Why a sample: the loss over a whole dev split costs a third of a training epoch per evaluation on a CPU
    (BC5CDR: 426k prompt and answer tokens), and the paper's rule evaluates every few hundred steps. A fixed
    sample of a few hundred sentences ranks checkpoints of one run just as well; the drawn sentences keep their
    file order.
    """
    if size is None or size >= len(sentences):
        return list(sentences)
    chosen = sorted(random.Random(seed).sample(range(len(sentences)), size))
    return [sentences[index] for index in chosen]


# --- model ---------------------------------------------------------------------------------------------
def load_causal_lm(config: TrainConfig):
    """The decoder with its language-model head, fp32 (bf16 comes from autocast), and its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model(config.model, auto_fetch=True)
    model_config = AutoConfig.from_pretrained(str(path))
    if is_encoder(model_config):
        raise LsfaError(f"ift baseline: {config.model} is an encoder ({model_config.model_type}); it needs a decoder")
    tokenizer = load_tokenizer(path)
    model, info = AutoModelForCausalLM.from_pretrained(
        str(path), attn_implementation=config.attn_implementation, dtype=torch.float32, output_loading_info=True
    )
    missing_head = [key for key in info.get("missing_keys", ()) if "lm_head" in key]
    if missing_head:
        raise LsfaError(
            f"ift baseline: {config.model} has no trained language-model head ({missing_head[0]} missing and not "
            "tied to the embeddings); generating with a random head would only produce noise"
        )
    model.config.use_cache = False  # no key/value cache while training; generation turns it on for itself
    return model, tokenizer


def apply_causal_lora(model: nn.Module, config: TrainConfig) -> nn.Module:
    """LoRA adapters on the projections (the paper's r/alpha/dropout); the base weights stay frozen."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = config.lora
    targets = linear_targets(model, lora.target_modules)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [target for target in targets if target not in present]
    if missing or not targets:
        raise LsfaError(f"ift baseline: LoRA target modules not found in {model.config.model_type}: {missing}")
    settings = LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets
    )
    with peft_quietly():  # peft's own deprecated read, as in the tagger's LoRA wrap
        return get_peft_model(model, settings)


def ift_training_arguments(config: TrainConfig, precision: str, run_dir: Path, eval_steps: int | None = None):
    """The token classifier's Trainer arguments, but keeping the checkpoint with the lowest dev loss, evaluated
    every epoch or every ``eval_steps`` steps (checkpoints follow the evaluations, so the best can be restored)."""
    every = {"eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps", "save_steps": eval_steps}
    return training_arguments(
        config,
        precision,
        run_dir,
        **(every if eval_steps else {}),
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,  # never gather vocabulary-sized logits of the dev set
        # Each dev batch still holds fp32 logits over the whole vocabulary for every prompt token (plus the
        # loss's copies): at 64 long prompts that is several GB, which killed a BC5CDR run out of memory.
        per_device_eval_batch_size=min(config.eval_batch_size, config.batch_size),
        label_names=["labels"],
    )


def ift_collator(model, tokenizer, train_set: PairDataset, pack: bool):
    """The batches of training and of the dev loss: packed (``pack: true``) or padded, and a line saying which.

    Why packing pays most here: an example is a ~70-token prompt plus its answer, and 16 random examples padded
    to the longest hold 1.55x (CoNLL-2003) to 1.78x (BC5CDR) their real tokens. Packed, each example is still
    computed alone (its own causal block, positions from 0), and the loss covers the same answer tokens: a
    packed row's next-token pairs that cross from one example into the next end on a prompt token, which has no
    label. The dev loss is packed too: it is the mean of the batches' per-token losses, each batch weighted by
    its rows, which packing changes (a selection criterion either way; it only ranks checkpoints of one run).
    """
    from transformers import DataCollatorForSeq2Seq

    padded = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, padding=True)
    if not pack:
        return padded, "padded rows"
    lengths = [len(row["input_ids"]) for row in train_set.rows]
    packed, batching = packing_collator(model, tokenizer.pad_token_id, lengths)
    return (packed, batching) if packed is not None else (padded, f"padded rows ({batching})")


PLAIN_HEAD_LMS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
"""Causal LMs whose logits are the plain output projection of the last hidden state (no soft-capping, no
scaling: gemma's are capped), so the projection may be applied to some positions only."""


def answer_only_loss(lm: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch=None) -> torch.Tensor:
    """The causal LM's own next-token loss, with the vocabulary projection computed only where it is scored.

    Why: the loss covers the answer tokens, about a sixth of an example, but the model projects every position
    onto the whole vocabulary (49,152 for smollm2-135m: a fifth of the forward pass) and the cross-entropy then
    reads all those logits. Same loss as ``lm(**inputs).loss``: the sum over scored positions, divided by
    ``num_items_in_batch`` when the Trainer gives it, else their mean.
    """
    labels = inputs["labels"][:, 1:]
    backbone_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    hidden = lm.model(**backbone_inputs).last_hidden_state[:, :-1]
    scored = labels != IGNORE_INDEX
    logits = lm.lm_head(hidden[scored]).float()
    total = torch.nn.functional.cross_entropy(logits, labels[scored], reduction="sum")
    divisor = num_items_in_batch if num_items_in_batch is not None else scored.sum()
    return total / divisor


def ift_trainer_class(kernels: str):
    """The Trainer of the IFT baseline: lsfa's per-step attention kernels, and :func:`answer_only_loss` for the
    models of :data:`PLAIN_HEAD_LMS` in a single process (under DDP the forward pass must go through the
    wrapped model, so the stock loss is used there)."""

    class IftTrainer(kernel_trainer_class(kernels)):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            lm = self.accelerator.unwrap_model(model)
            lm = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
            if self.args.world_size > 1 or type(lm).__name__ not in PLAIN_HEAD_LMS:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            with self.accelerator.autocast():
                loss = answer_only_loss(lm, inputs, num_items_in_batch)
            return (loss, {"loss": loss}) if return_outputs else loss

    return IftTrainer


# --- the run -------------------------------------------------------------------------------------------
def train_ift(
    config: TrainConfig,
    options: dict[str, Any] | None,
    run_dir: str | Path,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train the IFT baseline for one grid cell (or on its own) and write ``run_dir/metrics.json``.

    A run folder with complete checkpoints but no ``metrics.json`` (an interrupted run) resumes from the
    newest checkpoint, as ``lsfa experiment run`` expects of a cell it retries. Past ``deadline`` training
    stops at a saved checkpoint (:mod:`lsfa.training.time_limit`).
    """
    from transformers import set_seed

    started = time.perf_counter()
    grid_config = config
    config, settings = split_options(config, dict(options or {}))
    machine = machine_info()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(run_dir)
    if RunFolder(run_dir).finished:
        raise LsfaError(f"{run_dir}: a finished run is already there; choose another output folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    precision = resolve_precision(config.precision)
    corpus, train_sentences, dev_sentences, labels = load_training_data(config)
    for warning in corpus.warnings:
        log(f"note: {warning}")
    types = entity_types(labels)
    model, tokenizer = load_causal_lm(config)
    if config.finetune == "lora":
        model = apply_causal_lora(model, config)
    if config.kernels == "fast" and not torch.cuda.is_available():
        use_fast_lora_dropout(model)
    train_set, train_too_long = encode_sentences_for_ift(
        tokenizer, train_sentences, types, config.max_length, settings.prompt
    )
    dev_set, dev_too_long = encode_sentences_for_ift(
        tokenizer,
        loss_sample(dev_sentences, settings.dev_loss_sentences, config.seed),
        types,
        config.max_length,
        settings.prompt,
    )
    if not len(train_set) or not len(dev_set):
        raise LsfaError(f"ift baseline: no train or dev example fits max_length {config.max_length}")
    if train_too_long or dev_too_long:
        log(f"note: {train_too_long} train / {dev_too_long} dev examples longer than max_length left out of training")
    (run_dir / CONFIG_FILE).write_text(dump_config(config))
    timer = EpochTimer()
    callbacks = run_callbacks(config, timer, deadline)
    collator, batching = ift_collator(model, tokenizer, train_set, config.pack)
    trainer = ift_trainer_class(config.kernels)(
        model=model,
        args=ift_training_arguments(config, precision, run_dir, settings.eval_steps),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    checkpoint = last_complete_checkpoint(run_dir)
    if checkpoint:
        log(f"resuming from {checkpoint}")
    log(f"ift: {len(train_set)} train / {len(dev_set)} dev-loss examples, types {', '.join(types)}")
    global_step = train_or_restore(trainer, checkpoint, timer, log)  # idempotent after a kill in the final save
    train_seconds = timer.train_seconds
    if not trainer.is_world_process_zero():
        return {}
    facts = {
        "train_seconds": train_seconds,
        "wall_start": started,
        "epochs": timer.epochs,
        "global_step": global_step,
        "train_tokens": sum(len(row["input_ids"]) for row in train_set.rows),
        "ranks": {"world_size": trainer.args.world_size},
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "batching": batching,
        "stopped_by_max_train_time": stopped_by_train_time(callbacks),
    }
    extra = {"train_too_long": train_too_long, "dev_too_long": dev_too_long, "dev_loss_examples": len(dev_set),
             "types": types, "machine": machine}  # fmt: skip
    context = (grid_config, config, settings, precision, run_dir, log)
    return _finish(trainer.model, tokenizer, dev_sentences, facts, extra, context)


def _finish(model, tokenizer, dev_sentences, facts, extra, context) -> dict[str, Any]:
    """Save the best model, answer dev and test greedily, score them and write ``metrics.json``."""
    grid_config, config, settings, precision, run_dir, log = context
    types = extra["types"]
    _save_model(model, tokenizer, run_dir / MODEL, config, settings, types)
    # Decode with merged LoRA and bf16 weights stored once, as lsfa's taggers predict: under plain autocast
    # every decoding step would re-cast all ~100M weights for one new token per row.
    parameters = count_parameters(model)  # before merging, which folds the adapter away
    model = optimise_for_inference(model, precision)
    metrics: dict[str, Any] = {
        "system": SYSTEM,
        "config": grid_config.model_dump(),
        "ift": {
            "effective_config": config.model_dump(),
            "options": settings.model_dump(),
            "types": types,
            "prompt": settings.prompt,
            "prompt_example": generative.build_prompt(["An", "example", "."], types, settings.prompt),
            "ignored_config_keys": list(IGNORED_CONFIG_KEYS),
            "train_examples_too_long": extra["train_too_long"],
            "dev_examples_too_long": extra["dev_too_long"],
            "dev_loss_examples": extra["dev_loss_examples"],
        },
        "attention": "causal",
        "precision": precision,
    }
    splits = {"dev": dev_sentences}
    if config.test_split:
        test = load_split(config.corpus, config.test_split, data_dir=config.data_dir).sentences
        splits["test"] = test[: config.test_limit]
    batch_size = settings.generation_batch_size or config.eval_batch_size
    for split, sentences in splits.items():
        prediction = generative.predict_entities(
            model, tokenizer, sentences, types, settings.max_new_tokens, batch_size, precision, settings.prompt
        )
        metrics[split] = generative.score_prediction(sentences, prediction)
        if split == "test":
            metrics[split]["latency_ms"] = sentence_latency(
                lambda sentence: generative.predict_entities(
                    model, tokenizer, [sentence], types, settings.max_new_tokens, 1, precision, settings.prompt
                ),
                sentences,
            )
        _write_jsonl(
            RunFolder(run_dir).predictions(split, "jsonl"), generative.prediction_records(sentences, prediction)
        )
        scores = metrics[split]["set"]
        log(f"{split}: set P {scores['precision']:.4f}  R {scores['recall']:.4f}  F1 {scores['f1']:.4f}"
            f"  malformed {metrics[split]['malformed']}")  # fmt: skip
    metrics.update(timing_record(facts))
    metrics["parameters"] = parameters
    metrics["machine"] = extra["machine"]
    RunFolder(run_dir).write_metrics(metrics)
    return metrics


def _save_model(model, tokenizer, folder: Path, config: TrainConfig, settings: IftOptions, types: list[str]) -> None:
    """The adapter (or full weights), the tokenizer and what is needed to prompt the model again."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {"base_model": config.model, "weights": config.finetune, "types": types, **settings.model_dump()}
    (folder / IFT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)

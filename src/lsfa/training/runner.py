"""``lsfa train``: fine-tune a token classifier with the transformers Trainer.

The Trainer gives us the loop, gradient accumulation, checkpoints with optimizer and RNG state, and
data-parallel scale-out (``torchrun``/``accelerate launch``: DDP, each rank holding the whole model) with no code
of our own. FSDP and DeepSpeed are refused with one line (:func:`refuse_sharded_training`): only rank 0 saves,
predicts dev and test and writes the run folder (``_finish``), which on a sharded model would save and run one
shard, and no test here could show a gathered state dict to be right. For models that do not fit one card, use
``quantize: 4bit`` (QLoRA) and ``gradient_checkpointing`` instead (docs/large-models.md). lsfa adds
what NER needs around it: word/sub-token encoding, strict span F1 on dev after every epoch as the model
selection metric (the test split is read only after training, for one final evaluation), early stopping,
complete-checkpoint detection for ``--resume``, and a run folder with ``metrics.json``, CoNLL predictions
and timings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForTokenClassification, set_seed

from lsfa.data.align import IGNORE_INDEX
from lsfa.data.corpora import load_split
from lsfa.errors import WriteError, writing
from lsfa.inference.latency import tagger_latency
from lsfa.models.classifier import count_parameters
from lsfa.models.optimise import cast_frozen_linear_weights
from lsfa.models.saving import TaggerMeta, save_tagger
from lsfa.precision import autocast_dtype, resolve_precision
from lsfa.runs import MODEL_DIR, RunFolder, machine_info
from lsfa.training.callbacks import EpochTimer, run_callbacks, stopped_by_train_time, timing_record
from lsfa.training.card import write_model_card
from lsfa.training.checkpoints import last_complete_checkpoint, train_or_restore
from lsfa.training.collate import packing_collator
from lsfa.training.config import TrainConfig, dump_config
from lsfa.training.dataset import RowDataset, encode_split, load_training_data, sort_rows_by_length, span_options
from lsfa.training.distill import Distillation, prepare_distillation
from lsfa.training.distributed import ranks_agree, refuse_sharded_training
from lsfa.training.evaluation import argmax_logits, calibrate_tagger, evaluate_split, make_compute_metrics
from lsfa.training.kernels import use_fast_lora_dropout
from lsfa.training.model import build_model
from lsfa.training.trainer import check_training_precision, ner_trainer_class, training_arguments


def train(
    config: TrainConfig,
    resume: bool = False,
    log=print,
    extra_callbacks: Sequence[Any] = (),
    deadline: float | None = None,
) -> dict[str, Any]:
    """Run one training job end to end and return its ``metrics.json`` content (rank 0).

    With a ``deadline`` (``time.time()`` scale) training stops at a saved checkpoint once it has passed and
    :class:`~lsfa.training.time_limit.TimeLimitReached` is raised; ``resume=True`` continues the run.

    The output folder is checked for writing and locked first (rank 0: one writer per run folder, see
    :mod:`lsfa.runs`), before any data or model is loaded; an OS error while writing (a full disk, a folder
    made read-only meanwhile) is one :class:`~lsfa.errors.WriteError` line naming the path.
    """
    run = RunFolder(config.output_dir)
    if os.environ.get("RANK", "0") != "0":
        return _train(config, resume, log, extra_callbacks, deadline)
    with run.hold(), writing(run.path), _torch_write_errors(run.path):
        return _train(config, resume, log, extra_callbacks, deadline)


@contextmanager
def _torch_write_errors(path: Path) -> Iterator[None]:
    """torch.save reports a failed write (no space left) as a RuntimeError of its zip writer: name the path."""
    try:
        yield
    except RuntimeError as error:
        if "PytorchStreamWriter failed" not in str(error) and "file write failed" not in str(error):
            raise
        raise WriteError(f"{path}: cannot write ({str(error).strip().splitlines()[0]})") from None


def _train(
    config: TrainConfig, resume: bool, log, extra_callbacks: Sequence[Any], deadline: float | None
) -> dict[str, Any]:
    """The body of :func:`train`, inside the folder's lock."""
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    machine = machine_info()  # before training: the commit that ran, not the one checked out at the end
    run_dir = Path(config.output_dir)
    RunFolder(run_dir).prepare(resume)
    set_seed(config.seed)
    precision = resolve_precision(config.precision)
    check_training_precision(precision)
    corpus, train_sentences, dev_sentences, labels = load_training_data(config)
    for warning in corpus.warnings:
        log(f"note: {warning}")
    distillation = _distillation(config, train_sentences, precision, log)
    labels = distillation.labels if distillation else labels
    model, tokenizer, attention = build_model(config, labels, precision)
    log(f"note: a new token-classification head over {len(labels)} labels on {config.model} (attention {attention})")
    if autocast_dtype(precision) and config.finetune == "lora" and not config.save_merged:
        # Bit-identical to autocast's per-step casts (see cast_frozen_linear_weights); only the adapter
        # and the head are saved, so the rounded base weights never reach a file. A merged save needs them fp32.
        cast_frozen_linear_weights(model, autocast_dtype(precision))
    if config.kernels == "fast" and not torch.cuda.is_available():
        use_fast_lora_dropout(model)
    train_rows = encode_split(tokenizer, train_sentences, labels, config, train=True)
    if distillation:
        train_rows = distillation.training_rows(train_rows, tokenizer, config)
    dev_rows = sort_rows_by_length(encode_split(tokenizer, dev_sentences, labels, config, train=False))
    args = training_arguments(config, precision, run_dir)
    if args.process_index == 0:
        RunFolder(run_dir).config.write_text(dump_config(config))
    train_collator, batching = None, "padded rows"
    if config.pack:
        lengths = [len(row.input_ids) for row in train_rows.examples]
        train_collator, batching = packing_collator(model, tokenizer.pad_token_id, lengths)
        if train_collator is None:
            log(f"note: training batches are padded, not packed: {batching}")
            batching = "padded rows"
    timer = EpochTimer()
    callbacks = [*run_callbacks(config, timer, deadline), *extra_callbacks]
    trainer_class, train_dataset = ner_trainer_class(config.kernels), RowDataset(train_rows)
    if distillation:
        trainer_class, train_dataset = distillation.trainer_class(trainer_class), distillation.dataset(train_rows)
        train_collator = distillation.collator(
            train_collator or DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
        )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=RowDataset(dev_rows),
        data_collator=DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(dev_rows, dev_sentences, labels, corpus.task),
        preprocess_logits_for_metrics=argmax_logits,
        callbacks=callbacks,
        train_collator=train_collator,
    )
    refuse_sharded_training(trainer)
    checkpoint = last_complete_checkpoint(run_dir) if resume else None
    if resume:
        log(f"resuming from {checkpoint}" if checkpoint else "no complete checkpoint found: starting fresh")
    global_step = train_or_restore(trainer, checkpoint, timer, log)
    train_seconds = timer.train_seconds
    final_fingerprint = ranks_agree(trainer)
    if not trainer.is_world_process_zero():
        return {}
    return _finish(config, trainer, tokenizer, labels, attention, precision, run_dir, dev_sentences,
                   {"train_seconds": train_seconds, "wall_start": started, "epochs": timer.epochs,
                    "global_step": global_step, "train_tokens": train_rows.n_subtokens,
                    "ranks": final_fingerprint, "best_checkpoint": trainer.state.best_model_checkpoint,
                    "machine": machine, "batching": batching, "task": corpus.task,
                    "distillation": distillation.record() if distillation else None,
                    "stopped_by_max_train_time": stopped_by_train_time(callbacks)},
                   log)  # fmt: skip


def _finish(config, trainer, tokenizer, labels, attention, precision, run_dir, dev_sentences, facts, log):
    """Save the best model, evaluate it once on dev and test, write predictions and metrics.json."""
    model = trainer.model
    meta = TaggerMeta(
        base_model=config.model,
        model_type=_unwrap(model).config.model_type,
        labels=labels,
        attention=attention,
        weights="lora" if config.finetune == "lora" else "full",
        label_all_subtokens=config.label_all_subtokens,
        max_length=config.max_length,
        context=config.context,
        layers=config.layers,
        quantize=config.quantize,
        task=facts["task"],
        extra={"parameters": count_parameters(model), **_distilled(facts)},
    )
    task = facts["task"]
    save_tagger(model, tokenizer, run_dir / MODEL_DIR, meta, merge=config.save_merged)
    model.eval()
    metrics: dict[str, Any] = {"config": config.model_dump(), "attention": attention, "precision": precision}
    metrics["task"] = task
    metrics.update(_distilled(facts))
    splits = {"dev": dev_sentences}
    if config.test_split:
        splits["test"] = load_split(
            config.corpus, config.test_split, data_dir=config.data_dir, span_options=span_options(config),
            tag_column=config.tag_column, task=task,
        ).sentences[: config.test_limit]  # fmt: skip
    for split, sentences in splits.items():
        metrics[split], predicted = evaluate_split(model, tokenizer, config, precision, sentences, run_dir, split, task)
        if split == "dev":
            metrics["temperature"] = calibrate_tagger(run_dir / MODEL_DIR, predicted, sentences, labels)
        if split == "test" and config.context == "sentence":  # with context a sentence needs its document
            metrics[split]["latency_ms"] = tagger_latency(
                model, tokenizer, [s.tokens for s in sentences], config.max_length, precision
            )
        log(f"{split}: P {metrics[split]['micro']['precision']:.4f}  R {metrics[split]['micro']['recall']:.4f}"
            f"  F1 {metrics[split]['micro']['f1']:.4f}")  # fmt: skip
    metrics.update(timing_record(facts))
    metrics["parameters"] = meta.extra["parameters"]
    metrics["machine"] = facts["machine"]
    RunFolder(run_dir).write_metrics(metrics)
    write_model_card(run_dir / MODEL_DIR, config, {**metrics, "labels": labels})
    return metrics


def _distillation(config: TrainConfig, train_sentences, precision: str, log) -> Distillation | None:
    """The run's :class:`~lsfa.training.distill.Distillation` (its teacher's cached distributions), or None."""
    if config.distill.teacher is None:
        return None
    return prepare_distillation(config, train_sentences, precision, log)


def _distilled(facts: dict[str, Any]) -> dict[str, Any]:
    """``{"distillation": record}`` for a distilled student's metadata and metrics, else nothing."""
    return {"distillation": facts["distillation"]} if facts.get("distillation") else {}


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model

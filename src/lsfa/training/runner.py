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

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsfa.data.align import IGNORE_INDEX
from lsfa.data.encode import EncodedSet, encode_sentences, scatter_to_words
from lsfa.data.types import Sentence
from lsfa.errors import WriteError, writing
from lsfa.inference.latency import tagger_latency
from lsfa.models.classifier import quiet_transformers
from lsfa.runs import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    RunFolder,
    epoch_timing,
    epochs_run,
    machine_info,
    write_json_atomic,
)
from lsfa.training.card import write_model_card
from lsfa.training.config import TrainConfig, dump_config
from lsfa.training.time_limit import time_limit_callback, train_time_callback

CHECKPOINTS = CHECKPOINTS_DIR
MODEL = MODEL_DIR


@dataclass
class RowDataset(torch.utils.data.Dataset):
    """Encoded rows as the Trainer wants them: dicts of ``input_ids`` and ``labels``."""

    encoded: EncodedSet

    def __len__(self) -> int:
        return len(self.encoded.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.encoded.examples[index]
        return {"input_ids": row.input_ids, "labels": row.labels}


def label_ids_for(sentences: list[Sentence], label2id: dict[str, int]) -> list[list[int]]:
    """Tag ids per word; a tag unseen in training counts as ``O`` for the loss (gold tags stay intact), or is
    left out of the loss in a tokens task, which has no ``O``."""
    outside = label2id.get("O", IGNORE_INDEX)
    return [[label2id.get(tag, outside) for tag in sentence.tags] for sentence in sentences]


def inside_map(labels: list[str]) -> dict[int, int]:
    """``B-X`` id -> ``I-X`` id, for labelling continuation sub-tokens."""
    index = {label: k for k, label in enumerate(labels)}
    return {k: index.get("I-" + label[2:], k) for k, label in enumerate(labels) if label.startswith("B-")}


def encode_split(tokenizer, sentences: list[Sentence], labels: list[str], config: TrainConfig, train: bool):
    """Encode one split; training rows may label all sub-tokens, evaluation rows only first ones."""
    label2id = {label: k for k, label in enumerate(labels)}
    return encode_sentences(
        tokenizer,
        [s.tokens for s in sentences],
        label_ids_for(sentences, label2id),
        max_length=config.max_length,
        label_all_subtokens=config.label_all_subtokens and train,
        inside_of=inside_map(labels),
        documents=[s.doc_id for s in sentences],
        context=config.context,
    )


def sort_rows_by_length(encoded: EncodedSet) -> EncodedSet:
    """Evaluation rows shortest first, so batches pad little (metrics map rows back by their fields)."""
    rows = sorted(encoded.examples, key=lambda row: len(row.input_ids))
    return EncodedSet(rows, encoded.n_sentences, encoded.cut_words)


def make_compute_metrics(encoded: EncodedSet, sentences: list[Sentence], labels: list[str], task: str = "spans"):
    """Strict span metrics (or, for a tokens task, word accuracy as ``f1``) on dev from the Trainer's argmax
    predictions (rows map back to words)."""
    from lsfa.eval.report import evaluate_sentences
    from lsfa.eval.tokens import token_scores

    def compute_metrics(prediction) -> dict[str, float]:
        predicted = prediction.predictions
        tags = [["O"] * len(s.tokens) for s in sentences]
        values = [labels[int(predicted[k][p])] for k, row in enumerate(encoded.examples) for p in row.label_positions]
        scatter_to_words(encoded.examples, values, tags)
        gold = [s.tags for s in sentences]
        result = (
            token_scores(gold, tags)
            if task == "tokens"
            else evaluate_sentences(gold, tags, [s.tokens for s in sentences])
        )
        return {key: result["micro"][key] for key in ("precision", "recall", "f1")}

    return compute_metrics


def argmax_logits(logits, labels):
    """Keep only label ids between eval steps (a vocabulary-sized tensor per token is not needed)."""
    del labels
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """A checkpoint's ``trainer_state.json`` (written last, so it also marks the checkpoint complete), or None
    when it is missing or cut short."""
    try:
        return json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def checkpoint_is_complete(folder: Path) -> bool:
    """A checkpoint counts only once its ``trainer_state.json`` (written last) parses."""
    return trainer_state(folder) is not None


def _checkpoints(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """The run's ``checkpoint-N`` folders by step: (complete ones, incomplete ones)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return [], []
    found = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]),
    )
    complete = [p for p in found if checkpoint_is_complete(p)]
    return complete, [p for p in found if p not in complete]


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N``; incomplete ones (a kill mid-write) are removed."""
    complete, partial = _checkpoints(run_dir)
    for folder in partial:
        shutil.rmtree(folder, ignore_errors=True)
    return complete[-1] if complete else None


def resume_point(run_dir: Path) -> dict[str, Any] | None:
    """Where an unfinished run would resume: the newest complete checkpoint's ``step``, ``max_steps`` and
    ``epoch`` (None without one). Read-only, unlike :func:`last_complete_checkpoint`: a dry run may look at a
    run another process is writing."""
    complete, _ = _checkpoints(run_dir)
    if not complete:
        return None
    state = trainer_state(complete[-1]) or {}
    return {"step": state.get("global_step"), "max_steps": state.get("max_steps"), "epoch": state.get("epoch")}


def stopped_at(checkpoint: Path | None) -> int | None:
    """The step at which training had already ended when ``checkpoint`` was saved (early stopping, or the last
    step), or None while it was still going.

    Why: a run killed after training (while it predicted dev and test) is resumed from its last checkpoint, and
    the Trainer clears its stop flag at the start of every ``train()``: an early-stopped run would then train on
    past its stop and could select another epoch. Capping ``max_steps`` at this step makes the resumed
    ``train()`` only restore the selected checkpoint, as the uninterrupted run ended.
    """
    if checkpoint is None:
        return None
    state = trainer_state(checkpoint) or {}
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
    return int(state["global_step"]) if control.get("should_training_stop") else None


def resume_from(trainer, checkpoint: Path | None, timer: EpochTimer, log) -> str | None:
    """Prepare ``trainer`` and ``timer`` to continue from ``checkpoint``; returns the path ``train()`` takes.

    The timer continues its saved record; a run whose training had ended trains no further (:func:`stopped_at`).
    """
    if checkpoint is None:
        return None
    if not timer.restore(checkpoint):
        log(f"note: {checkpoint.name} has no timing record: the time before it is not counted")
    stopped = stopped_at(checkpoint)
    if stopped is not None:
        trainer.args.max_steps = stopped
        log(f"note: training had ended at step {stopped}; the resumed run only restores the selected checkpoint")
    return str(checkpoint)


def train_or_restore(trainer, checkpoint: Path | None, timer: EpochTimer, log) -> int:
    """Train (from ``checkpoint`` when resuming) and return the final global step; a run whose training had
    already ended at ``checkpoint`` (killed while it saved or predicted) is restored instead, not trained.

    Why not ``train()`` capped at the stop: resumed mid-epoch (``max_steps`` or a train-time budget inside an
    epoch), the Trainer skips the epoch's steps already run and then takes one more before it checks the cap,
    so a run of 40 steps became one of 41, with a ``checkpoint-41`` and an extra ``epoch_log`` entry. Restoring
    makes the resume idempotent: the same weights, step and record as the run would have finished with.
    """

    ended = stopped_at(checkpoint)
    if checkpoint is not None and ended is not None:
        log(f"note: training had ended at step {ended}; the resumed run only restores the selected checkpoint")
        return restore_ended_run(trainer, checkpoint, timer, log)
    resume_path = resume_from(trainer, checkpoint, timer, log)
    with quiet_transformers():  # transformers' own deprecation notes are not the user's business
        return trainer.train(resume_from_checkpoint=resume_path).global_step


def restore_ended_run(trainer, checkpoint: Path, timer: EpochTimer, log) -> int:
    """Load the state and the selected weights a finished training left in ``checkpoint``, without a step.

    The selected checkpoint is found by name beside ``checkpoint`` (the run folder may have moved since)."""
    from transformers import TrainerState

    if not timer.restore(checkpoint):
        log(f"note: {checkpoint.name} has no timing record: the time before it is not counted")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    best_here = checkpoint.parent / Path(best).name if best else None
    if trainer.args.load_best_model_at_end and best_here is not None and best_here.is_dir():
        trainer.state.best_model_checkpoint = str(best_here)
        trainer._load_best_model()
    else:
        trainer._load_from_checkpoint(str(checkpoint))
    return int(trainer.state.global_step)


def fingerprint(model) -> float:
    """A cheap checksum of the trainable weights (DDP ranks must agree on it)."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))


TIMING_FILE = "lsfa_timing.json"
"""The :class:`EpochTimer` record saved inside every checkpoint, so a resumed run still reports each epoch."""


def save_timing(checkpoint: Path, snapshot: dict[str, Any]) -> None:
    """Write the timer's record into a checkpoint the Trainer has just completed. If that fails (no space
    left), the checkpoint's ``trainer_state.json`` is removed before the error goes on, so a later ``--resume``
    does not trust a checkpoint that lacks part of its record."""
    try:
        write_json_atomic(checkpoint / TIMING_FILE, snapshot)
    except BaseException:
        (checkpoint / "trainer_state.json").unlink(missing_ok=True)
        raise


class EpochTimer:
    """Trainer callback recording wall time per epoch and the dev metrics after each one.

    Its record is written into every checkpoint (:data:`TIMING_FILE`) and read back by :meth:`restore`, so a
    run killed and resumed (a session limit, a pre-empted node) reports the time of every epoch, including the
    part of an epoch run before a mid-epoch checkpoint, and not only what the last process timed.
    """

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.epochs: list[dict[str, Any]] = []
        self.seconds_before_resume = 0.0  # training seconds of the processes before this one
        self._epoch_start: float | None = None  # set while inside an epoch
        self._carried_epoch_seconds = 0.0  # part of the current epoch run before a resume
        self._train_start = time.perf_counter()
        timer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer._train_start = time.perf_counter()

            def on_epoch_begin(self, args, state, control, **kwargs):
                timer._epoch_start = time.perf_counter() - timer._carried_epoch_seconds
                timer._carried_epoch_seconds = 0.0

            def on_epoch_end(self, args, state, control, **kwargs):
                timer.epochs.append({"epoch": state.epoch, "seconds": time.perf_counter() - timer._epoch_start})
                timer._epoch_start = None

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if timer.epochs and metrics:
                    timer.epochs[-1].update({k: v for k, v in metrics.items() if k.startswith("eval_")})

            def on_save(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                    if folder.is_dir():
                        save_timing(folder, timer.snapshot())

        self.callback = _Callback()

    @property
    def train_seconds(self) -> float:
        """Training wall time so far, over every process of a resumed run."""
        return self.seconds_before_resume + time.perf_counter() - self._train_start

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint keeps: the finished epochs, the time into the current one, the total so far."""
        into_epoch = time.perf_counter() - self._epoch_start if self._epoch_start is not None else 0.0
        return {"epochs": self.epochs, "epoch_seconds": into_epoch, "train_seconds": self.train_seconds}

    def restore(self, checkpoint: Path | None) -> bool:
        """Continue the record saved in ``checkpoint``; False when there is none (a checkpoint from before
        timings were saved: the epochs run before it then go untimed)."""
        try:
            saved = json.loads((Path(checkpoint) / TIMING_FILE).read_text()) if checkpoint else None
        except (OSError, json.JSONDecodeError):
            saved = None
        if not saved:
            return False
        self.epochs = list(saved["epochs"])
        self._carried_epoch_seconds = float(saved["epoch_seconds"])
        self.seconds_before_resume = float(saved["train_seconds"])
        return True


def resume_checkpoints(every_steps: int):
    """A callback that also saves a checkpoint every ``every_steps`` optimiser steps, between the epoch-end ones.
    A killed run then loses at most that many steps; evaluation and model selection stay as they were, and the
    Trainer's rotation keeps the best checkpoint beside the newest one."""
    from transformers import TrainerCallback

    class _SaveEvery(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every_steps == 0:
                control.should_save = True

    return _SaveEvery()


def run_callbacks(config: TrainConfig, timer: EpochTimer, deadline: float | None = None) -> list[Any]:
    """The callbacks of every lsfa training run (tagger or IFT): the epoch timer, resume checkpoints every
    ``checkpoint_steps`` steps when set, early stopping when ``early_stopping_patience`` is set, and a stop at
    a saved checkpoint past ``deadline`` (:mod:`lsfa.training.time_limit`; last, so the timer has saved first)."""
    from transformers import EarlyStoppingCallback

    callbacks = [timer.callback]
    if config.checkpoint_steps:
        callbacks.append(resume_checkpoints(config.checkpoint_steps))
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    if config.max_train_time:
        callbacks.append(train_time_callback(timer, config.max_train_time))
    if deadline is not None:
        callbacks.append(time_limit_callback(deadline))
    return callbacks


def stopped_by_train_time(callbacks: Sequence[Any]) -> int | None:
    """The step at which ``max_train_time`` ended training, or None when the schedule ran its course."""
    return next((c.stopped_at for c in callbacks if getattr(c, "stopped_at", None) is not None), None)


def kernel_trainer_class(kernels: str = "default"):
    """The stock Trainer with the attention kernel chosen per training step from the batch's width
    (:func:`lsfa.training.kernels.training_attention_context`); both lsfa trainers (tagger and IFT) build on it."""
    from transformers import Trainer

    from lsfa.training.kernels import training_attention_context

    class KernelTrainer(Trainer):
        def training_step(self, model, inputs, *args, **kwargs):
            width = inputs["input_ids"].shape[-1]
            with training_attention_context(width, self.args.device, kernels):
                return super().training_step(model, inputs, *args, **kwargs)

    return KernelTrainer


def ner_trainer_class(kernels: str = "default"):
    """The Trainer with evaluation kept in dataset order and the attention kernel chosen per step.

    With ``group_by_length`` the stock Trainer also shuffles evaluation batches by length, but our
    metric maps prediction rows back to words by position. Our dev rows are already sorted by length,
    so sequential order loses nothing. ``kernels`` is the config key of that name
    (:func:`lsfa.training.kernels.training_attention_context`).
    """
    from torch.utils.data import SequentialSampler

    class NerTrainer(kernel_trainer_class(kernels)):
        def __init__(self, *args, train_collator=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.train_collator = train_collator
            # Token classifiers take **kwargs but ignore num_items_in_batch, so the stock Trainer would
            # neither divide the loss by gradient_accumulation nor undo its x world_size scaling under
            # DDP: gradients 2-8x too large. Mean loss per micro-batch, divided as usual, is correct.
            self.model_accepts_loss_kwargs = False

        def get_train_dataloader(self):
            """Training batches through ``train_collator`` (packing); evaluation keeps the padding collator,
            whose rows map back to words by position."""
            if self.train_collator is None:
                return super().get_train_dataloader()
            evaluation_collator, self.data_collator = self.data_collator, self.train_collator
            try:
                return super().get_train_dataloader()
            finally:
                self.data_collator = evaluation_collator

        def _get_eval_sampler(self, eval_dataset):
            if self.args.world_size <= 1:
                return SequentialSampler(eval_dataset)
            return None  # accelerate shards sequentially; gather_for_metrics restores the order

    return NerTrainer


def load_training_data(config: TrainConfig):
    """Train and dev splits (never test: it is read once, after training) and the label list."""
    from lsfa.data.corpora import load_corpus

    splits = [config.train_split, config.dev_split]
    corpus = load_corpus(
        config.corpus, data_dir=config.data_dir, splits=splits, span_options=span_options(config),
        tag_column=config.tag_column, task=None if config.task == "auto" else config.task,
    )  # fmt: skip
    train = corpus[config.train_split].sentences[: config.train_limit]
    dev = corpus[config.dev_split].sentences[: config.dev_limit]
    return corpus, train, dev, corpus.label_list()


def span_options(config: TrainConfig):
    """How span-annotated files are read for this run (``misaligned``, ``overlaps``)."""
    from lsfa.data.jsonl import SpanOptions

    return SpanOptions(misaligned=config.misaligned, overlaps=config.overlaps)


def build_model(config: TrainConfig, labels: list[str], precision: str = "fp32"):
    """Token classifier with the requested attention, LoRA-wrapped when ``mode == "lora"``.

    The base is built straight on this process's GPU when there is one, in the checkpoint's half dtype where the
    recipe keeps its frozen weights in it anyway (:mod:`lsfa.models.placement`), quantised with ``quantize``
    (:mod:`lsfa.models.quantise`); ``precision`` is the resolved training precision."""
    from transformers import AutoConfig

    from lsfa.models.attention import check_implementation
    from lsfa.models.catalogue import resolve_model
    from lsfa.models.classifier import apply_lora, build_token_classifier, is_encoder, load_tokenizer
    from lsfa.models.placement import HALF, device_map, raise_to_fp32_but_frozen_linear, training_load_dtype
    from lsfa.models.quantise import prepare_for_kbit_training
    from lsfa.precision import autocast_dtype

    check_implementation(config.attn_implementation, config.attention)
    path = resolve_model(config.model, auto_fetch=True)
    tokenizer = load_tokenizer(path)
    dtype = training_load_dtype(AutoConfig.from_pretrained(str(path)), precision, config.mode, config.quantize,
                                config.save_merged)  # fmt: skip
    model = build_token_classifier(
        path, labels, config.attention, config.attn_implementation, dtype=dtype, layers=config.layers,
        quantize=config.quantize, compute_dtype=autocast_dtype(precision) or torch.float32, device_map=device_map(),
    )  # fmt: skip
    attention = "full" if is_encoder(model.config) else config.attention
    model = prepare_for_kbit_training(model, config.gradient_checkpointing)
    if config.mode == "lora":
        lora = config.lora
        model = apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # peft's hook: checkpointed blocks then see an input needing grad
    if dtype in HALF:
        raise_to_fp32_but_frozen_linear(model)  # the mixed-precision layout: fp32 but for frozen linear weights
    return model, tokenizer, attention


def refuse_sharded_training(trainer) -> None:
    """One clear line instead of a run that would break later: FSDP and DeepSpeed shard the model, but rank 0
    alone saves, predicts and scores it at the end (see the module docstring)."""
    from lsfa.errors import LsfaError

    for name, enabled in (("FSDP", "is_fsdp_enabled"), ("DeepSpeed", "is_deepspeed_enabled")):
        if getattr(trainer, enabled, False):
            raise LsfaError(
                f"{name} is not supported: lsfa trains data-parallel (torchrun / accelerate launch without {name}, "
                "each rank holding the model); for a model too large for one card use quantize: 4bit and "
                "gradient_checkpointing (docs/large-models.md)"
            )


def training_arguments(config: TrainConfig, precision: str, run_dir: Path, **overrides: Any):
    """The Trainer arguments for a config: epoch-wise dev evaluation, checkpoints, best-on-dev-F1.

    ``overrides`` replace or add arguments (the generative baseline selects on dev loss instead).
    """
    from transformers import TrainingArguments

    arguments = dict(
        output_dir=str(run_dir / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        bf16=precision == "bf16",
        fp16=precision == "fp16",  # autocast and a GradScaler: fp16's range needs the loss scaled
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        # A resumed run continues early stopping's patience count instead of starting it again.
        restore_callback_states_from_checkpoint=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        # One fused kernel for all parameters instead of a few ops per tensor: 6 ms instead of 17 ms per step
        # for smollm2-135m's 420 LoRA matrices on the 2-core CPU; the same update up to summation order.
        optim="adamw_torch_fused" if config.kernels == "fast" else "adamw_torch",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
    )
    arguments.update(overrides)
    return TrainingArguments(**arguments)


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
    from transformers import DataCollatorForTokenClassification, set_seed

    from lsfa.inference.predictor import resolve_precision
    from lsfa.models.optimise import cast_frozen_linear_weights
    from lsfa.precision import autocast_dtype
    from lsfa.training.collate import packing_collator
    from lsfa.training.kernels import use_fast_lora_dropout

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
    if autocast_dtype(precision) and config.mode == "lora" and not config.save_merged:
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
    final_fingerprint = _ranks_agree(trainer)
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


def check_training_precision(precision: str) -> None:
    """fp16 training needs CUDA (its loss scaling is the GPU path of the Trainer); fp32 on an Ampere or later
    card gets TF32 matrix products (:func:`lsfa.precision.enable_tf32`)."""
    from lsfa.errors import LsfaError
    from lsfa.precision import enable_tf32

    if precision == "fp16" and not torch.cuda.is_available():
        raise LsfaError("precision fp16 trains on a CUDA GPU only (autocast with loss scaling); use bf16 or fp32 here")
    if precision == "fp32":
        enable_tf32()


def leave_process_group() -> None:
    """Shut this process's torch.distributed group down, once the run's objects are gone (call it after
    :func:`train` has returned, on every rank).

    Left to the interpreter's exit, gloo's worker threads could still hold tensors while Python finalises,
    and a rank now and then died with SIGABRT after a successful run. Called inside :func:`train`, before its
    trainer and DDP-wrapped model were freed, the DDP reducer's teardown waited on the destroyed group forever.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def _ranks_agree(trainer) -> dict[str, Any]:
    """Gather every rank's weight fingerprint; DDP ranks must hold identical weights after training."""
    value = fingerprint(trainer.model)
    world = trainer.args.world_size
    if world <= 1:
        return {"world_size": 1, "fingerprints": [value], "agree": True}
    import torch.distributed as dist

    gathered: list[float] = [0.0] * world
    dist.all_gather_object(gathered, value)
    return {"world_size": world, "fingerprints": gathered, "agree": max(gathered) - min(gathered) < 1e-6}


def _finish(config, trainer, tokenizer, labels, attention, precision, run_dir, dev_sentences, facts, log):
    """Save the best model, evaluate it once on dev and test, write predictions and metrics.json."""
    from lsfa.data.conll import write_conll
    from lsfa.models.classifier import count_parameters
    from lsfa.models.saving import TaggerMeta, save_tagger

    model = trainer.model
    meta = TaggerMeta(
        base_model=config.model,
        model_type=_unwrap(model).config.model_type,
        labels=labels,
        attention=attention,
        weights="lora" if config.mode == "lora" else "full",
        label_all_subtokens=config.label_all_subtokens,
        max_length=config.max_length,
        context=config.context,
        layers=config.layers,
        quantize=config.quantize,
        task=facts["task"],
        extra={"parameters": count_parameters(model), **_distilled(facts)},
    )
    task = facts["task"]
    save_tagger(model, tokenizer, run_dir / MODEL, meta, merge=config.save_merged)
    model.eval()
    metrics: dict[str, Any] = {"config": config.model_dump(), "attention": attention, "precision": precision}
    metrics["task"] = task
    metrics.update(_distilled(facts))
    splits = {"dev": dev_sentences}
    if config.test_split:
        from lsfa.data.corpora import load_split

        splits["test"] = load_split(
            config.corpus, config.test_split, data_dir=config.data_dir, span_options=span_options(config),
            tag_column=config.tag_column, task=task,
        ).sentences[: config.test_limit]  # fmt: skip
    for split, sentences in splits.items():
        metrics[split], predicted = _evaluate_split(
            model, tokenizer, config, precision, sentences, run_dir, split, write_conll, task
        )
        if split == "dev":
            metrics["temperature"] = _calibrate(run_dir / MODEL, predicted, sentences, labels)
        if split == "test" and config.context == "sentence":  # with context a sentence needs its document
            metrics[split]["latency_ms"] = tagger_latency(
                model, tokenizer, [s.tokens for s in sentences], config.max_length, precision
            )
        log(f"{split}: P {metrics[split]['micro']['precision']:.4f}  R {metrics[split]['micro']['recall']:.4f}"
            f"  F1 {metrics[split]['micro']['f1']:.4f}")  # fmt: skip
    metrics.update(_timing(facts, config))
    metrics["parameters"] = meta.extra["parameters"]
    metrics["machine"] = facts["machine"]
    RunFolder(run_dir).write_metrics(metrics)
    write_model_card(run_dir / MODEL, config, {**metrics, "labels": labels})
    return metrics


def _distillation(config: TrainConfig, train_sentences, precision: str, log):
    """The run's :class:`~lsfa.training.distill.Distillation` (its teacher's cached distributions), or None."""
    if config.distill.teacher is None:
        return None
    from lsfa.training.distill import prepare_distillation

    return prepare_distillation(config, train_sentences, precision, log)


def _distilled(facts: dict[str, Any]) -> dict[str, Any]:
    """``{"distillation": record}`` for a distilled student's metadata and metrics, else nothing."""
    return {"distillation": facts["distillation"]} if facts.get("distillation") else {}


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _evaluate_split(model, tokenizer, config, precision, sentences, run_dir, split, write_conll, task="spans"):
    from lsfa.eval.report import evaluate_sentences
    from lsfa.eval.tokens import token_scores
    from lsfa.inference.decode import viterbi_column
    from lsfa.inference.predictor import predict_words

    start = time.perf_counter()
    predicted = predict_words(
        model,
        tokenizer,
        [s.tokens for s in sentences],
        max_length=config.max_length,
        batch_size=config.eval_batch_size,
        precision=precision,
        documents=[s.doc_id for s in sentences],
        context=config.context,
    )
    seconds = time.perf_counter() - start
    out = [
        Sentence(s.tokens, tags, s.extra, s.doc_id, s.line) for s, tags in zip(sentences, predicted.tags, strict=True)
    ]
    write_conll(out, RunFolder(run_dir).predictions(split))
    gold = [s.tags for s in sentences]
    if task == "tokens":
        result = token_scores(gold, predicted.tags)
    else:
        result = evaluate_sentences(gold, predicted.tags, [s.tokens for s in sentences])
    result["inference_seconds"] = seconds
    result["ms_per_sentence"] = 1000 * seconds / max(len(sentences), 1)
    result["cut_words"] = predicted.cut_words
    if task == "tokens":
        return result, predicted
    result["decoding"] = viterbi_column(
        predicted, gold, [s.tokens for s in sentences], list(model.config.id2label.values())
    )
    return result, predicted


def _calibrate(folder: Path, predicted, sentences, labels: list[str]) -> float:
    """Fit the softmax temperature on the dev split's word distributions and save it with the tagger.

    Words, not entity confidences: on the full-scale CoNLL-2003 taggers an entity-level fit gave a higher test ECE
    (docs/results/decoding-confidence.md), and the word fit serves ``tokens`` taggers as well."""
    from lsfa.inference.calibration import fit_dev_temperature
    from lsfa.models.saving import update_meta

    temperature = fit_dev_temperature(predicted, sentences, labels, on="words")
    update_meta(folder, temperature=temperature)
    return temperature


def _timing(facts: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    epochs = facts["epochs"]
    tokens = facts["train_tokens"] * epochs_run(epochs)
    return {
        "global_step": facts["global_step"],
        "best_checkpoint": facts["best_checkpoint"],
        "stopped_by_max_train_time": facts.get("stopped_by_max_train_time"),
        **epoch_timing(epochs, facts["train_seconds"], tokens, facts["wall_start"]),
        "ranks": facts["ranks"],
        "train_batching": facts.get("batching"),
    }

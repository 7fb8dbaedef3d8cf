"""The Trainer side of a run: its arguments (epoch-wise dev evaluation, best-on-dev-F1 checkpoints) and the
Trainer classes lsfa builds on (per-step attention kernels; dataset-order evaluation for the tagger).

The IFT baseline reuses :func:`training_arguments` and :func:`kernel_trainer_class` with its own selection
metric and loss. The classes are built by functions because the kernel choice is a config value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainingArguments

from lsfa.errors import LsfaError
from lsfa.precision import enable_tf32
from lsfa.runs import CHECKPOINTS_DIR
from lsfa.training.config import TrainConfig
from lsfa.training.kernels import training_attention_context


def check_training_precision(precision: str) -> None:
    """fp16 training needs CUDA (its loss scaling is the GPU path of the Trainer); fp32 on an Ampere or later
    card gets TF32 matrix products (:func:`lsfa.precision.enable_tf32`)."""

    if precision == "fp16" and not torch.cuda.is_available():
        raise LsfaError("precision fp16 trains on a CUDA GPU only (autocast with loss scaling); use bf16 or fp32 here")
    if precision == "fp32":
        enable_tf32()


def training_arguments(config: TrainConfig, precision: str, run_dir: Path, **overrides: Any):
    """The Trainer arguments for a config: epoch-wise dev evaluation, checkpoints, best-on-dev-F1.

    ``overrides`` replace or add arguments (the generative baseline selects on dev loss instead).
    """
    arguments = dict(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
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


def kernel_trainer_class(kernels: str = "default"):
    """The stock Trainer with the attention kernel chosen per training step from the batch's width
    (:func:`lsfa.training.kernels.training_attention_context`); both lsfa trainers (tagger and IFT) build on it."""

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

"""Training configuration: one pydantic model, loaded from YAML and overridden from the command line.

Every field is also a CLI flag (``--learning-rate 1e-4`` overrides ``learning_rate: 5e-5``), so a run
is fully described by the YAML file plus the flags, and the resolved config is printed and saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lsfa.data.encode import Context
from lsfa.errors import LsfaError
from lsfa.training.time_limit import parse_duration
from lsfa.yaml_files import read_yaml_mapping

OLD_KEYS: dict[str, str] = {"mode": "finetune"}
"""Config keys renamed, old -> new: the old one is still read (YAML, ``--mode``, run records, keyword overrides), so
configs and grids written before keep working. ``mode`` also named the attention setting and strict/conlleval."""


def canonical_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with old key names (:data:`OLD_KEYS`) renamed; both names with different values is refused
    (ValueError), since one of them would be silently dropped."""
    renamed = dict(data)
    for old, new in OLD_KEYS.items():
        if old not in renamed:
            continue
        value = renamed.pop(old)
        if new in renamed and renamed[new] != value:
            raise ValueError(f"{old}: {value} and {new}: {renamed[new]} disagree ({old} is the old name of {new})")
        renamed[new] = value
    return renamed


class LoraOptions(BaseModel):
    """LoRA hyper-parameters (the paper's defaults: r=32, alpha=64, dropout 0.05, all linear layers)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(32, gt=0, description="LoRA rank")
    alpha: int = Field(64, gt=0, description="LoRA scaling alpha (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str = Field("all-linear", description="all-linear, or module names separated by commas")


class DistillOptions(BaseModel):
    """Knowledge distillation from a trained tagger (``lsfa distill``; :mod:`lsfa.training.distill`): the loss is
    ``(1 - weight) * CE(gold) + weight * temperature**2 * KL(teacher || student)`` at every word's first sub-token."""

    model_config = ConfigDict(extra="forbid")
    teacher: str | None = Field(None, description="teacher tagger folder (or its run folder); null: no distillation")
    weight: float = Field(0.5, ge=0, le=1, description="share of the teacher's KL term in the loss (0: gold only)")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of both distributions in the KL term")
    unlabelled: list[str] = Field(
        default_factory=list,
        description="extra text files (a text per line, or JSONL with a text field; commas between files): KL only",
    )
    cache_dir: str | None = Field(None, description="teacher distribution cache (default LSFA_HOME/distill-cache)")

    @field_validator("unlabelled", mode="before")
    @classmethod
    def _file_list(cls, value: Any) -> Any:
        """A flag gives one string: files separated by commas."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


NESTED_OPTIONS: dict[str, type[BaseModel]] = {"lora": LoraOptions, "distill": DistillOptions}
"""Config keys that are mappings of their own; each of their keys is a flag ``--lora-r``, ``--distill-teacher``."""


class TrainConfig(BaseModel):
    """Everything that defines a training run."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # YAML `attention: 5` is layer "5"

    model: str = Field("smollm2-135m", description="catalogue name (`lsfa models`), model folder or hub id")
    corpus: str = Field("conll2003", description="named corpus (conll2003, bc5cdr, bc5cdr_mtl), folder or file")
    data_dir: str | None = Field(None, description="folder of the named corpora (default LSFA_DATA_DIR)")
    train_split: str = Field("train", description="split to train on")
    dev_split: str = Field("dev", description="split for model selection (strict span F1 after each epoch)")
    test_split: str | None = Field("test", description="split scored once at the end (null: none)")
    train_limit: int | None = Field(None, description="use only the first N training sentences")
    dev_limit: int | None = Field(None, description="use only the first N dev sentences")
    test_limit: int | None = Field(None, description="use only the first N test sentences")
    attention: str = Field("full", description="full (LS-FA), causal (LS-CA), layers 0-7,24-29 or groups=4:1010")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="transformers attention kernel (flash_attention_2: CUDA, pip install flash-attn)"
    )
    layers: int | None = Field(None, ge=1, description="keep only the first K transformer layers of the decoder")
    finetune: Literal["lora", "full"] = Field(
        "lora", validation_alias=AliasChoices("finetune", "mode"), description="LoRA adapters or full fine-tuning"
    )
    lora: LoraOptions = Field(default_factory=LoraOptions, description="LoRA rank, alpha, dropout, modules")
    quantize: Literal["none", "4bit", "8bit"] = Field(
        "none", description="base weights in 4-bit nf4 (QLoRA) or 8-bit via bitsandbytes, LoRA on top (lsfa[quant])"
    )
    distill: DistillOptions = Field(
        default_factory=DistillOptions, description="teacher, weight, temperature, unlabelled text, cache"
    )
    epochs: float = Field(3, gt=0, description="training epochs (fractions allowed)")
    max_steps: int = Field(-1, description="stop after this many optimiser steps (overrides epochs when > 0)")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    scheduler: str = Field("cosine", description="transformers learning-rate schedule (cosine, linear, ...)")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps warming up the learning rate")
    weight_decay: float = Field(0.001, ge=0, description="AdamW weight decay")
    batch_size: int = Field(8, gt=0, description="sentences (windows with document-windows) per step and process")
    eval_batch_size: int = Field(32, gt=0, description="sentences per batch when scoring dev and test")
    gradient_accumulation: int = Field(1, gt=0, description="batches accumulated per optimiser step")
    max_length: int = Field(512, gt=4, description="sub-tokens per window; longer inputs are windowed, not cut")
    label_all_subtokens: bool = Field(False, description="train every sub-token, not only each word's first")
    context: Context = Field(
        "sentence",
        description="document: each sentence with its neighbours; document-windows: documents cut into windows",
    )
    tag_column: int | None = Field(None, description="CoNLL tag column (0-based; default the corpus's own, else last)")
    task: Literal["auto", "spans", "tokens"] = Field(
        "auto", description="spans (BIO entities/chunks) or tokens (a tag per word, e.g. POS); auto detects"
    )
    misaligned: Literal["error", "snap", "drop"] = Field(
        "error", description="JSONL spans off word boundaries: error, snap to the words, or drop"
    )
    overlaps: Literal["error", "longest"] = Field("error", description="overlapping JSONL spans: error or keep longest")
    precision: Literal["bf16", "fp16", "fp32", "auto"] = Field(
        "auto", description="auto: bf16 autocast where it is measured faster (CUDA: native bf16, else fp16)"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: far less memory, about 30% more time"
    )
    group_by_length: bool = Field(False, description="length-grouped batches (the Trainer's group_by_length)")
    pack: bool = Field(True, description="pack each batch's rows into shared rows: no compute on padding")
    kernels: Literal["fast", "default"] = Field(
        "fast", description="fast: fused AdamW; on CPU also math attention for short rows, cheaper LoRA dropout"
    )
    early_stopping_patience: int | None = Field(2, description="epochs without dev F1 gain before stopping")
    seed: int = Field(42, description="random seed (data order, head initialisation, dropout)")
    output_dir: str = Field("runs/default", description="run folder: model/, metrics.json, predictions/")
    save_merged: bool = Field(False, description="save LoRA merged into the weights (a plain transformers folder)")
    logging_steps: int = Field(20, description="log the loss every N steps")
    checkpoint_steps: int | None = Field(
        None, gt=0, description="also save a resume checkpoint every N steps (epochs longer than a job's time)"
    )
    threads: int | None = Field(None, description="torch CPU threads (default: all cores)")
    max_train_time: float | None = Field(
        None,
        gt=0,
        description="end training after this much training time (seconds, or 100m, 2h, 1h30m): the state reached "
        "is evaluated on dev, the best checkpoint kept and the run finished (--time-limit pauses instead)",
    )

    @field_validator("max_train_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, int | float):
            return value
        try:
            return parse_duration(value, "max_train_time")
        except LsfaError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="before")
    @classmethod
    def _old_key_names(cls, data: Any) -> Any:
        return canonical_keys(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _quantised_base_needs_lora(self) -> TrainConfig:
        if self.quantize != "none" and self.finetune != "lora":
            raise ValueError(
                f"quantize: {self.quantize} freezes the base in packed integers; use finetune: lora (QLoRA)"
            )
        return self

    @field_validator("attention")
    @classmethod
    def _attention_syntax(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("attention must be causal, full, a layer list like 0-7,24-29 or groups=4:1010")
        return value.strip()


CONFIG_GROUPS: dict[str, tuple[str, ...]] = {
    "model and attention": ("model", "layers", "attention", "attn_implementation", "finetune", "lora", "quantize"),
    "data": ("corpus", "data_dir", "train_split", "dev_split", "test_split", "train_limit", "dev_limit",
             "test_limit", "tag_column", "task", "max_length", "label_all_subtokens", "context", "misaligned",
             "overlaps"),
    "schedule": ("epochs", "max_steps", "max_train_time", "learning_rate", "scheduler", "warmup_ratio",
                 "weight_decay", "batch_size", "gradient_accumulation", "early_stopping_patience", "seed"),
    "speed": ("precision", "pack", "group_by_length", "kernels", "eval_batch_size", "threads",
              "gradient_checkpointing"),
    "distillation": ("distill",),
    "output": ("output_dir", "save_merged", "logging_steps", "checkpoint_steps"),
}  # fmt: skip
"""How ``lsfa train --help`` groups the config keys (every key in exactly one group; a test checks it)."""


def config_help() -> str:
    """Every config key as a flag, with its default and meaning, grouped (the help of ``lsfa train``)."""
    lines = []
    for group, names in CONFIG_GROUPS.items():
        lines.append(f"{group}:")
        for name in names:
            if name in NESTED_OPTIONS:
                lines += [
                    _flag_line(f"{name}-{sub}", field, field.get_default(call_default_factory=True))
                    for sub, field in NESTED_OPTIONS[name].model_fields.items()
                ]
            else:
                field = TrainConfig.model_fields[name]
                lines.append(_flag_line(name, field, field.default))
    return "\n".join(lines)


def _flag_line(name: str, field: Any, default: Any) -> str:
    shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
    return f"  --{name.replace('_', '-'):26s} {field.description or ''} [default: {shown}]"


def flag_names() -> dict[str, str]:
    """CLI flag -> dotted config key, e.g. ``--lora-r`` -> ``lora.r``."""
    flags = {}
    for name in TrainConfig.model_fields:
        if name in NESTED_OPTIONS:
            for sub in NESTED_OPTIONS[name].model_fields:
                flags[f"--{name}-" + sub.replace("_", "-")] = f"{name}.{sub}"
        else:
            flags["--" + name.replace("_", "-")] = name
    return flags | {"--" + old: new for old, new in OLD_KEYS.items()}  # --mode still works, --finetune is shown


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn ``["--learning-rate", "1e-4", "--no-group-by-length"]`` into a nested override dict."""
    flags = flag_names()
    overrides: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        key, value, used = _flag_value(arg, args, index, flags)
        index += used
        target = overrides
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def _flag_value(arg: str, args: list[str], index: int, flags: dict[str, str]) -> tuple[str, Any, int]:
    """The config key, its value and how many arguments the flag used (``--x=1``, ``--x 1``, ``--x``)."""
    name, has_inline, inline = arg.partition("=")
    if name.startswith("--no-") and "--" + name[5:] in flags:
        return flags["--" + name[5:]], False, 1
    if name not in flags:
        known = ", ".join(sorted(flags))
        raise LsfaError(f"unknown option {name!r}; training options are: {known}")
    key = flags[name]
    if has_inline:
        return key, _scalar(inline, key), 1
    if index + 1 >= len(args) or args[index + 1].startswith("--"):
        return key, True, 1
    return key, _scalar(args[index + 1], key), 2


def _text_fields() -> dict[str, bool]:
    """Dotted keys of the text-valued fields -> whether they may be null (``test_split``, ``data_dir``); a list of
    text (``distill.unlabelled``) counts as text too: its validator splits the flag's value."""
    fields = {name: field.annotation for name, field in TrainConfig.model_fields.items()}
    for group, options in NESTED_OPTIONS.items():
        fields.update({f"{group}.{name}": field.annotation for name, field in options.model_fields.items()})
    text = {}
    for key, annotation in fields.items():
        members = set(get_args(annotation)) if get_args(annotation) else {annotation}
        if str in members and members <= {str, type(None)}:
            text[key] = type(None) in members
    return text


def _scalar(text: str, key: str = "") -> Any:
    """A flag value as YAML reads it (numbers, booleans, null), except that text fields keep the text.

    ``--attention 5`` must mean layer "5", not the integer 5 (and ``--output-dir 010`` not 8).
    """
    nullable = _text_fields().get(key)
    if nullable is not None:
        return None if nullable and text.strip() in ("null", "Null", "NULL", "~") else text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (optional), apply overrides, validate; errors name the file and the field."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        data = read_yaml_mapping(path, "config file")
    where = f"{path}: " if path else ""
    try:
        merged = deep_merge(canonical_keys(data), canonical_keys(overrides or {}))  # --finetune beats a file's mode:
    except ValueError as error:
        raise LsfaError(f"{where}invalid training config: {error}") from None
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise LsfaError(f"{where}invalid training config: {problems}") from error


def with_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` with ``overrides`` applied as flags are (``lora={"r": 8}`` keeps ``lora.alpha``; old key names read,
    so ``mode="full"`` overrides the config's ``finetune``)."""
    try:
        extra = canonical_keys(overrides)
    except ValueError as error:
        raise LsfaError(f"invalid training config: {error}") from None
    return load_config(None, deep_merge(config.model_dump(), extra))


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested mappings merged key by key (``lora: {r: 8}`` keeps ``lora.alpha``)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(config: TrainConfig) -> str:
    """The resolved config as YAML, as printed at the start of a run and saved with it."""
    return yaml.safe_dump(config.model_dump(), sort_keys=False)

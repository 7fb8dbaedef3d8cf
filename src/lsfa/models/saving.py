"""Save and load trained taggers.

A tagger folder holds ``lsfa.json`` (labels, attention, base model, how it was trained, lsfa version),
the tokenizer, and either a LoRA adapter with its trained head (``weights="lora"``: small, needs the base
model) or complete weights (``weights="full"`` or ``"merged"``: a plain transformers folder whose
``config.json`` carries ``lsfa_attention``). Folders are written to a temporary sibling and renamed into
place, so a crash never leaves a half-written tagger behind. The ``lsfa.json`` schema and its readers are
:mod:`lsfa.models.meta` (no torch), re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

from lsfa.errors import LsfaError
from lsfa.models import merged_cache
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import (
    apply_attention,
    build_token_classifier,
    ensure_token_classification_class,
    head_name,
    is_encoder,
    peft_quietly,
)
from lsfa.models.meta import META_FILE, TaggerMeta, read_meta, update_meta  # noqa: F401 (update_meta: re-exported)
from lsfa.models.placement import device_map, raise_to_fp32_but_linear_weights, training_load_dtype
from lsfa.models.quantise import dequantise


def save_tagger(model, tokenizer, folder: str | Path, meta: TaggerMeta, merge: bool = False) -> Path:
    """Write a tagger atomically; ``merge=True`` folds LoRA into the weights (a plain transformers folder)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta = meta.model_copy()
        if merge and _is_peft(model):
            model = model.merge_and_unload()
            meta.weights = "merged"
        elif _is_peft(model):
            meta.weights = "lora"  # what the folder will hold, whatever the caller's meta said
        elif meta.weights == "lora":
            meta.weights = "full"
        model.config.lsfa_attention = meta.attention
        model.save_pretrained(staging)
        if meta.weights != "lora" and meta.attention not in PLAIN_ATTENTIONS:
            _refuse_plain_loading(staging / "config.json", meta.attention)
        tokenizer.save_pretrained(staging)
        (staging / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n")
        apply_umask(staging)
        _replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


PLAIN_ATTENTIONS = ("full", "causal")
"""Settings transformers reproduces from ``config.is_causal`` alone; a layer subset needs lsfa to restore it."""
GUARDED_MODEL_TYPE = "lsfa-layer-subset"
"""The ``model_type`` a layer-subset tagger's config.json declares, so that plain transformers refuses it."""


def _refuse_plain_loading(config_file: Path, attention: str) -> None:
    """Make a plain ``from_pretrained`` of a layer-subset tagger fail loudly instead of running bidirectional in
    every layer: the config names a model type transformers does not know, and keeps the real one in
    ``lsfa_model_type`` for lsfa's loader, which restores the per-layer setting. ``lsfa_note`` says so."""
    config = json.loads(config_file.read_text())
    config["lsfa_model_type"], config["model_type"] = config["model_type"], GUARDED_MODEL_TYPE
    config["lsfa_note"] = (
        f"attention {attention!r} is set per layer: load with lsfa.Tagger.load(folder); transformers alone "
        "would run every layer bidirectionally"
    )
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def _tagger_config(folder: Path):
    """The folder's transformers config, with a layer-subset guard undone (see :func:`_refuse_plain_loading`)."""
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") != GUARDED_MODEL_TYPE:
        return AutoConfig.from_pretrained(str(folder))
    raw.pop("model_type")
    raw.pop("lsfa_note", None)
    return AutoConfig.for_model(raw.pop("lsfa_model_type"), **raw)


def current_umask() -> int:
    """This process's umask (read from /proc where it is shown, else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(folder: Path) -> None:
    """Give a staged folder and everything in it the permissions a plain ``mkdir`` / ``open`` would have.

    Why: the staging folder comes from ``tempfile.mkdtemp`` (always 0700) and some writers create files 0600,
    so a tagger meant to be shared (another user, a service account) was unreadable to all but its owner
    whatever the umask. Folders get 0777 and files 0666, less the umask, as everywhere else."""
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _replace_dir(staging: Path, folder: Path) -> None:
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, folder)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def export_tagger(source: str | Path, out: str | Path, merged: bool = True, precision: str = "fp32") -> Path:
    """A self-contained, hub-ready copy of a tagger folder: weights (LoRA merged in with ``merged``, a plain
    transformers folder then), tokenizer, ``lsfa.json`` and the model card; ``precision="bf16"`` halves the
    weights on disk. Pushing is left to ``huggingface_hub`` (``HfApi().upload_folder``)."""
    if precision not in ("fp32", "bf16"):
        raise LsfaError(f"--precision must be fp32 or bf16 for an export, not {precision!r}")
    source, out = Path(source), Path(out)
    if out.exists():
        raise LsfaError(f"{out}: already exists; choose a new folder for the export")
    model, tokenizer, meta = load_tagger(source, merge=False)  # save_tagger merges, and records "merged"
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    folder = save_tagger(model, tokenizer, out, meta, merge=merged)
    card = source / "README.md"
    if card.is_file():
        shutil.copyfile(card, folder / "README.md")
    return folder


def load_tagger(
    folder: str | Path,
    attn_implementation: str = "sdpa",
    merge: bool = False,
    device=None,
    keep_quantised: bool = False,
    compute_dtype=None,
    base_dtype=None,
):
    """Load ``(model, tokenizer, meta)`` from a tagger folder with its attention setting restored.

    ``merge=True`` merges a LoRA adapter into the base weights after loading (faster inference). ``device``
    builds the weights straight there (no CPU copy first; merging then happens on the device, which is exact).
    A QLoRA tagger's base is quantised again as in training, then dequantised before the adapter goes on
    (:mod:`lsfa.models.quantise`: the function training optimised, merged or not), unless ``keep_quantised``
    keeps it in 4/8 bits with the adapter unmerged beside it (least memory), computing in ``compute_dtype``.
    A merged CPU load of a LoRA tagger is kept in :mod:`lsfa.models.merged_cache` and read from there next time
    (the same weights, without importing peft or merging again). ``base_dtype`` (bf16) builds a LoRA tagger's base
    in that dtype and merges there (:func:`lsfa.models.placement.inference_load_dtype` says when that is exact):
    half the memory of an fp32 merge on the device.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    placement = device_map(device) if device is not None else None
    half = base_dtype is not None and base_dtype != torch.float32 and meta.quantize == "none"
    cacheable = meta.weights == "lora" and merge and meta.quantize == "none" and _on_cpu(device) and not half
    cached = merged_cache.lookup(folder, meta, _base_folder(meta)) if cacheable else None
    if meta.weights == "lora" and cached is None:
        from peft import PeftModel

        base = _lora_base(meta, attn_implementation, placement, compute_dtype, base_dtype if half else None)
        if half:
            raise_to_fp32_but_linear_weights(base, head_name(base))
        if meta.quantize != "none" and not keep_quantised:
            base = dequantise(base, torch.float32)
        elif keep_quantised and merge:
            raise LsfaError("a quantised base cannot be merged exactly: keep_quantised needs merge=False")
        with peft_quietly():
            model = PeftModel.from_pretrained(base, str(folder))
        if merge:
            model = model.merge_and_unload()
        if cacheable:
            merged_cache.store(folder, meta, _base_folder(meta), model)
    else:
        model = _load_full_weights(cached or folder, attn_implementation, placement)
    apply_attention(model, meta.attention)
    model.eval()
    return model, tokenizer, meta


def base_config(meta: TaggerMeta):
    """The ``config.json`` of the base model a tagger was trained from (to choose how to build it)."""
    return AutoConfig.from_pretrained(str(_base_folder(meta)))


def _on_cpu(device) -> bool:
    """Whether weights built for ``device`` live on the CPU (the only place the merged cache is used)."""
    return device is None or torch.device(device).type == "cpu"


def _base_folder(meta: TaggerMeta) -> Path | str:
    """The base model a LoRA tagger was trained on, as ``_lora_base`` finds it."""
    return resolve_model(meta.base_model)


def _load_full_weights(folder: Path, attn_implementation: str | None, placement):
    """A folder of complete weights (a full or merged tagger, or a merged-cache entry) as a token classifier."""
    config = _tagger_config(folder)
    ensure_token_classification_class(config)
    if is_encoder(config):  # as in training: some encoders (MPNet) have no SDPA path, let transformers choose
        attn_implementation = None
    return AutoModelForTokenClassification.from_pretrained(
        str(folder), config=config, attn_implementation=attn_implementation, dtype=torch.float32,
        **({"device_map": placement} if placement else {}),
    )  # fmt: skip


def _lora_base(meta: TaggerMeta, attn_implementation: str, placement, compute_dtype, dtype=None):
    """The base model a LoRA tagger's adapter goes on: built as in training (the same layers, and quantised the
    same way from the same stored values, so a QLoRA base gets the very codes training saw), in ``dtype`` when
    given (default fp32)."""
    path = resolve_model(meta.base_model)
    dtype = dtype or torch.float32
    if meta.quantize != "none":
        dtype = training_load_dtype(AutoConfig.from_pretrained(str(path)), "fp32", "lora", meta.quantize)
    return build_token_classifier(
        path, meta.labels, meta.attention, attn_implementation, dtype=dtype, layers=meta.layers,
        quantize=meta.quantize, compute_dtype=compute_dtype or torch.float32, device_map=placement,
    )  # fmt: skip

"""A per-user cache of merged LoRA taggers, so that loading one on the CPU is a plain weights load.

Why: a LoRA tagger folder holds only the adapter, so every ``lsfa predict`` used to import peft (about 2 s:
it imports bitsandbytes and transformers' model zoo), build the base, attach the adapter and merge it
(about 1 s more) before tagging one sentence in 0.05 s. The first merged load writes the merged fp32 weights
to ``LSFA_HOME/merged/<id of the folder>/``; later loads of the same folder read them back with
``from_pretrained`` and never import peft.

Why exact: the cache holds the very fp32 tensors the merge computed, in safetensors (lossless), so a load from
the cache gives the same weights, bit for bit, as merging again on this machine (tested).

Why it cannot go stale: the entry records a fingerprint of everything the weights come from (the adapter
files' sizes and modification times, the base model's files, the labels, attention and layer count); any
difference and the tagger is merged again and the entry replaced. There is one entry per tagger folder path
(a retrained folder replaces its entry rather than adding one), and only the
:data:`MAX_ENTRIES` most recently used are kept. Metadata that does not change the weights
(a fitted temperature, a recorded fast path) is read from the tagger folder itself, never from the cache.

Only CPU loads of unquantised LoRA taggers use it (a merge on a GPU may round differently). It costs the
merged weights' size on disk (about 0.5 GB for smollm2-135m); ``LSFA_MERGED_CACHE=off`` turns it off
(``LSFA_MERGED_CACHE=/some/folder`` moves it: the tests keep theirs in a temporary folder), and a cache that
cannot be written (read-only home, full disk) is skipped: prediction never fails because of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lsfa import settings

CACHE_ENV = "LSFA_MERGED_CACHE"
"""``off`` (or ``0``, ``no``, ``false``) disables the cache; a folder path puts it there; unset, it is
``LSFA_HOME/merged``."""
OFF_VALUES = ("off", "0", "no", "false")
SOURCE_FILE = "lsfa-merged-source.json"
"""The fingerprint of what an entry was merged from; written last, so an entry holding it is complete."""
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")
BASE_FILES = ("config.json", "model.safetensors", "lsfa-model.json")
MAX_ENTRIES = 4
"""Entries kept (the most recently used): each is a whole model's weights, and every ``lsfa.train`` call, tuning
trial or test tagger loads a new folder, so an unbounded cache would fill the disk."""


def enabled() -> bool:
    """Whether the cache is in use (``LSFA_MERGED_CACHE`` not set to off)."""
    return os.environ.get(CACHE_ENV, "").strip().lower() not in OFF_VALUES


def cache_root() -> Path:
    """The folder holding every entry (``LSFA_MERGED_CACHE`` when it names one, else ``LSFA_HOME/merged``)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else settings.home_dir() / "merged"


def entry_folder(tagger_folder: Path) -> Path:
    """Where the merged weights of ``tagger_folder`` are kept: one entry per (resolved) folder path."""
    key = hashlib.sha256(str(Path(tagger_folder).resolve()).encode()).hexdigest()[:20]
    return cache_root() / key


def _stat(path: Path) -> list[int] | None:
    """Size and modification time of ``path`` (None when absent): what changes whenever its bytes are rewritten."""
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def fingerprint(tagger_folder: Path, meta: Any, base_folder: Path | str) -> dict[str, Any]:
    """Everything the merged weights depend on, cheaply: file sizes and times, not hashes of 0.5 GB."""
    folder, base = Path(tagger_folder), Path(base_folder)
    return {
        "tagger": str(folder.resolve()),
        "adapter": {name: _stat(folder / name) for name in ADAPTER_FILES},
        "base": str(base.resolve()) if base.is_dir() else str(base_folder),
        "base_files": {name: _stat(base / name) for name in BASE_FILES},
        "meta": {key: getattr(meta, key) for key in ("base_model", "model_type", "labels", "attention", "layers")},
    }


def lookup(tagger_folder: Path, meta: Any, base_folder: Path | str) -> Path | None:
    """The cached merged weights of ``tagger_folder`` when they match its current files, else None."""
    if not enabled():
        return None
    entry = entry_folder(tagger_folder)
    try:
        recorded = json.loads((entry / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if recorded != fingerprint(tagger_folder, meta, base_folder):
        return None
    with contextlib.suppress(OSError):  # bookkeeping must never make a load fail
        os.utime(entry / SOURCE_FILE)  # most recently used: the last to be pruned
    return entry


def store(tagger_folder: Path, meta: Any, base_folder: Path | str, model: Any) -> Path | None:
    """Save ``model`` (the merged tagger, on the CPU) as the cache entry of ``tagger_folder``; None if it cannot.

    Written to a temporary sibling and renamed into place, the fingerprint last, so a reader never sees half an
    entry; an entry a concurrent process wrote first is simply replaced."""
    if not enabled():
        return None
    entry = entry_folder(tagger_folder)
    staging: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        model.save_pretrained(staging)
        source = fingerprint(tagger_folder, meta, base_folder)
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        old = entry.with_name(f".{entry.name}.old-{os.getpid()}")
        if entry.exists():
            os.replace(entry, old)
        os.replace(staging, entry)
        shutil.rmtree(old, ignore_errors=True)
    except OSError:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        return None
    with contextlib.suppress(OSError):
        prune(entry.parent)
    return entry


def prune(root: Path, keep: int = MAX_ENTRIES) -> None:
    """Remove the entries of tagger folders that no longer exist, then all but the ``keep`` most recently used."""
    entries: list[tuple[int, Path]] = []
    for entry in root.iterdir() if root.is_dir() else ():
        source = entry / SOURCE_FILE
        try:
            tagger = json.loads(source.read_text())["tagger"]
            used = source.stat().st_mtime_ns
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a staging folder or someone else's file: not an entry
        if Path(tagger).is_dir():
            entries.append((used, entry))
        else:
            shutil.rmtree(entry, ignore_errors=True)
    for _, entry in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(entry, ignore_errors=True)

"""A tagger folder's ``lsfa.json``: its schema (:class:`TaggerMeta`), reading and rewriting it.

Apart from :mod:`lsfa.models.saving` (which writes and loads the weights, and imports torch and transformers)
because reports, run records and ``lsfa predict``'s checks read a tagger's metadata without loading a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lsfa.data.encode import Context
from lsfa.errors import LsfaError
from lsfa.version import __version__

META_FILE = "lsfa.json"


class TaggerMeta(BaseModel):
    """Everything needed to rebuild a tagger's behaviour besides its weights."""

    lsfa_version: str = __version__
    base_model: str
    model_type: str
    labels: list[str]
    attention: str = "full"
    weights: Literal["lora", "full", "merged"] = "lora"
    label_all_subtokens: bool = False
    max_length: int = 512
    context: Context = "sentence"
    task: Literal["spans", "tokens"] = "spans"
    """``spans``: BIO tags read as entities; ``tokens``: a flat tag per word (part of speech)."""
    layers: int | None = Field(None, ge=1)
    """How many of the base model's transformer layers the tagger keeps (None: all)."""
    quantize: Literal["none", "4bit", "8bit"] = "none"
    """How the base was quantised in training (QLoRA: ``4bit``); loading quantises it the same way again."""
    temperature: float = Field(1.0, gt=0)
    """Softmax temperature fitted on the dev split at training end (1.0: uncalibrated, as in older folders)."""
    extra: dict = Field(default_factory=dict)


def update_meta(folder: str | Path, **changes) -> TaggerMeta:
    """Rewrite a tagger folder's ``lsfa.json`` with ``changes`` (e.g. a fitted temperature), atomically."""
    meta = read_meta(folder).model_copy(update=changes)
    TaggerMeta.model_validate(meta.model_dump())  # the changes must be valid fields and values
    path = Path(folder) / META_FILE
    staging = path.with_name(f".{META_FILE}.tmp")
    staging.write_text(meta.model_dump_json(indent=2) + "\n")
    os.replace(staging, path)
    return meta


def read_meta(folder: str | Path) -> TaggerMeta:
    """The ``lsfa.json`` of a tagger folder, with a clear error when the folder is not a tagger."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise LsfaError(f"{folder}: not an lsfa tagger folder (no {META_FILE}); train one with `lsfa train`")
    try:
        return TaggerMeta.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError) as error:
        raise LsfaError(f"{path}: unreadable tagger metadata: {error}") from error

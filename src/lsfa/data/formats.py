"""The data formats lsfa reads and writes, in one table: each :class:`DataFormat` has a name, the file suffixes
that mean it, a reader (a file or folder to IOB2 :class:`~lsfa.data.conll.ConllFile`) and a writer.

Why one table: corpora (split files), ``lsfa data convert``, ``lsfa predict`` (which input is CoNLL) and
``lsfa evaluate`` (gold and predicted files) all choose a format by suffix; with the table they cannot disagree,
and a new format is one module plus one :func:`register` call below. What is not in it on purpose: the inputs
``lsfa predict`` tags (plain text lines, JSONL records to tag) are documents, not annotations
(:mod:`lsfa.inference.files`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsfa.data import schemes
from lsfa.data.brat import read_brat, write_brat
from lsfa.data.conll import ConllFile, read_conll, write_conll
from lsfa.data.docbin import read_docbin, write_docbin
from lsfa.data.jsonl import SpanOptions, read_span_jsonl, write_span_jsonl
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError
from lsfa.registry import Registry

Reader = Callable[[Path, SpanOptions, int | None, str | None], ConllFile]
"""``(path, span options, tag column, task) -> ConllFile``; the last two matter to column formats only."""
Writer = Callable[[Sequence[Sentence], Path], Any]


@dataclass(frozen=True)
class DataFormat:
    """One format: its ``name``, the ``suffixes`` that mean it, how to read and write it.

    ``keeps_columns``: extra CoNLL columns and document markers survive a write (CoNLL only). ``folders``: a
    folder of such files is one split (BRAT: one document per ``.ann``). ``companion``: the suffix of a second
    file that belongs to each one (BRAT's ``.txt``), never a split of its own.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    write: Writer
    description: str
    keeps_columns: bool = False
    folders: bool = False
    companion: str | None = None


FORMATS: Registry[DataFormat] = Registry("data format")
"""Every registered format by name, in registration order (CoNLL first: the fallback for unknown suffixes)."""


def register(data_format: DataFormat) -> DataFormat:
    """Add a format; a name or a suffix another format already has is refused (the table must stay one-to-one)."""
    taken = {suffix: other.name for other in FORMATS.values() for suffix in other.suffixes}
    clash = [suffix for suffix in data_format.suffixes if suffix in taken]
    if clash:
        raise LsfaError(f"format {data_format.name!r}: suffixes {clash} already registered")
    return FORMATS.add(data_format.name, data_format)


def format_named(name: str) -> DataFormat:
    """The format called ``name``, or an error listing the others."""
    return FORMATS.named(name)


def format_of(path: str | Path) -> DataFormat | None:
    """The format a path's suffix names (a folder: the first folder format with files in it; a companion file
    such as BRAT's ``.txt`` beside its ``.ann``: that format), or None."""
    path = Path(path)
    if path.is_dir():
        return next((f for f in FORMATS.values() if f.folders and any(path.glob(f"*{f.suffixes[0]}"))), None)
    suffix = path.suffix.lower()
    for data_format in FORMATS.values():
        if data_format.companion == suffix and any(path.with_suffix(s).is_file() for s in data_format.suffixes):
            return data_format
    return format_with_suffix(suffix)


def format_with_suffix(suffix: str) -> DataFormat | None:
    """The format a suffix (``".conll"``) names, without looking at any file (for stdin and paths not yet read)."""
    return next((f for f in FORMATS.values() if suffix.lower() in f.suffixes), None)


def split_suffixes() -> tuple[str, ...]:
    """Every suffix a split file may have, for messages and folder scans."""
    return tuple(suffix for data_format in FORMATS.values() for suffix in data_format.suffixes)


def read_file(
    path: str | Path, span_options: SpanOptions | None = None, tag_column: int | None = None, task: str | None = None
) -> ConllFile:
    """One split file (or folder) in whichever format its suffix says, CoNLL for anything else; span tags IOB2."""
    data_format = format_of(path) or FORMATS["conll"]
    return data_format.read(Path(path), span_options or SpanOptions(), tag_column, task)


def convert_file(
    source: str | Path,
    target: str | Path,
    scheme: str = schemes.IOB2,
    source_scheme: str | None = None,
    strict: bool = False,
    span_options: SpanOptions | None = None,
) -> ConllFile:
    """Read ``source`` and write ``target`` in the formats their suffixes say; returns what was read.

    CoNLL to CoNLL is :func:`lsfa.data.conll.read_conll` (``source_scheme`` or detected, ``strict`` transitions)
    rewritten in ``scheme``, extra columns and documents kept. Other pairs go through words and entities
    (``span_options`` for span files), written in ``scheme`` where the target holds tags."""
    target_format = format_of(target) or FORMATS["conll"]
    if (format_of(source) or FORMATS["conll"]).keeps_columns and target_format.keeps_columns:
        conll = read_conll(source, scheme=source_scheme, strict=strict, convert_to=scheme)
        write_conll(conll.sentences, target, sep=conll.sep, docstart=conll.has_docstart)
        return conll
    loaded = read_file(source, span_options)
    sentences = loaded.sentences
    if target_format.keeps_columns:
        canonical = schemes.normalise_scheme(scheme)
        sentences = [replace(s, tags=schemes.convert(s.tags, schemes.IOB2, canonical)) for s in sentences]
    target_format.write(sentences, Path(target))
    return loaded


def _read_conll(path: Path, _: SpanOptions, tag_column: int | None, task: str | None) -> ConllFile:
    column = -1 if tag_column is None else tag_column
    task = task or "auto"
    return read_conll(path, tag_column=column, convert_to=schemes.IOB2 if task != "tokens" else None, task=task)


register(DataFormat("conll", (".conll", ".conllu", ".txt", ".tsv", ".iob", ".bio"), _read_conll, write_conll,
                    "one word a line with its columns, the tag last", keeps_columns=True))  # fmt: skip
register(DataFormat("jsonl", (".jsonl", ".ndjson", ".json"), lambda p, o, *_: read_span_jsonl(p, o),
                    write_span_jsonl, "span-annotated JSON lines (doccano, Label Studio, Prodigy)"))  # fmt: skip
register(DataFormat("docbin", (".spacy",), lambda p, *_: read_docbin(p), write_docbin, "spaCy DocBin"))
register(DataFormat("brat", (".ann",), lambda p, o, *_: read_brat(p, o), write_brat, "BRAT standoff (.txt + .ann)",
                    folders=True, companion=".txt"))  # fmt: skip

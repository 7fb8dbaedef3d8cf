"""Prediction over files: plain text, JSONL and CoNLL in; JSONL or CoNLL out, by default as the input (CoNLL for
CoNLL, JSONL otherwise), either for any input with ``--output-format`` (what ``lsfa predict`` runs).

Inputs are read and checked completely before the model runs, so a bad line 90,000 fails in a second,
not after an hour of prediction; errors name the file and line.

* **text**: one document per line; every line (blank ones too) gives one output object
  ``{"id": <line number>, "text", "entities"}``, so output line *n* belongs to input line *n*.
* **jsonl**: one object per non-blank line with ``"text"`` (a string) or ``"words"`` (pre-split words,
  a list of strings) and an optional ``"id"`` (default: the line number). The output repeats the input
  object and adds ``"entities"``; for ``"words"`` it also adds ``"tags"`` (one per word) and ``"text"``
  (the words joined by single spaces, which the entity offsets point into).
* **conll**: one word per line, blank lines between sentences, ``-DOCSTART-`` lines kept. A file with
  a single column is words only; otherwise the last column is taken to be tags and replaced by the
  predicted ones, other columns kept (so the output can be scored with ``lsfa evaluate --gold --pred``).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lsfa.data.conll import DOCSTART, SentenceStream, write_conll
from lsfa.data.formats import format_with_suffix
from lsfa.data.text import split_words
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError
from lsfa.inference.tagger import Tagger, entities_from_spans, words_as_text

FORMATS = ("auto", "text", "jsonl", "conll")
TEXT_SUFFIXES = (".txt",)
"""Suffixes read as plain text here although :mod:`lsfa.data.formats` reads them as CoNLL: a ``.txt`` to tag is
documents, one a line; a ``.txt`` split of a corpus is CoNLL columns."""
STDIN = "-"


@dataclass
class Record:
    """One document to tag: raw ``text`` or pre-split ``words``, the input object, its line number."""

    line: int
    text: str | None = None
    words: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)


def detect_format(path: str | Path, requested: str = "auto") -> str:
    """The input format: as requested, else from the suffix as :mod:`lsfa.data.formats` names it (``.jsonl`` ->
    jsonl, ``.conll``/``.iob``/``.tsv`` -> conll), anything else -> text; CoNLL files named ``.txt`` need
    ``--format conll``."""
    if requested not in FORMATS:
        raise LsfaError(f"unknown input format {requested!r}; use one of {', '.join(FORMATS)}")
    if requested != "auto":
        return requested
    suffix = Path(str(path)).suffix.lower()
    found = format_with_suffix(suffix)
    if found is None or found.name not in FORMATS or suffix in TEXT_SUFFIXES:
        return "text"
    return found.name


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 file (or stdin for ``-``), without line ends; a clear error for binary input."""
    if str(path) == STDIN:
        data = sys.stdin.buffer.read()
    else:
        path = Path(path)
        if not path.is_file():
            raise LsfaError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError("not valid UTF-8 text", "<stdin>" if str(path) == STDIN else path, line) from None
    # split("\n") rather than splitlines(): \x1c, \x85 or \u2028 inside a document must not split it.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text_records(path: str | Path) -> list[Record]:
    """One record per line of a plain-text file, blank lines included."""
    return [Record(line=number, text=line) for number, line in enumerate(read_lines(path), start=1)]


def read_jsonl_records(path: str | Path) -> list[Record]:
    """One record per non-blank line of a JSONL file, each checked for ``text`` or ``words``."""
    records = []
    shown = "<stdin>" if str(path) == STDIN else path
    for number, line in enumerate(read_lines(path), start=1):
        if line.strip():
            records.append(parse_json_record(line, shown, number))
    return records


def iter_lines(path: str | Path, shown: str | Path | None = None) -> Iterator[str]:
    """The lines of a UTF-8 file one at a time, without line ends, as :func:`read_lines` gives them all at once:
    what ``lsfa predict`` streams, so an input larger than memory can be checked and tagged. ``shown`` names the
    file in errors (``<stdin>`` for a copy of stdin)."""
    path = Path(path)
    shown = path if shown is None else shown
    if not path.is_file():
        raise LsfaError(f"{shown}: no such file" if not path.exists() else f"{shown}: not a file")
    with path.open("rb") as stream:
        # Binary lines split at b"\n" only: \x1c, \x85 or \u2028 inside a document must not split it.
        for number, raw in enumerate(stream, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataFormatError("not valid UTF-8 text", shown, number) from None
            line = line[:-1] if line.endswith("\n") else line
            yield line[:-1] if line.endswith("\r") else line


def iter_text_records(path: str | Path, shown: str | Path | None = None) -> Iterator[Record]:
    """:func:`read_text_records`, one record at a time."""
    for number, line in enumerate(iter_lines(path, shown), start=1):
        yield Record(line=number, text=line)


def iter_jsonl_records(path: str | Path, shown: str | Path | None = None) -> Iterator[Record]:
    """:func:`read_jsonl_records`, one record at a time."""
    shown = path if shown is None else shown
    for number, line in enumerate(iter_lines(path, shown), start=1):
        if line.strip():
            yield parse_json_record(line, shown, number)


def parse_json_record(line: str, path: str | Path, number: int) -> Record:
    """One JSONL input line as a record (``text`` or ``words``), or an error naming the file and line; shared by
    ``lsfa predict`` and the Ray Data path so both read a record the same way."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"invalid JSON: {error.msg} (column {error.colno})", path, number) from None
    if not isinstance(value, dict):
        raise DataFormatError(f'expected a JSON object with "text" or "words", got {_json_type(value)}', path, number)
    has_text, has_words = "text" in value, "words" in value
    if has_text == has_words:
        problem = "both" if has_text else "neither"
        raise DataFormatError(f'expected exactly one of "text" or "words", found {problem}', path, number)
    if has_text:
        if not isinstance(value["text"], str):
            raise DataFormatError(f'"text" must be a string, got {_json_type(value["text"])}', path, number)
        return Record(line=number, text=value["text"], source=value)
    words = value["words"]
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise DataFormatError('"words" must be a list of strings', path, number)
    return Record(line=number, words=words, source=value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def predict_records(tagger: Tagger, records: list[Record], batch_size: int = 32, progress: bool = False):
    """Output objects for records, in order, predicted ``batch_size`` documents at a time."""
    for tagged in _tagged_records(tagger, records, batch_size, progress):
        yield _record_object(*tagged)


def records_as_sentences(
    tagger: Tagger, records: list[Record], batch_size: int = 32, progress: bool = False
) -> Iterator[Sentence]:
    """Each non-empty record as a CoNLL sentence of its words and their tags (``--output-format conll``); the
    tags honour the threshold as the entities of JSONL output do."""
    _check_tags_can_honour(tagger)
    for record, _, words, tags, _ in _tagged_records(tagger, records, batch_size, progress):
        if words:
            yield Sentence([word.text for word in words], tags, line=record.line)


def _tagged_records(tagger: Tagger, records: list[Record], batch_size: int, progress: bool):
    """``(record, text, words, tags, entity spans)`` for each record, ``batch_size`` documents per call."""
    bar = _progress_bar(len(records), progress)
    try:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            yield from _predict_batch(tagger, batch)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: shown only when stderr is a terminal, so logs and pipes stay clean.
    return tqdm(total=total, desc="predict", unit="doc", file=sys.stderr, disable=None)


def _predict_batch(tagger: Tagger, batch: list[Record]):
    placed = []
    for record in batch:
        if record.words is not None:
            placed.append(words_as_text(record.words))
        else:
            assert record.text is not None
            placed.append((record.text, split_words(record.text)))
    predicted = tagger.predict_words([[word.text for word in words] for _, words in placed])
    spans = tagger.entity_spans(predicted)
    kept_tags = tagger.kept_tags(predicted, spans)
    for record, (text, words), tags, found in zip(batch, placed, kept_tags, spans, strict=True):
        yield record, text, words, tags, found


def _record_object(record: Record, text: str, words, tags: list[str], found) -> dict[str, Any]:
    """The output object of one record: the input object, ``text``, ``tags`` for pre-split words, ``entities``."""
    output: dict[str, Any] = {"id": record.source.get("id", record.line)}
    output.update(record.source)
    output["text"] = text
    if record.words is not None:
        output["tags"] = tags
    output["entities"] = [entity.to_dict() for entity in entities_from_spans(text, words, found)]
    return output


# Line breaks for str.splitlines() and JavaScript that json.dumps(ensure_ascii=False) leaves raw; escaped so
# every output object stays on one line for every reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(value: Any) -> str:
    """One JSON object as one line (UTF-8 text kept readable, only line-breaking characters escaped)."""
    return json.dumps(value, ensure_ascii=False).translate(_LINE_BREAKS)


def write_jsonl(objects, stream: TextIO) -> int:
    """Write objects one per line; return how many."""
    count = 0
    for value in objects:
        stream.write(json_line(value) + "\n")
        count += 1
    return count


@contextlib.contextmanager
def output_stream(path: str | Path | None) -> Iterator[TextIO]:
    """stdout, or a file written through a temporary sibling and renamed into place when complete,
    so an interrupted run never leaves a truncated output that looks finished."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        stream = open(partial, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 (closed below, before the rename)
    except OSError as error:
        raise LsfaError(f"{target}: cannot write the output: {error.strerror}") from None
    try:
        with stream:
            yield stream
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class ConllStream:
    """The sentences of a CoNLL file to tag, read one at a time: a file with a single column is words only (tags
    ``O``, replaced by predictions), otherwise the last column holds tags (checked, then replaced) and the other
    columns are kept. ``sep`` and ``has_docstart`` (the shape to write the output in) are known once the file has
    been read through; errors name the file and line."""

    def __init__(self, path: str | Path, shown: str | Path | None = None) -> None:
        self.path, self.shown = Path(path), path if shown is None else shown
        self.sep, self.has_docstart = " ", False

    def __iter__(self) -> Iterator[Sentence]:
        if _first_word_line_columns(iter_lines(self.path, self.shown)) == 1:
            yield from self._words_only()
            return
        stream = SentenceStream(iter_lines(self.path, self.shown), self.shown)
        try:
            yield from stream
        except DataFormatError as error:
            if "tag" not in error.reason:
                raise
            raise DataFormatError(
                f"{error.reason} (lsfa predict replaces the last column, which must hold tags; "
                "give words only, one per line, if the file has no tags)",
                error.path,
                error.line,
            ) from None
        self.sep, self.has_docstart = stream.layout.sep if stream.layout else " ", stream.has_docstart

    def _words_only(self) -> Iterator[Sentence]:
        """Sentences of a one-word-per-line file (tags ``O``, replaced by predictions later)."""
        words: list[str] = []
        first, doc_id, doc_has_sentences = 0, 0, False
        for number, line in enumerate(itertools.chain(iter_lines(self.path, self.shown), [""]), start=1):
            word = line.strip()
            if word and word != DOCSTART and len(line.split()) != 1:
                raise DataFormatError(
                    f"expected one word per line like the first one, found {line.strip()!r}", self.shown, number
                )
            if word and word != DOCSTART:
                first = first if words else number
                words.append(word)
                continue
            if words:
                yield Sentence(words, ["O"] * len(words), doc_id=doc_id, line=first)
                words, doc_has_sentences = [], True
            if word == DOCSTART:
                self.has_docstart = True
                doc_id, doc_has_sentences = doc_id + doc_has_sentences, False


def _first_word_line_columns(lines: Iterable[str]) -> int:
    for line in lines:
        fields = line.split()
        if fields and fields[0] != DOCSTART:
            return len(line.split("\t")) if "\t" in line else len(fields)
    return 0


def conll_text(sentence: Sentence, sep: str = " ") -> str:
    """One sentence as CoNLL lines and the blank line after it (no ``-DOCSTART-``: the caller knows where
    documents start); words that cannot be written with ``sep`` are an error naming their line."""
    buffer = io.StringIO()
    write_conll([sentence], buffer, sep=sep)
    return buffer.getvalue()


def rendered_outputs(tagger: Tagger, items: list[Record] | list[Sentence], output_format: str, sep: str = " "):
    """The output text of each item (records of text/JSONL input or sentences of CoNLL input), tagged in one call:
    a JSON line, or CoNLL lines with the blank line after them (``None`` for a record without words, which CoNLL
    output skips, as :func:`records_as_sentences` does). CoNLL sentences are tagged with their document ids and
    written with their other columns; the tags honour the threshold as the entities of JSONL output do."""
    if output_format == "conll":
        _check_tags_can_honour(tagger)
    if items and isinstance(items[0], Sentence):
        sentences: list[Sentence] = items  # type: ignore[assignment]
        kept, spans = _tag_sentences(tagger, sentences, progress=False)
        if output_format == "conll":
            return [
                conll_text(Sentence(s.tokens, tags, s.extra, s.doc_id, s.line), sep)
                for s, tags in zip(sentences, kept, strict=True)
            ]
        return [
            json_line(_sentence_object(s, tags, found)) + "\n"
            for s, tags, found in zip(sentences, kept, spans, strict=True)
        ]
    outputs: list[str | None] = []
    for record, text, words, tags, found in _predict_batch(tagger, items):  # type: ignore[arg-type]
        if output_format == "jsonl":
            outputs.append(json_line(_record_object(record, text, words, tags, found)) + "\n")
        else:
            outputs.append(
                conll_text(Sentence([word.text for word in words], tags, line=record.line)) if words else None
            )
    return outputs


def _sentence_object(sentence: Sentence, tags: list[str], found) -> dict[str, Any]:
    """A tagged CoNLL sentence as a JSONL output object (``--output-format jsonl``): ``id`` (its first line),
    ``words``, ``text`` (the words joined by single spaces), ``tags`` and ``entities`` in that text."""
    text, words = words_as_text(sentence.tokens)
    record = Record(line=sentence.line, words=list(sentence.tokens), source={"words": list(sentence.tokens)})
    return _record_object(record, text, words, tags, found)


def _tag_sentences(tagger: Tagger, sentences: list[Sentence], progress: bool):
    """Tags that honour the threshold, and entity spans, of sentences predicted with their document ids."""
    previous, tagger.progress = tagger.progress, progress
    try:
        predicted = tagger.predict_words([s.tokens for s in sentences], documents=[s.doc_id for s in sentences])
    finally:
        tagger.progress = previous
    spans = tagger.entity_spans(predicted)
    return tagger.kept_tags(predicted, spans), spans


def _check_tags_can_honour(tagger: Tagger) -> None:
    """Refuse a threshold for tag-per-word output of a ``tokens`` tagger: every word keeps a tag there."""
    if tagger.threshold is not None and tagger.task == "tokens":
        raise LsfaError(
            "--threshold drops entities, but this tagger writes a tag on every word (task tokens): "
            "leave --threshold out for CoNLL output, or ask for JSONL (--output-format jsonl)"
        )

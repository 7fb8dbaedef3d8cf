"""Span-annotated JSON lines: what annotation tools export, read as word-level IOB2 sentences and written back.

One record per line (or a ``.json`` file holding a list of records, as Label Studio exports). Each record has
the text and its entities as character offsets, in any of the common shapes:

- ``{"text": ..., "entities" | "spans" | "label": [[start, end, "PER"], ...]}`` (doccano's ``label``); two of
  these keys with different spans, or spans under any other key (a misspelt ``"entites"``), are an error;
- ``... [{"start": 0, "end": 5, "label": "PER"}, ...]`` (spaCy / Prodigy ``spans``);
- Label Studio: ``{"data": {"text": ...}, "annotations": [{"result": [{"value": {"start", "end",
  "labels": ["PER"]}}]}]}`` (the first annotation; ``predictions`` are ignored).

The text is split into words with :func:`lsfa.data.text.split_words`, the splitter ``lsfa predict`` uses, unless
the record carries its own ``tokens`` (lsfa writes them, so CoNLL -> JSONL -> CoNLL keeps every word). A span
that does not fall on word boundaries is an error naming the file, line and span, unless ``misaligned`` is
``snap`` (widen it to the words it touches) or ``drop``; overlapping or nested spans are an error unless
``overlaps`` is ``longest`` (keep the longest, drop the others). What was changed is counted in the warnings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lsfa.data import schemes
from lsfa.data.conll import ConllFile
from lsfa.data.text import Word, split_words, words_as_text
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError

Misaligned = Literal["error", "snap", "drop"]
Overlaps = Literal["error", "longest"]
SPAN_KEYS = ("entities", "spans", "label", "labels")
"""Record keys that may hold the entity list (the first present one is used)."""


@dataclass
class SpanOptions:
    """What to do with spans that do not fit the words, or that overlap."""

    misaligned: Misaligned = "error"
    overlaps: Overlaps = "error"
    changed: dict[str, int] = field(default_factory=lambda: {"snapped": 0, "dropped": 0, "overlapping_dropped": 0})


def read_span_jsonl(path: str | Path, options: SpanOptions | None = None) -> ConllFile:
    """Read a span-annotated ``.jsonl`` (or ``.json`` list) file into IOB2 sentences, one per record."""
    options = options or SpanOptions()
    path = Path(path)
    records, listed = _records(path)
    sentences = [
        _located_sentence(record, path, line, index, options, listed) for index, (line, record) in enumerate(records)
    ]
    warnings = [f"{path}: {count} spans {what.replace('_', ' ')}" for what, count in options.changed.items() if count]
    return ConllFile(sentences, str(path), n_documents=len(sentences), has_docstart=False, warnings=warnings)


def write_span_jsonl(sentences: Iterable[Sentence], path: str | Path) -> int:
    """Write sentences as records ``{"text", "tokens", "entities": [[start, end, label]]}``; words are joined by
    single spaces and offsets point into that text. Returns the number of records."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for sentence in sentences:
            text, placed = words_as_text(list(sentence.tokens))
            entities = [[placed[s.start].start, placed[s.end - 1].end, s.type] for s in schemes.to_spans(sentence.tags)]
            out.write(
                json.dumps({"text": text, "tokens": list(sentence.tokens), "entities": entities}, ensure_ascii=False)
            )
            out.write("\n")
            count += 1
    return count


def _located_sentence(record: dict, path: Path, line: int, index: int, options: SpanOptions, listed: bool) -> Sentence:
    """The record's sentence; a problem in a JSON list names its record number (its "line" is that number)."""
    try:
        return _record_sentence(record, path, line, index, options)
    except DataFormatError as error:
        if not listed:
            raise
        raise DataFormatError(error.reason, path, record=line) from None


def _records(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """``(line number, record)`` pairs of a JSONL file, or of a JSON file holding a list of records (then
    numbered by record, and ``True`` second)."""
    if not path.is_file():
        raise DataFormatError("no such file", path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"not valid JSON: {error.msg}", path, error.lineno) from None
        if not isinstance(data, list):
            raise DataFormatError("a .json file must hold a list of records", path)
        return [(k + 1, _object(record, path, record=k + 1)) for k, record in enumerate(data)], True
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((number, _object(json.loads(line), path, number)))
            except json.JSONDecodeError as error:
                raise DataFormatError(f"not valid JSON: {error.msg}", path, number) from None
    return records, False


def _object(value: Any, path: Path, line: int | None = None, record: int | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(f"a record must be a JSON object, not {type(value).__name__}", path, line, record)
    return value


def _record_sentence(record: dict, path: Path, line: int, index: int, options: SpanOptions) -> Sentence:
    text, raw_spans = _text_and_spans(record, path, line)
    words = _words(record, text, path, line)
    spans = [word_span(span, words, text, path, line, options) for span in raw_spans]
    spans = resolve_overlaps([span for span in spans if span is not None], words, text, path, line, options)
    tags = schemes.from_spans(spans, len(words), schemes.IOB2)
    return Sentence([word.text for word in words], tags, doc_id=index, line=line)


def _text_and_spans(record: dict, path: Path, line: int) -> tuple[str, list[tuple[int, int, str]]]:
    if "annotations" in record or "data" in record:  # Label Studio
        text = (record.get("data") or {}).get("text")
        annotations = record.get("annotations") or [{}]
        results = (annotations[0] or {}).get("result") or []
        raw = [(r.get("value") or {}) for r in results if isinstance(r, dict)]
        spans = [(v.get("start"), v.get("end"), (v.get("labels") or [None])[0]) for v in raw if "start" in v]
    else:
        text = record.get("text")
        key = _span_key(record, path, line)
        spans = [_span_of(item, path, line) for item in (record.get(key) or [] if key else [])]
    if not isinstance(text, str):
        raise DataFormatError(
            'a record needs its text as a string ("text", or Label Studio\'s "data.text")', path, line
        )
    for start, end, label in spans:
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) and label):
            raise DataFormatError(f"span {[start, end, label]} is not [start, end, label] inside the text", path, line)
    return text, spans


def _span_key(record: dict, path: Path, line: int) -> str | None:
    """The one key of ``record`` holding its span list. Two span keys with different lists (``entities`` and
    doccano's ``label``), or a list of spans under a key lsfa does not read (a misspelt ``"entites"``), would
    silently lose annotations, so both are errors at file:line."""
    unread = [k for k, value in record.items() if k not in SPAN_KEYS and k != "tokens" and _looks_like_spans(value)]
    if unread:
        raise DataFormatError(
            f'key "{unread[0]}" holds spans, but lsfa reads spans only from {", ".join(SPAN_KEYS)}: rename it '
            "(or remove it)",
            path,
            line,
        )
    present = [k for k in SPAN_KEYS if record.get(k) == [] or _looks_like_spans(record.get(k))]
    if any(record[k] != record[present[0]] for k in present[1:]):
        raise DataFormatError(
            f'both "{present[0]}" and "{present[1]}" hold spans, and they differ: keep the spans under one key',
            path,
            line,
        )
    return present[0] if present else next((k for k in SPAN_KEYS if k in record), None)


def _looks_like_spans(value: Any) -> bool:
    """A non-empty list whose items are all ``[start, end, label]`` or ``{start, end, ...}``."""

    def span_like(item: Any) -> bool:
        if isinstance(item, dict):
            return "start" in item and "end" in item
        return isinstance(item, (list, tuple)) and len(item) == 3 and all(isinstance(x, int) for x in item[:2])

    return isinstance(value, list) and bool(value) and all(span_like(item) for item in value)


def _span_of(item: Any, path: Path, line: int) -> tuple[Any, Any, Any]:
    if isinstance(item, dict):
        return item.get("start"), item.get("end"), item.get("label")
    if isinstance(item, (list, tuple)) and len(item) == 3:
        return item[0], item[1], item[2]
    raise DataFormatError(f"span {item!r} is neither [start, end, label] nor {{start, end, label}}", path, line)


def _words(record: dict, text: str, path: Path, line: int) -> list[Word]:
    tokens = record.get("tokens")
    if tokens is None:
        return split_words(text)
    if not all(isinstance(token, str) for token in tokens):
        raise DataFormatError('"tokens" must be a list of strings', path, line)
    placed, position = [], 0
    for token in tokens:
        start = text.find(token, position) if token else position
        if start < 0:
            raise DataFormatError(f"token {token!r} is not in the text after offset {position}", path, line)
        placed.append(Word(token, start, start + len(token)))
        position = start + len(token)
    return placed


def word_span(
    span: tuple[int, int, str], words: Sequence[Word], text: str, path: Path, line: int, options: SpanOptions
) -> tuple[int, int, str] | None:
    """The words a character span ``(start, end, label)`` covers, as ``(first word, end word, label)``; a span off
    the word boundaries is an error at ``path:line`` unless ``options.misaligned`` snaps or drops it (counted).
    Shared by every reader of character-offset annotations (JSONL, BRAT)."""
    start, end, label = span
    first = next((k for k, w in enumerate(words) if w.start == start), None)
    last = next((k for k, w in enumerate(words) if w.end == end), None)
    if first is not None and last is not None and first <= last:
        return first, last + 1, str(label)
    if options.misaligned == "drop":
        options.changed["dropped"] += 1
        return None
    touched = [k for k, w in enumerate(words) if w.start < end and w.end > start]
    if options.misaligned == "snap" and touched:
        options.changed["snapped"] += 1
        return touched[0], touched[-1] + 1, str(label)
    raise DataFormatError(
        f"span [{start}, {end}, {label!r}] ({text[start:end]!r}) does not fall on word boundaries; "
        "fix it, or pass --misaligned snap|drop",
        path,
        line,
    )


def resolve_overlaps(
    spans: list[tuple[int, int, str]],
    words: Sequence[Word],
    text: str,
    path: Path,
    line: int,
    options: SpanOptions,
) -> list[tuple[int, int, str]]:
    """Word spans without overlaps: an error at ``path:line`` unless ``options.overlaps`` keeps the longest
    (counted), because IOB tags cannot hold nested entities. The error gives the clashing spans as the character
    offsets the user wrote (from ``words``), not lsfa's word indices."""
    kept: list[tuple[int, int, str]] = []
    for span in sorted(set(spans), key=lambda s: (-(s[1] - s[0]), s[0])):
        clash = next((k for k in kept if k[0] < span[1] and span[0] < k[1]), None)
        if clash is None:
            kept.append(span)
        elif options.overlaps == "longest":
            options.changed["overlapping_dropped"] += 1
        else:
            raise DataFormatError(
                f"spans {_characters(clash, words, text)} and {_characters(span, words, text)} overlap; IOB tags "
                "cannot hold nested entities: fix them, or pass --overlaps longest",
                path,
                line,
            )
    return sorted(kept)


def _characters(span: tuple[int, int, str], words: Sequence[Word], text: str) -> str:
    """A word span as the user wrote it: ``[start, end, 'LABEL'] ('covered text')`` in character offsets."""
    start, end = words[span[0]].start, words[span[1] - 1].end
    return f"[{start}, {end}, {span[2]!r}] ({text[start:end]!r})"

"""BRAT standoff annotations: a ``.txt`` file and its ``.ann`` file of entities, read as IOB2 sentences and
written back.

Each non-blank line of the ``.txt`` is a sentence (BRAT corpora keep one sentence per line as a rule), split into
words with :func:`lsfa.data.text.split_words`, the splitter ``lsfa predict`` uses. Entities are the ``T`` lines of
the ``.ann`` (``T1<TAB>PER 0 15<TAB>Peter Blackburn``: character offsets into the ``.txt``); relations (``R``),
events (``E``), attributes (``A``/``M``), normalisations (``N``), equivalences (``*``) and notes (``#``) are not
entities and are ignored, with a count in the warnings. A malformed ``T`` line, one whose text differs from the
``.txt`` at its offsets, a discontinuous entity (``0 5;9 14``, which IOB tags cannot hold) and one across a line
break are errors at ``.ann`` file:line; spans off word boundaries or overlapping follow :class:`SpanOptions`, as
for JSONL. A split may be one ``.ann`` file (beside its ``.txt``) or a folder of such pairs, one document each.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lsfa.data import schemes
from lsfa.data.conll import ConllFile
from lsfa.data.jsonl import SpanOptions, resolve_overlaps, word_span
from lsfa.data.text import Word, split_words, words_as_text
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError

IGNORED_KINDS = {"R": "relations", "E": "events", "A": "attributes", "M": "attributes", "N": "normalisations",
                 "*": "equivalences", "#": "notes"}  # fmt: skip
"""What the first character of a non-entity ``.ann`` line stands for."""

_Entity = tuple[int, int, str, int]  # start, end, type, line of the .ann


def read_brat(path: str | Path, options: SpanOptions | None = None) -> ConllFile:
    """The sentences of a ``.ann`` file and its ``.txt`` (or of every pair in a folder), tags in IOB2."""
    options = options or SpanOptions()
    path = Path(path)
    ignored: Counter[str] = Counter()
    sentences: list[Sentence] = []
    pairs = _pairs(path)
    for doc_id, (txt, ann) in enumerate(pairs):
        text = _read_utf8(txt)
        sentences += _sentences(text, _entities(ann, text, ignored), txt, ann, doc_id, options)
    warnings = [f"{path}: {count} {kind} ignored (lsfa reads entities only)" for kind, count in sorted(ignored.items())]
    warnings += [f"{path}: {count} spans {what.replace('_', ' ')}" for what, count in options.changed.items() if count]
    return ConllFile(sentences, str(path), n_documents=len(pairs), has_docstart=False, warnings=warnings)


def write_brat(sentences: Sequence[Sentence], path: str | Path) -> int:
    """Write ``path`` (``.ann``) and the ``.txt`` beside it: one sentence a line, words joined by single spaces, an
    entity ``T`` line per span of the tags. Returns the number of entities. Document boundaries are not kept."""
    ann = Path(path).with_suffix(".ann")
    lines, entities, offset = [], [], 0
    for sentence in sentences:
        if any("\n" in word or "\r" in word for word in sentence.tokens):
            raise LsfaError(f"a word of the sentence at line {sentence.line} holds a line break: not writable as BRAT")
        text, placed = words_as_text(list(sentence.tokens))
        for span in schemes.to_spans(sentence.tags):
            start, end = offset + placed[span.start].start, offset + placed[span.end - 1].end
            entities.append(f"T{len(entities) + 1}\t{span.type} {start} {end}\t{text[start - offset : end - offset]}")
        lines.append(text)
        offset += len(text) + 1
    ann.with_suffix(".txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
    ann.write_text("".join(line + "\n" for line in entities), encoding="utf-8", newline="\n")
    return len(entities)


def _pairs(path: Path) -> list[tuple[Path, Path]]:
    """``(txt, ann)`` of a ``.ann`` (or ``.txt``) file, or of every ``.ann`` in a folder, in name order."""
    anns = sorted(path.glob("*.ann")) if path.is_dir() else [path.with_suffix(".ann")]
    if not anns:
        raise DataFormatError("no .ann files in this folder", path)
    for ann in anns:
        for part in (ann, ann.with_suffix(".txt")):
            if not part.is_file():
                raise DataFormatError(f"no such file (a BRAT document is a .txt and its .ann): {part.name}", part)
    return [(ann.with_suffix(".txt"), ann) for ann in anns]


def _read_utf8(path: Path) -> str:
    """The file's characters as BRAT counts them (no newline translation: offsets count a ``\\r`` too)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFormatError("not valid UTF-8 text", path, path.read_bytes()[: error.start].count(b"\n") + 1) from None


def _entities(ann: Path, text: str, ignored: Counter[str]) -> list[_Entity]:
    """The entities of the ``T`` lines, each checked against the text; other annotations counted in ``ignored``."""
    entities = []
    for number, line in enumerate(_read_utf8(ann).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line[0] == "T":
            entities.append(_entity(line, text, ann, number))
        elif line[0] in IGNORED_KINDS:
            ignored[IGNORED_KINDS[line[0]]] += 1
        else:
            raise DataFormatError(f"not a BRAT annotation line: {line[:60]!r} (T, R, E, A, M, N, * or #)", ann, number)
    return entities


def _entity(line: str, text: str, ann: Path, number: int) -> _Entity:
    """One ``T`` line: ``T<id><TAB><type> <start> <end><TAB><text>``."""
    fields = line.split("\t")
    parts = fields[1].split(" ") if len(fields) == 3 else []
    if len(parts) < 3 or not parts[0]:
        raise DataFormatError(f"expected 'T<id><TAB><type> <start> <end><TAB><text>', found {line[:60]!r}", ann, number)
    if ";" in fields[1]:
        problem = f"discontinuous entity {fields[1]!r}: IOB tags cannot hold it; split or drop it"
        raise DataFormatError(problem, ann, number)
    try:
        start, end = int(parts[1]), int(parts[2])
    except ValueError:
        raise DataFormatError(f"offsets must be whole numbers, found {' '.join(parts[1:])!r}", ann, number) from None
    if len(parts) != 3 or not 0 <= start < end <= len(text):
        raise DataFormatError(f"offsets {start} {end} are not a span of the .txt ({len(text)} characters)", ann, number)
    if text[start:end].replace("\n", " ") != fields[2]:  # BRAT writes a line break inside an entity as a space
        raise DataFormatError(f"entity text {fields[2]!r} but the .txt has {text[start:end]!r} there", ann, number)
    return start, end, parts[0], number


def _sentences(
    text: str, entities: list[_Entity], txt: Path, ann: Path, doc_id: int, options: SpanOptions
) -> list[Sentence]:
    """One sentence per non-blank line of ``text``, each with the entities inside that line."""
    starts, position = [], 0
    lines = text.split("\n")
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    by_line: dict[int, list[_Entity]] = {}
    for entity in entities:
        index = bisect.bisect_right(starts, entity[0]) - 1
        if entity[1] > starts[index] + len(lines[index]):
            problem = "the entity crosses a line break (each line of the .txt is a sentence)"
            raise DataFormatError(problem, ann, entity[3])
        by_line.setdefault(index, []).append(entity)
    sentences = []
    for index, line in enumerate(lines):
        words = [Word(w.text, w.start + starts[index], w.end + starts[index]) for w in split_words(line)]
        if not words:
            continue
        spans = [word_span((s, e, kind), words, text, ann, n, options) for s, e, kind, n in by_line.get(index, [])]
        spans = resolve_overlaps([span for span in spans if span is not None], words, text, txt, index + 1, options)
        tags = schemes.from_spans([schemes.Span(*span) for span in spans], len(words), schemes.IOB2)
        sentences.append(Sentence([w.text for w in words], tags, doc_id=doc_id, line=index + 1))
    return sentences

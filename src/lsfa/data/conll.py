"""Reading and writing CoNLL-style files: one word per line, a blank line between sentences.

The reader is strict about shape (every word line has the number of columns of the first one, every
tag is well formed) because a mis-split line silently shifts labels onto the wrong words. The one
tolerated irregularity is a real one: a line that starts with the separator and lacks exactly one
column is a word whose text was lost (bc5cdr/train.txt has four); the word is kept as ``""`` and a
warning says so, so no tag is dropped and no column shifts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lsfa.data import schemes
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError

DOCSTART = "-DOCSTART-"
_SPACES = re.compile(r"[ \t]+")
_BLANK = " \t\r\f\v"
# Invalid transitions are reported one by one up to this many per file, then as a count, so a
# badly tagged corpus does not bury the other warnings.
_MAX_TRANSITION_WARNINGS = 10


@dataclass
class ConllFile:
    """The contents of one CoNLL file plus what the reader learned about it.

    ``scheme`` is the tag scheme of the file on disk (detected unless given); ``tag_scheme`` is the
    scheme of the tags in ``sentences``, which differs when the reader was asked to convert.
    ``sep`` and ``n_columns`` describe the file so it can be written back in the same shape.
    """

    sentences: list[Sentence]
    path: str
    n_documents: int
    has_docstart: bool
    warnings: list[str] = field(default_factory=list)
    scheme: str = schemes.IOB2
    tag_scheme: str = schemes.IOB2
    sep: str = " "
    n_columns: int = 2

    @property
    def n_tokens(self) -> int:
        """Number of words over all sentences."""
        return sum(len(sentence) for sentence in self.sentences)


@dataclass
class _Layout:
    """Column layout fixed by the first word line of a file."""

    sep: str
    n_columns: int
    tag_index: int


def read_conll(
    path: str | Path,
    tag_column: int = -1,
    scheme: str | None = None,
    strict: bool = False,
    sep: str | None = None,
    convert_to: str | None = None,
    task: str = "spans",
) -> ConllFile:
    """Read a CoNLL file into sentences.

    ``task`` says what the tag column holds: ``spans`` (BIO-style tags of entities or chunks, validated and
    normalised through the tag schemes), ``tokens`` (a flat tag per word, e.g. part of speech: kept as they are)
    or ``auto`` (spans when every tag is ``O`` or PREFIX-TYPE, else tokens).

    ``tag_column`` picks the tag column (negative counts from the end); the first column is always the
    word and the remaining ones go to ``Sentence.extra``. ``sep`` is ``" "`` (runs of spaces/tabs) or
    ``"\\t"``; by default a file is tab-separated when its first word line contains a tab. ``scheme``
    overrides detection. With ``strict`` an invalid transition is an error; otherwise it is a warning
    and the tags are kept as they are (or decoded leniently when ``convert_to`` asks for another scheme).
    Raises :class:`DataFormatError` naming the file and line for anything malformed.
    """
    path = Path(path)
    lines = read_text_lines(path)
    source_scheme = _scheme_or_error(scheme, path) if scheme else None
    target_scheme = _scheme_or_error(convert_to, path) if convert_to else None
    warnings: list[str] = []
    if task not in TASKS:
        raise DataFormatError(f"unknown task {task!r}; use one of {', '.join(TASKS)}", path)
    sentences, has_docstart, layout = _parse_lines(lines, path, tag_column, sep, warnings, check=task == "spans")
    if not sentences:
        raise DataFormatError("no sentences found (only blank or -DOCSTART- lines)", path)
    checked = task == "spans"  # tags validated line by line while parsing
    if task == "auto":
        task = detect_task(sentence.tags for sentence in sentences)
    if task == "tokens":
        return ConllFile(sentences, str(path), len({s.doc_id for s in sentences}), has_docstart, warnings,
                         scheme=TOKENS, tag_scheme=TOKENS, sep=layout.sep, n_columns=layout.n_columns)  # fmt: skip
    if not checked:
        _check_span_tags(sentences, path)
    detected = source_scheme or schemes.detect_scheme(sentence.tags for sentence in sentences)
    _check_transitions(sentences, detected, path, strict, warnings)
    if target_scheme is not None:
        # Always re-encode, even within one scheme: this also repairs invalid transitions leniently.
        _convert_in_place(sentences, detected, target_scheme, path)
    return ConllFile(
        sentences=sentences,
        path=str(path),
        n_documents=len({sentence.doc_id for sentence in sentences}),
        has_docstart=has_docstart,
        warnings=warnings,
        scheme=detected,
        tag_scheme=target_scheme or detected,
        sep=layout.sep,
        n_columns=layout.n_columns,
    )


TOKENS = "TOKENS"
"""The ``scheme`` of a file whose tags are flat per-word labels (part of speech), not spans."""
TASKS = ("spans", "tokens", "auto")


def detect_task(tag_sequences: Iterable[Sequence[str]]) -> str:
    """``tokens`` only when no tag is a prefixed span tag and some tag is neither that nor ``O`` (part-of-speech
    tags and other flat labels); otherwise ``spans``, so that in a file of entities or chunks a malformed tag is
    an error at its line rather than a silent switch of task, and an all-``O`` file stays a span file."""
    flat = False
    for tags in tag_sequences:
        for tag in tags:
            if len(tag) > 2 and tag[1] == "-" and tag[0].isalpha():  # B-PER, I-NP, and typos like X-PER
                return "spans"
            flat = flat or tag != "O"
    return "tokens" if flat else "spans"


def _check_span_tags(sentences: list[Sentence], path: Path) -> None:
    """Every tag must be a span tag (``O`` or PREFIX-TYPE); the error names the line."""
    for sentence in sentences:
        for index, tag in enumerate(sentence.tags):
            try:
                schemes.parse_tag(tag)
            except ValueError as error:
                line = sentence.line + index if sentence.line else None
                raise DataFormatError(str(error), path, line) from None


def _scheme_or_error(name: str, path: Path) -> str:
    """A canonical scheme name, or a user error that says which file asked for it."""
    try:
        return schemes.normalise_scheme(name)
    except ValueError as error:
        raise LsfaError(f"{path}: {error}") from None


def read_text_lines(path: Path) -> list[str]:
    """The file's lines (without line ends), refusing missing, empty and binary files."""
    if not path.exists():
        raise LsfaError(f"{path}: no such file")
    if path.is_dir():
        raise LsfaError(f"{path}: is a folder, expected a CoNLL file")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError("empty file", path)
    if _looks_like_utf16(data):
        raise DataFormatError(
            f"UTF-16 text, not UTF-8: re-encode it, e.g. iconv -f UTF-16 -t UTF-8 {path} > {path.stem}-utf8.txt",
            path,
        )
    if b"\x00" in data:
        raise DataFormatError(
            "not a text file (contains NUL bytes)", path, data[: data.index(b"\x00")].count(b"\n") + 1
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError("not a text file (not valid UTF-8)", path, line) from None
    # split("\n") rather than splitlines(): the latter also breaks at \x1c, \x85, \u2028, which can
    # occur inside words of real corpora and would mis-split the line.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _looks_like_utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII text with a NUL in every other byte (UTF-16 without a mark)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = data[:4096]
    for zeros, text in ((sample[1::2], sample[0::2]), (sample[0::2], sample[1::2])):
        if len(sample) >= 4 and zeros.count(0) > 0.9 * len(zeros) and text.count(0) < 0.1 * len(text):
            return True
    return False


MAX_COLUMNS = 100
"""More columns than this on the first word line is not CoNLL (one word per line) but running text."""


def _parse_lines(
    lines: Sequence[str], path: Path, tag_column: int, sep: str | None, warnings: list[str], check: bool = True
) -> tuple[list[Sentence], bool, _Layout]:
    """Group word lines into sentences, numbering documents at ``-DOCSTART-`` lines."""
    stream = SentenceStream(lines, path, tag_column, sep, warnings, check)
    sentences = list(stream)
    if stream.layout is None:
        raise DataFormatError("no sentences found (only blank or -DOCSTART- lines)", path)
    return sentences, stream.has_docstart, stream.layout


class SentenceStream:
    """The sentences of CoNLL lines, parsed one at a time as they are read, so a caller that tags a file in
    chunks (``lsfa predict``) never holds the whole file; :func:`read_conll` collects them.

    ``layout`` (separator, column count) is known from the first word line on, ``has_docstart`` once
    iteration is done. Documents are numbered 0, 1, 2, ... among those that hold sentences.
    """

    def __init__(
        self,
        lines: Iterable[str],
        path: str | Path,
        tag_column: int = -1,
        sep: str | None = None,
        warnings: list[str] | None = None,
        check: bool = True,
    ) -> None:
        self.lines, self.path, self.tag_column, self.sep = lines, Path(path), tag_column, sep
        self.warnings = warnings if warnings is not None else []
        self.check = check
        self.layout: _Layout | None = None
        self.has_docstart = False

    def __iter__(self) -> Iterator[Sentence]:
        words: list[list[str]] = []
        first_line = doc_id = 0
        doc_has_sentences = False
        for number, line in enumerate(self.lines, start=1):
            if not line.strip(_BLANK) or (line.lstrip(_BLANK).startswith(DOCSTART) and _first_field(line) == DOCSTART):
                if words and self.layout is not None:
                    yield _make_sentence(words, self.layout.tag_index, doc_id, first_line)
                    doc_has_sentences = True
                words = []
                if line.strip(_BLANK):  # -DOCSTART-
                    self.has_docstart = True
                    # A new document starts only if the current one has sentences, so a -DOCSTART- at the very
                    # start or end of a file (or two in a row) creates no empty document.
                    doc_id, doc_has_sentences = doc_id + doc_has_sentences, False
                continue
            if self.layout is None:
                self.layout = _layout_from_first_line(line, self.path, number, self.tag_column, self.sep)
            fields = _split_fields(line, self.layout, self.path, number, self.warnings, self.check)
            if not words:
                first_line = number
            words.append(fields)
        if words and self.layout is not None:
            yield _make_sentence(words, self.layout.tag_index, doc_id, first_line)


def _first_field(line: str) -> str:
    """The first whitespace-separated field of a line."""
    return _SPACES.split(line.strip(_BLANK), maxsplit=1)[0]


def _layout_from_first_line(line: str, path: Path, number: int, tag_column: int, sep: str | None) -> _Layout:
    """Fix separator, column count and tag position from the first word line."""
    if sep is None:
        sep = "\t" if "\t" in line else " "
    if sep not in (" ", "\t"):
        raise LsfaError(f"{path}: unsupported separator {sep!r}; use ' ' or '\\t'")
    n_columns = len(line.split("\t")) if sep == "\t" else len(_SPACES.split(line.strip(_BLANK)))
    if n_columns < 2:
        raise DataFormatError(f"expected at least two columns (word and tag), found {n_columns}", path, number)
    if n_columns > MAX_COLUMNS:
        raise DataFormatError(
            f"{n_columns:,} columns on one line: CoNLL has one word per line (word, tags); this looks like running "
            "text (tag it with lsfa predict, or convert it to one word per line)",
            path,
            number,
        )
    tag_index = tag_column + n_columns if tag_column < 0 else tag_column
    if not 1 <= tag_index < n_columns:
        raise DataFormatError(
            f"tag column {tag_column} does not exist or is the word column ({n_columns} columns)",
            path,
            number,
        )
    return _Layout(sep=sep, n_columns=n_columns, tag_index=tag_index)


def _split_fields(
    line: str, layout: _Layout, path: Path, number: int, warnings: list[str], check: bool = True
) -> list[str]:
    """The columns of one word line, checked against the layout and with the tag validated."""
    if layout.sep == "\t":
        fields = [value.strip(" ") for value in line.split("\t")]
        starts_with_sep = False
    else:
        fields = _SPACES.split(line.strip(_BLANK))
        starts_with_sep = line[0] in " \t"
    if starts_with_sep and len(fields) == layout.n_columns - 1:
        fields.insert(0, "")  # the word's text was lost; keep its tag in place
    if len(fields) != layout.n_columns:
        mixed = layout.sep == "\t" and "\t" not in line and len(_SPACES.split(line.strip(_BLANK))) > 1
        raise DataFormatError(
            "the separators are mixed: the first word line separates its columns with tabs, this one with spaces: "
            f"{line.strip()!r}"
            if mixed
            else f"expected {layout.n_columns} columns like the first word line, found {len(fields)}: {line.strip()!r}",
            path,
            number,
        )
    if fields[0] == "":
        warnings.append(f"{path}:{number}: empty token kept as ''")
    if check:
        try:
            schemes.parse_tag(fields[layout.tag_index])
        except ValueError as error:
            raise DataFormatError(str(error), path, number) from None
    elif not fields[layout.tag_index]:
        raise DataFormatError("empty tag", path, number)
    return fields


def _make_sentence(words: list[list[str]], tag_index: int, doc_id: int, first_line: int) -> Sentence:
    """A Sentence from split word lines: word first, tag from its column, the rest as extra columns."""
    tokens = [fields[0] for fields in words]
    tags = [fields[tag_index] for fields in words]
    extra = [fields[1:tag_index] + fields[tag_index + 1 :] for fields in words]
    if not any(extra):
        extra = []
    return Sentence(tokens=tokens, tags=tags, extra=extra, doc_id=doc_id, line=first_line)


def _check_transitions(sentences: list[Sentence], scheme: str, path: Path, strict: bool, warnings: list[str]) -> None:
    """Report invalid transitions: an error under ``strict``, else (capped) warnings."""
    reported = 0
    for sentence in sentences:
        for index, message in schemes.validate(sentence.tags, scheme):
            line = sentence.line + index if sentence.line else None
            if strict:
                raise DataFormatError(f"invalid {scheme} transition: {message}", path, line)
            reported += 1
            if reported <= _MAX_TRANSITION_WARNINGS:
                warnings.append(f"{path}:{line}: invalid {scheme} transition: {message}")
    if reported > _MAX_TRANSITION_WARNINGS:
        warnings.append(
            f"{path}: {reported} invalid {scheme} transitions in all (first {_MAX_TRANSITION_WARNINGS} shown)"
        )


def _convert_in_place(sentences: list[Sentence], source: str, target: str, path: Path) -> None:
    """Rewrite every sentence's tags from ``source`` to ``target`` scheme."""
    for sentence in sentences:
        try:
            sentence.tags = schemes.convert(sentence.tags, source, target)
        except ValueError as error:
            raise DataFormatError(str(error), path, sentence.line or None) from None


def iter_documents(sentences: Iterable[Sentence]) -> list[list[Sentence]]:
    """Group consecutive sentences by ``doc_id``, keeping file order (documents give later context)."""
    documents: list[list[Sentence]] = []
    current_id: int | None = None
    for sentence in sentences:
        if not documents or sentence.doc_id != current_id:
            documents.append([])
            current_id = sentence.doc_id
        documents[-1].append(sentence)
    return documents


def write_conll(
    sentences: Iterable[Sentence], path_or_stream: str | Path | TextIO, sep: str = " ", docstart: bool = False
) -> None:
    """Write sentences as a CoNLL file: word, extra columns, tag; a blank line after each sentence.

    With ``docstart`` every document opens with a ``-DOCSTART-`` line padded to the column count
    (``-DOCSTART- -X- -X- O`` for four columns, ``-DOCSTART- O`` for two), as in CoNLL-2003, so that
    reading the output gives the same sentences and documents back.
    """
    if sep not in (" ", "\t"):
        raise LsfaError(f"unsupported separator {sep!r}; use ' ' or '\\t'")
    if isinstance(path_or_stream, str | Path):
        with open(path_or_stream, "w", encoding="utf-8", newline="\n") as stream:
            _write_stream(sentences, stream, sep, docstart)
    else:
        _write_stream(sentences, path_or_stream, sep, docstart)


def _write_stream(sentences: Iterable[Sentence], stream: TextIO, sep: str, docstart: bool) -> None:
    """Write to an open text stream (see :func:`write_conll`)."""
    current_doc: int | None = None
    for sentence in sentences:
        if docstart and sentence.doc_id != current_doc:
            n_extra = len(sentence.extra[0]) if sentence.extra else 0
            stream.write(sep.join([DOCSTART, *["-X-"] * n_extra, "O"]) + "\n\n")
        current_doc = sentence.doc_id
        for index, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags, strict=True)):
            _check_writable(token, sep, sentence, index)
            extra = sentence.extra[index] if sentence.extra else []
            stream.write(sep.join([token, *extra, tag]) + "\n")
        stream.write("\n")


def _check_writable(token: str, sep: str, sentence: Sentence, index: int) -> None:
    """Refuse words that could not be read back as one column (or as a sentence break)."""
    forbidden = "\n\r\t\x00\x0b\x0c" + ("" if sep == "\t" else " ")
    if any(char in token for char in forbidden) or token == DOCSTART:
        where = f" (line {sentence.line + index})" if sentence.line else ""
        raise LsfaError(
            f"word {token!r}{where} cannot be written with separator {sep!r}"
            + ("; use sep='\\t'" if sep == " " and " " in token else "")
        )

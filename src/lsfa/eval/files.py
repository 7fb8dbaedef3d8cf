"""Scoring a predicted CoNLL file against a gold one (what ``lsfa evaluate --gold --pred`` runs).

The two files must hold the same words in the same sentences: a prediction file that dropped or
re-tokenised a word would otherwise shift every later tag onto the wrong word and still produce a
plausible-looking score. Any difference is an error naming the first differing line in both files.
The tag is the last column of each file; other columns are ignored. A prediction file may also hold tags
alone (``.tags``: one tag per line, a blank line after each sentence, how lsfa publishes the predictions of
runs on corpora whose text may not be republished): its tags are laid onto the gold file's words, and a
sentence of another length is an error naming both lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsfa.data.conll import ConllFile, read_conll, read_text_lines
from lsfa.data.formats import format_of, read_file
from lsfa.data.schemes import normalise_scheme
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.eval.spans import InvalidTagError, Mode, allowed_prefixes, check_tags


def evaluate_files(
    gold_path: str | Path,
    pred_path: str | Path,
    scheme: str = "IOB2",
    mode: Mode = "strict",
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`~lsfa.eval.report.evaluate_sentences` of two aligned CoNLL files.

    ``warn`` receives what the reader tolerated (e.g. invalid transitions in the predictions, which are
    legitimate model output and are scored, not refused).
    """
    gold, pred = _read_aligned([gold_path, pred_path], scheme, mode, warn)
    return evaluate_sentences(
        [s.tags for s in gold.sentences],
        [s.tags for s in pred.sentences],
        [s.tokens for s in gold.sentences],
        scheme=normalise_scheme(scheme),
        mode=mode,
    )


def compare_files(
    gold_path: str | Path,
    baseline_path: str | Path,
    pred_path: str | Path,
    scheme: str = "IOB2",
    mode: Mode = "strict",
    samples: int = 10_000,
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Paired bootstrap (:func:`lsfa.eval.significance.paired_bootstrap`) of ``pred`` against ``baseline``, both
    aligned with ``gold`` and checked as :func:`evaluate_files` checks them. Whole documents are drawn when the
    gold file marks several (``-DOCSTART-``), since the sentences of a document share entities; otherwise
    sentences."""
    from lsfa.eval.significance import paired_bootstrap  # lazy: numpy, for --baseline only

    gold, baseline, pred = _read_aligned([gold_path, baseline_path, pred_path], scheme, mode, warn)
    documents = [s.doc_id for s in gold.sentences]
    by = "document" if len(set(documents)) > 1 else "sentence"
    result = paired_bootstrap(
        [s.tags for s in gold.sentences],
        [s.tags for s in baseline.sentences],
        [s.tags for s in pred.sentences],
        scheme=normalise_scheme(scheme),
        mode=mode,
        groups=documents if by == "document" else None,
        samples=samples,
        seed=seed,
    )
    return {"baseline": str(baseline_path), "by": by, **result}


def _read_aligned(
    paths: list[str | Path], scheme: str, mode: Mode, warn: Callable[[str], None] | None
) -> list[ConllFile]:
    """A gold file then prediction files, read in ``scheme`` and checked: every prediction has the gold words,
    every file's tags belong to the scheme. What the reader tolerated goes to ``warn``."""
    allowed_prefixes(scheme, mode)  # refuse a bad scheme or mode before reading large files
    canonical = normalise_scheme(scheme)
    gold = _read(paths[0], canonical)
    files = [gold, *(_read(path, canonical, gold) for path in paths[1:])]
    for warning in (warning for conll in files for warning in conll.warnings):
        if warn is not None:
            warn(warning)
    for prediction in files[1:]:
        check_same_words(files[0], prediction)
    for conll in files:
        check_file_tags(conll, canonical, mode)
    return files


def _read(path: str | Path, scheme: str, gold: ConllFile | None = None) -> ConllFile:
    """A CoNLL file in ``scheme``, a file of another format of :mod:`lsfa.data.formats` (span JSONL, DocBin,
    BRAT: those hold entities, read as IOB2), or for a prediction (``gold`` given) a tags-only ``.tags`` file."""
    if gold is not None and Path(path).suffix.lower() == TAGS_ONLY_SUFFIX:
        return read_tags_only(path, gold)
    data_format = format_of(path)
    if data_format is None or data_format.keeps_columns or scheme != "IOB2":
        return read_conll(path, scheme=scheme)
    return read_file(path)


TAGS_ONLY_SUFFIX = ".tags"


def read_tags_only(path: str | Path, gold: ConllFile) -> ConllFile:
    """A tags-only prediction file laid onto ``gold``'s words: sentence k's tags are the k-th block of lines.

    Raises :class:`DataFormatError` for a line holding more than a tag and for a block whose length differs
    from its gold sentence's, and :class:`LsfaError` when the counts of sentences differ.
    """
    blocks: list[tuple[int, list[str]]] = []  # (line of the first tag, tags)
    current: list[str] | None = None
    for number, raw in enumerate(read_text_lines(Path(path)), 1):
        fields = raw.split()
        if len(fields) > 1:
            raise DataFormatError(f"expected one tag per line ({TAGS_ONLY_SUFFIX} file), found {raw!r}", path, number)
        if not fields:
            current = None
        elif current is None:
            current = [fields[0]]
            blocks.append((number, current))
        else:
            current.append(fields[0])
    if len(blocks) != len(gold.sentences):
        raise LsfaError(
            f"{gold.path} has {len(gold.sentences):,} sentences but {path} has {len(blocks):,} blocks of tags"
        )
    sentences = []
    for (line, tags), sentence in zip(blocks, gold.sentences, strict=True):
        if len(tags) != len(sentence):
            raise DataFormatError(
                f"{len(tags)} tags but the gold sentence at {gold.path}:{sentence.line} has {len(sentence)} words",
                path,
                line,
            )
        sentences.append(Sentence(list(sentence.tokens), tags, doc_id=sentence.doc_id, line=line))
    return ConllFile(sentences, str(path), gold.n_documents, gold.has_docstart, scheme=gold.scheme,
                     tag_scheme=gold.tag_scheme)  # fmt: skip


def check_same_words(gold: ConllFile, pred: ConllFile) -> None:
    """Raise :class:`DataFormatError` at the first word or sentence break that differs between the files."""
    for gold_sentence, pred_sentence in zip(gold.sentences, pred.sentences, strict=False):
        for index in range(max(len(gold_sentence), len(pred_sentence))):
            gold_word = _word_at(gold_sentence, index)
            pred_word = _word_at(pred_sentence, index)
            if gold_word != pred_word:
                raise DataFormatError(
                    f"{_describe(gold_word)} but {pred.path}:{_line_of(pred_sentence, index)} has "
                    f"{_describe(pred_word)} (the files must hold the same words, line for line)",
                    gold.path,
                    _line_of(gold_sentence, index),
                )
    if len(gold.sentences) != len(pred.sentences):
        longer, shorter = (gold, pred) if len(gold.sentences) > len(pred.sentences) else (pred, gold)
        first_extra = longer.sentences[len(shorter.sentences)]
        raise LsfaError(
            f"{gold.path} has {len(gold.sentences):,} sentences but {pred.path} has {len(pred.sentences):,}; "
            f"the first unmatched sentence starts at {longer.path}:{first_extra.line}"
        )


def _word_at(sentence: Sentence, index: int) -> str | None:
    return sentence.tokens[index] if index < len(sentence) else None


def _line_of(sentence: Sentence, index: int) -> int:
    """1-based line of word ``index`` (a sentence's words are consecutive lines; past the end is the
    blank line that closed it)."""
    return sentence.line + index


def _describe(word: str | None) -> str:
    return "the end of a sentence" if word is None else f"token {word!r}"


def check_file_tags(conll: ConllFile, scheme: str, mode: Mode) -> None:
    """Raise :class:`DataFormatError` at the first tag the scheme and mode do not allow."""
    for sentence in conll.sentences:
        try:
            check_tags(sentence.tags, scheme, mode)
        except InvalidTagError as error:
            raise DataFormatError(error.reason, conll.path, sentence.line + error.position) from None

"""Raw text to words with character offsets, CoNLL/PTB style.

Taggers are trained on pre-split words (CoNLL-2003: ``Peter Blackburn 's visit to the U.S. .``), so raw
text must be split the same way before prediction, and every entity must point back into the text the
user gave us. :func:`split_words` therefore never normalises or rewrites the text: it only finds word
boundaries, and ``text[word.start:word.end] == word.text`` always holds.

The rules, in the order they apply:

1. **Separators** (``str.isspace()``, plus zero-width space U+200B and the byte-order mark U+FEFF) only
   separate words; every other character belongs to exactly one word.
2. **Atoms.** A run of letters, digits and ``_`` (any script) is one atom; each Han ideograph is an atom
   of its own (Chinese has no spaces; BERT splits it the same way); every other character (punctuation,
   symbols, emoji, control characters) is an atom of its own.
3. **Attached characters** never start a word when they can join one: combining marks (``e`` + U+0301),
   variation selectors, emoji skin-tone modifiers, tag characters and the zero-width (non-)joiner attach
   to the character before them, and the character after a zero-width joiner joins too (emoji sequences
   such as 👩‍🔬 stay whole). A pair of regional indicators (a flag) is one word.
4. **Inner punctuation.** Letter/digit atoms joined by one ``-``, ``'``, ``’`` or ``.`` form one word
   (``1996-08-22``, ``Guillain-Barré``, ``O'Neill``, ``3.5``); a ``,`` joins digits (``1,000``).
5. **Abbreviations.** A final ``.`` stays on a word that already contains a ``.`` or is a single letter
   (``U.S.``, ``a.m.``, ``J.``); otherwise it is its own word (``Paris .``). ``vitamin C.`` at the end of
   a sentence therefore keeps its period: a known, harmless ambiguity.
6. **Repeated punctuation** of one character is one word (``...``, ``--``, ``!!``).
7. **Clitics** split off as in the Penn Treebank: ``Smith's`` -> ``Smith`` ``'s``; ``don't`` -> ``do``
   ``n't``; also ``'re 've 'll 'd 'm`` (straight or curly apostrophe, any case).

Scripts written without spaces other than Han (Thai, Japanese kana) stay one word per run; long words
are still handled by the predictor's windows. The scan is linear in the length of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

_EXTRA_SEPARATORS = frozenset("\u200b\ufeff")
_JOINERS = frozenset("-'’.")
_ZWJ = "\u200d"
_APOSTROPHES = "'’"
_CLITICS = ("s", "re", "ve", "ll", "d", "m")

_WORD, _HAN, _OTHER = "word", "han", "other"


class Word(NamedTuple):
    """One word of a text: its characters and where they are (``text[start:end] == word.text``)."""

    text: str
    start: int
    end: int


class _Atom:
    """A growing token during the scan (mutable; ``kind`` says how it may grow)."""

    __slots__ = ("end", "kind", "start")

    def __init__(self, start: int, end: int, kind: str) -> None:
        self.start, self.end, self.kind = start, end, kind


def is_separator(char: str) -> bool:
    """Whether ``char`` separates words instead of belonging to one."""
    return char.isspace() or char in _EXTRA_SEPARATORS


_CHUNK = re.compile("[^\\s\u200b\ufeff]+")
"""A run of non-separators: ``\\s`` on a str pattern is exactly ``str.isspace()``, plus the two extras."""


def split_words(text: str) -> list[Word]:
    """The words of ``text`` with their character offsets (see the module docstring for the rules).

    A chunk between separators made only of ASCII letters and digits (most of them) is one word by every rule,
    so it skips the character scan: the scan in Python was a quarter of ``lsfa predict``'s time on short texts.
    """
    words: list[Word] = []
    for chunk in _CHUNK.finditer(text):
        start, stop = chunk.span()
        piece = chunk.group()
        if piece.isascii() and piece.isalnum():
            words.append(Word(piece, start, stop))
            continue
        atoms = _join_inner_punctuation(text, _atoms(text, start, stop))
        for atom_start, atom_end in _split_clitics(text, atoms):
            words.append(Word(text[atom_start:atom_end], atom_start, atom_end))
    return words


def _is_attached(char: str) -> bool:
    """Characters that belong to the character before them (marks, selectors, modifiers, joiners)."""
    code = ord(char)
    return (
        unicodedata.category(char).startswith("M")
        or char in "\u200c\u200d"
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers (category Sk)
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_han(char: str) -> bool:
    """CJK ideographs, the ranges BERT's tokenizer splits one character at a time."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _kind(char: str) -> str:
    if _is_han(char):
        return _HAN
    if char.isalnum() or char == "_":
        return _WORD
    return _OTHER


def _atoms(text: str, start: int, stop: int) -> list[_Atom]:
    """Rules 2 and 3 over one separator-free chunk ``text[start:stop]``."""
    atoms: list[_Atom] = []
    after_joiner = False
    for index in range(start, stop):
        char = text[index]
        current = atoms[-1] if atoms else None
        kind = _kind(char)
        if current is not None and _extends(text, current, char, kind, after_joiner):
            current.end = index + 1
        else:
            atoms.append(_Atom(index, index + 1, _WORD if _is_attached(char) else kind))
        after_joiner = char == _ZWJ
    return atoms


def _extends(text: str, current: _Atom, char: str, kind: str, after_joiner: bool) -> bool:
    """Whether ``char`` belongs to the atom just before it (rule 3, or a letter/digit run)."""
    return (
        after_joiner
        or _is_attached(char)
        or (kind == _WORD and current.kind == _WORD)
        or _continues_flag(text, current, char)
    )


def _continues_flag(text: str, current: _Atom, char: str) -> bool:
    """A second regional indicator right after a lone first one makes a flag."""
    return (
        _is_regional_indicator(char)
        and current.end - current.start == 1
        and _is_regional_indicator(text[current.start])
    )


def _join_inner_punctuation(text: str, atoms: list[_Atom]) -> list[_Atom]:
    """Rules 4-6: merge ``word joiner word`` and repeated punctuation, then keep abbreviation periods.

    Periods are attached in a second pass, once every ``U.S.A``-style join is done, so that the ``.`` after
    a single letter is not taken for an abbreviation before the next letter is seen.
    """
    joined: list[_Atom] = []
    for atom in atoms:
        if atom.kind == _WORD and len(joined) >= 2 and _joins(text, joined[-2], joined[-1], atom):
            joined.pop()
            joined[-1].end = atom.end
        elif _repeats_punctuation(text, joined, atom):
            joined[-1].end = atom.end
        else:
            joined.append(atom)
    merged: list[_Atom] = []
    for atom in joined:
        if _is_abbreviation_period(text, merged, atom):
            merged[-1].end = atom.end
        else:
            merged.append(atom)
    return merged


def _single_char(text: str, atom: _Atom) -> str | None:
    return text[atom.start] if atom.end - atom.start == 1 else None


def _joins(text: str, left: _Atom, middle: _Atom, right: _Atom) -> bool:
    """``left middle right`` is one word: two word atoms around one joining character."""
    if left.kind != _WORD or middle.kind != _OTHER:
        return False
    char = _single_char(text, middle)
    if char in _JOINERS:
        return True
    return char == "," and text[left.end - 1].isdigit() and text[right.start].isdigit()


def _is_abbreviation_period(text: str, merged: list[_Atom], atom: _Atom) -> bool:
    if not merged or _single_char(text, atom) != "." or merged[-1].kind != _WORD:
        return False
    word = text[merged[-1].start : merged[-1].end]
    return "." in word or (len(word) == 1 and word.isalpha())


def _repeats_punctuation(text: str, merged: list[_Atom], atom: _Atom) -> bool:
    char = _single_char(text, atom)
    if not merged or char is None or merged[-1].kind != _OTHER or not unicodedata.category(char).startswith("P"):
        return False
    previous = text[merged[-1].start : merged[-1].end]
    return previous == char * len(previous)


def _split_clitics(text: str, atoms: list[_Atom]) -> list[tuple[int, int]]:
    """Rule 7: ``(start, end)`` of each final word, with PTB clitics split off word atoms."""
    spans: list[tuple[int, int]] = []
    for atom in atoms:
        cut = _clitic_start(text[atom.start : atom.end]) if atom.kind == _WORD else None
        if cut is None:
            spans.append((atom.start, atom.end))
        else:
            spans.extend([(atom.start, atom.start + cut), (atom.start + cut, atom.end)])
    return spans


def _clitic_start(word: str) -> int | None:
    """Where a trailing clitic starts in ``word`` (``Smith's`` -> 5, ``don't`` -> 2), or None."""
    lowered = word.lower()
    for clitic in _CLITICS:
        for apostrophe in _APOSTROPHES:
            suffix = apostrophe + clitic
            if lowered.endswith(suffix) and len(word) > len(suffix):
                return len(word) - len(suffix)
    for apostrophe in _APOSTROPHES:
        suffix = "n" + apostrophe + "t"
        if lowered.endswith(suffix) and len(word) > len(suffix):
            return len(word) - len(suffix)
    return None


def words_as_text(words: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-split words joined by single spaces, with each word's offsets in the joined text."""
    placed: list[Word] = []
    position = 0
    for word in words:
        placed.append(Word(word, position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), placed

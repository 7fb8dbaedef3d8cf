"""Splitting raw text into words with offsets into the original text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsfa.data.text import Word, is_separator, split_words


def texts(text: str) -> list[str]:
    return [word.text for word in split_words(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EU rejects German call.", ["EU", "rejects", "German", "call", "."]),
        ("Peter Blackburn's visit", ["Peter", "Blackburn", "'s", "visit"]),
        ("on 1996-08-22 in the U.S. and U.K", ["on", "1996-08-22", "in", "the", "U.S.", "and", "U.K"]),
        ("Guillain-Barré syndrome", ["Guillain-Barré", "syndrome"]),
        ("O'Neill's car, don't", ["O'Neill", "'s", "car", ",", "do", "n't"]),
        ("She’s here", ["She", "’s", "here"]),
        ("costs $1,000.50 (approx.)", ["costs", "$", "1,000.50", "(", "approx", ".", ")"]),
        ("J. R. R. Tolkien wrote...", ["J.", "R.", "R.", "Tolkien", "wrote", "..."]),
        ("well--known, e.g. this", ["well", "--", "known", ",", "e.g.", "this"]),
        ("Paris.", ["Paris", "."]),
        ("東京 is Tokyo", ["東", "京", "is", "Tokyo"]),
        ("שלום עולם", ["שלום", "עולם"]),
        ("", []),
        (" \t\n\u200b\ufeff ", []),
    ],
)
def test_examples(text, expected):
    assert texts(text) == expected


def test_combining_marks_stay_in_their_word():
    decomposed = "Zu\u0308rich cafe\u0301"
    assert texts(decomposed) == ["Zu\u0308rich", "cafe\u0301"]


def test_emoji_sequences_flags_and_modifiers_stay_whole():
    scientist = "👩\u200d🔬"
    thumbs = "👍🏽"
    assert texts(f"{scientist} {thumbs}🇺🇸🇬🇧 ok") == [scientist, thumbs, "🇺🇸", "🇬🇧", "ok"]


def test_control_characters_are_words_of_their_own():
    assert texts("a\x00b\x07") == ["a", "\x00", "b", "\x07"]


def test_a_very_long_word_is_one_word():
    word = "x" * 5000
    assert split_words(f"a {word} b") == [Word("a", 0, 1), Word(word, 2, 5002), Word("b", 5003, 5004)]
    marks = "e" + "\u0301" * 5000
    assert texts(marks) == [marks]


def check_invariants(text: str) -> None:
    words = split_words(text)
    covered = [False] * len(text)
    previous_end = 0
    for word in words:
        assert word.text, "no empty words"
        assert text[word.start : word.end] == word.text
        assert word.start >= previous_end, "in order, no overlap"
        assert not any(is_separator(char) for char in word.text)
        for position in range(word.start, word.end):
            covered[position] = True
        previous_end = word.end
    for position, char in enumerate(text):
        assert covered[position] == (not is_separator(char)), f"position {position} ({char!r})"


ODD_CHARACTERS = st.sampled_from(
    [
        *"aZ9_ -'’.,$()…\t\n\r\x00\x07\x1c\x85\u00a0\u2028\u200b\u200c\u200d\ufeff\u0301\u0308\ufe0f",
        *["👩", "🔬", "🏽", "🇺", "🇸", "東", "ש", "\U000e0067", "\U0001f600", "\u202e", "\ud800"],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(ODD_CHARACTERS, st.characters()), max_size=80))
def test_every_non_separator_character_is_in_exactly_one_word(text):
    check_invariants(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Smith", "'s", "n't", "U.S.", "1,000", "-", ".", " ", "\u0301"]), max_size=30))
def test_invariants_hold_for_tricky_combinations(pieces):
    check_invariants("".join(pieces))


def test_the_ascii_fast_path_splits_as_the_character_scan_does() -> None:
    """Chunks of ASCII letters and digits skip the scan (issue #38: the scan was a quarter of predict's time);
    every text must still split exactly as the scan of each chunk would split it."""
    import random

    from lsfa.data import text as module

    def scanned(text: str) -> list[Word]:
        words, start = [], 0
        while start < len(text):
            if module.is_separator(text[start]):
                start += 1
                continue
            stop = start
            while stop < len(text) and not module.is_separator(text[stop]):
                stop += 1
            atoms = module._join_inner_punctuation(text, module._atoms(text, start, stop))
            words += [Word(text[a:b], a, b) for a, b in module._split_clitics(text, atoms)]
            start = stop
        return words

    rng = random.Random(0)
    pieces = [*"abcXYZ019 _-'’.,!?\t\n\u200b\ufeff\u00a0é\u0301中👩\u200d🔬🇩🇪s", "n't", "'s", "U.S.", "1,000", "  "]
    for _ in range(3000):
        sample = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert split_words(sample) == scanned(sample), repr(sample)

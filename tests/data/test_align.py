"""Tests for lsfa.data.align: words to sub-tokens through character offsets, on the tokenizer families that matter.

The invariants (no word lost or merged, labels on a sub-token that holds the word's text, the same sub-tokens
as running text for byte-level BPE) are checked property-based over hostile word lists, on tiny offline
tokenizers and, as an integration test, on the real SmolLM2 tokenizer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsfa.data.align import (
    IGNORE_INDEX,
    PLACEHOLDER,
    WordEncoding,
    encode_words,
    join_words,
    model_text_for,
    word_labels_to_subtokens,
)
from lsfa.errors import LsfaError
from tests.tiny import byte_bpe_tokenizer, metaspace_tokenizer, wordpiece_tokenizer

TINY_TOKENIZERS: dict[str, Callable] = {
    "byte_bpe_bos": functools.cache(lambda: byte_bpe_tokenizer(with_bos=True)),
    "byte_bpe_plain": functools.cache(lambda: byte_bpe_tokenizer(with_bos=False)),
    "metaspace": functools.cache(metaspace_tokenizer),
    "wordpiece": functools.cache(wordpiece_tokenizer),
}
BYTE_LEVEL = ("byte_bpe_bos", "byte_bpe_plain")


@functools.cache
def _smollm2_tokenizer():
    from lsfa.models.catalogue import resolve_model
    from lsfa.models.classifier import load_tokenizer

    try:
        path = resolve_model("smollm2-135m")
    except LsfaError as error:
        pytest.skip(f"smollm2-135m is not provisioned: {error}")
    return load_tokenizer(path)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2 tokenizer (byte-level BPE); skips when the model is not provisioned."""
    return _smollm2_tokenizer()


# Characters that break naive alignment: invisible format characters, combining marks, right-to-left
# scripts, emoji with modifiers, CJK, non-breaking and ideographic spaces, line separators, the
# placeholder itself and the tokenizers' own space markers typed as text.
HOSTILE = [
    "a", "Z", "1", "9", ",", ".", "-", "'", " ", "\t", "\n", "\r",
    "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060", "\u0301", "\u0308",
    "\u05e9", "\u05dc", "\u0627", "\u0644", "\u200f",
    "\U0001f642", "\U0001f44d", "\U0001f3fd", "東", "京", "é", "ß", "\x00", "\x7f",
    "\u00a0", "\u3000", "\u2028", "\u2581", "\u0120", PLACEHOLDER,
]  # fmt: skip
word_strategy = st.one_of(
    st.text(st.sampled_from(HOSTILE), max_size=6),
    st.text(max_size=4),
    st.sampled_from(["", " ", "\u200b", "Peter", "1996", "Guillain-Barré", "São", "東京", "🙂"]),
)
word_lists = st.lists(word_strategy, max_size=10)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_alignment_invariants(encoding: WordEncoding, words: Sequence[str]) -> None:
    """No word lost or merged: each word owns >= 1 sub-token, in order, and its label slot is its own."""
    assert len(encoding.word_ids) == len(encoding.input_ids)
    assert len(encoding.first_subtoken) == len(words)
    owned = [word for word in encoding.word_ids if word is not None]
    assert owned == sorted(owned), "word ids must be non-decreasing"
    assert set(owned) == set(range(len(words))), "every word needs at least one sub-token"
    assert all(a < b for a, b in zip(encoding.first_subtoken, encoding.first_subtoken[1:], strict=False))
    for word, position in enumerate(encoding.first_subtoken):
        assert encoding.word_ids[position] == word


def assert_label_on_word_text(tokenizer, encoding: WordEncoding, words: Sequence[str]) -> None:
    """The label slot of an ordinary word is not a lone space marker (``Ġ``/``▁``) standing before it."""
    for word, position in zip(words, encoding.first_subtoken, strict=True):
        if model_text_for(word) == word and not set(word) & {"\u2581", "\u0120"}:
            token = tokenizer.convert_ids_to_tokens(encoding.input_ids[position])
            assert token.strip("Ġ▁ "), f"label of {word!r} sits on the lone space token {token!r}"


def running_text_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """What the tokenizer makes of the sentence as plain running text."""
    return tokenizer(join_words(words)[0])["input_ids"]


# --------------------------------------------------------------------------------------------------------------
# Fixed examples
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TINY_TOKENIZERS))
def test_ordinary_sentence_aligns_on_every_tokenizer(name: str) -> None:
    tokenizer = TINY_TOKENIZERS[name]()
    words = ["Peter", "Blackburn", "visited", "Brussels", "on", "1996-08-22", "."]
    encoding = encode_words(tokenizer, words)
    assert_alignment_invariants(encoding, words)
    assert_label_on_word_text(tokenizer, encoding, words)
    assert encoding.input_ids == running_text_ids(tokenizer, words)


@pytest.mark.parametrize("name", list(TINY_TOKENIZERS))
def test_special_tokens_belong_to_no_word(name: str) -> None:
    tokenizer = TINY_TOKENIZERS[name]()
    with_specials = encode_words(tokenizer, ["Peter", "Smith"])
    without = encode_words(tokenizer, ["Peter", "Smith"], add_special_tokens=False)
    special_ids = set(tokenizer.all_special_ids)
    assert None not in without.word_ids
    for token_id, word in zip(with_specials.input_ids, with_specials.word_ids, strict=True):
        assert (word is None) == (token_id in special_ids)
    assert [t for t in with_specials.input_ids if t not in special_ids] == without.input_ids


def test_byte_level_keeps_the_leading_space_of_later_words() -> None:
    """Pre-split tokenisation would give "Paris" its sentence-initial pieces; running text gives "ĠParis"."""
    tokenizer = TINY_TOKENIZERS["byte_bpe_plain"]()
    encoding = encode_words(tokenizer, ["visited", "Brussels"])
    tokens = tokenizer.convert_ids_to_tokens(encoding.input_ids)
    brussels = [token for token, word in zip(tokens, encoding.word_ids, strict=True) if word == 1]
    assert brussels[0].startswith("Ġ")
    assert "".join(brussels) == "ĠBrussels"


@pytest.mark.parametrize("word", ["", " ", "\t", "\u200b", "\ufeff", "\u200b\u200d", "\u3000"])
@pytest.mark.parametrize("name", list(TINY_TOKENIZERS))
def test_invisible_words_become_placeholders_and_keep_their_slot(name: str, word: str) -> None:
    tokenizer = TINY_TOKENIZERS[name]()
    words = ["Peter", word, "visited"]
    assert model_text_for(word) == PLACEHOLDER
    encoding = encode_words(tokenizer, words)
    assert_alignment_invariants(encoding, words)


def test_visible_words_are_shown_as_they_are() -> None:
    assert model_text_for("Paris") == "Paris"
    assert model_text_for("e\u0301") == "e\u0301"
    text, spans = join_words(["a", "", "bc"])
    assert text == f"a {PLACEHOLDER} bc"
    assert [text[start:end] for start, end in spans] == ["a", PLACEHOLDER, "bc"]


def test_words_the_tokenizer_drops_fall_back_to_word_by_word_encoding() -> None:
    """BERT's normaliser strips a lone combining accent: the word still gets a sub-token ([UNK] or its own)."""
    tokenizer = TINY_TOKENIZERS["wordpiece"]()
    words = ["caf", "\u0301", "x"]
    encoding = encode_words(tokenizer, words)
    assert_alignment_invariants(encoding, words)


def test_empty_word_list() -> None:
    tokenizer = TINY_TOKENIZERS["byte_bpe_bos"]()
    encoding = encode_words(tokenizer, [])
    assert encoding.first_subtoken == []
    assert all(word is None for word in encoding.word_ids)


def test_slow_tokenizer_is_refused() -> None:
    class Slow:
        is_fast = False

    with pytest.raises(LsfaError, match="fast tokenizer"):
        encode_words(Slow(), ["a"])


def test_label_goes_on_the_digit_not_on_the_lone_space_token() -> None:
    """The tiny byte-level BPE splits " 1996" into "Ġ" "1" "9" "9" "6" like SmolLM2 does."""
    tokenizer = TINY_TOKENIZERS["byte_bpe_bos"]()
    encoding = encode_words(tokenizer, ["In", "1996"])
    tokens = tokenizer.convert_ids_to_tokens(encoding.input_ids)
    year = [k for k, word in enumerate(encoding.word_ids) if word == 1]
    assert tokens[year[0]] == "Ġ", "precondition: this tokenizer emits a lone space token before digits"
    assert tokens[encoding.first_subtoken[1]] == "1"


def test_metaspace_label_skips_the_prepended_marker_of_the_first_word() -> None:
    """Metaspace gives its prepended "▁" the offsets of the first character; the label must skip it."""
    tokenizer = TINY_TOKENIZERS["metaspace"]()
    encoding = encode_words(tokenizer, ["0", "Peter"])
    tokens = tokenizer.convert_ids_to_tokens(encoding.input_ids)
    assert tokens[encoding.first_subtoken[0] - 1] == "▁", "precondition: a lone marker precedes the digit"
    assert tokens[encoding.first_subtoken[0]] == "0"


# --------------------------------------------------------------------------------------------------------------
# Properties over hostile word lists
# --------------------------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(words=word_lists)
def test_no_word_lost_or_merged_on_tiny_tokenizers(words: list[str]) -> None:
    for make in TINY_TOKENIZERS.values():
        tokenizer = make()
        for specials in (True, False):
            encoding = encode_words(tokenizer, words, add_special_tokens=specials)
            assert_alignment_invariants(encoding, words)
        assert_label_on_word_text(tokenizer, encoding, words)


@PROPERTY_SETTINGS
@given(words=word_lists)
def test_byte_level_bpe_matches_running_text(words: list[str]) -> None:
    """Byte-level BPE never drops a byte, so alignment must not change a single input id."""
    for name in BYTE_LEVEL:
        tokenizer = TINY_TOKENIZERS[name]()
        assert encode_words(tokenizer, words).input_ids == running_text_ids(tokenizer, words)


@pytest.mark.integration
@PROPERTY_SETTINGS
@given(words=word_lists)
def test_smollm2_alignment_properties(smollm2, words: list[str]) -> None:
    encoding = encode_words(smollm2, words)
    assert_alignment_invariants(encoding, words)
    assert_label_on_word_text(smollm2, encoding, words)
    assert encoding.input_ids == running_text_ids(smollm2, words)


@pytest.mark.integration
def test_smollm2_each_word_keeps_its_running_text_subtokens(smollm2) -> None:
    words = ["EU", "rejects", "German", "call", "in", "1996", ",", "said", "Zürich", "'s", "東京", "🙂", "."]
    encoding = encode_words(smollm2, words)
    tokens = smollm2.convert_ids_to_tokens(encoding.input_ids)
    year = [tokens[k] for k, word in enumerate(encoding.word_ids) if word == 5]
    assert year == ["Ġ", "1", "9", "9", "6"]
    assert tokens[encoding.first_subtoken[5]] == "1"
    assert [tokens[k] for k, word in enumerate(encoding.word_ids) if word == 1] == ["Ġrejects"]
    # Each word's pieces are exactly what the word gets after a space in running text.
    for index, word in enumerate(words[1:], start=1):
        pieces = [encoding.input_ids[k] for k, owner in enumerate(encoding.word_ids) if owner == index]
        assert pieces == smollm2(" " + word, add_special_tokens=False)["input_ids"], word


# --------------------------------------------------------------------------------------------------------------
# Word labels to sub-token labels
# --------------------------------------------------------------------------------------------------------------

LABELS = {"O": 0, "B-PER": 1, "I-PER": 2}
INSIDE = {1: 2}


def _multi_piece_encoding():
    tokenizer = TINY_TOKENIZERS["byte_bpe_bos"]()
    words = ["Blackburn", "in", "1996"]
    encoding = encode_words(tokenizer, words)
    pieces = [[k for k, word in enumerate(encoding.word_ids) if word == w] for w in range(len(words))]
    assert len(pieces[0]) > 1, "precondition: Blackburn is split into several pieces"
    return encoding, pieces


def test_first_subtoken_only_labels() -> None:
    encoding, _ = _multi_piece_encoding()
    labels = word_labels_to_subtokens(encoding, [1, 0, 1])
    assert [labels[k] for k in encoding.first_subtoken] == [1, 0, 1]
    labelled = {k for k, label in enumerate(labels) if label != IGNORE_INDEX}
    assert labelled == set(encoding.first_subtoken)


def test_all_subtokens_continue_with_inside_labels() -> None:
    encoding, pieces = _multi_piece_encoding()
    labels = word_labels_to_subtokens(encoding, [1, 0, 1], label_all_subtokens=True, inside_of=INSIDE)
    first, *rest = pieces[0]
    assert labels[first] == 1
    assert [labels[k] for k in rest] == [2] * len(rest)  # B-PER word: continuation pieces are I-PER
    assert labels[0] == IGNORE_INDEX  # the BOS token
    # "1996": the lone "Ġ" before the first digit is not part of the word and stays unlabelled.
    space, first_digit, *digits = pieces[2]
    assert labels[space] == IGNORE_INDEX
    assert labels[first_digit] == 1
    assert [labels[k] for k in digits] == [2] * len(digits)


def test_all_subtokens_without_inside_map_repeat_the_label() -> None:
    encoding, pieces = _multi_piece_encoding()
    labels = word_labels_to_subtokens(encoding, [2, 0, 0], label_all_subtokens=True)
    assert [labels[k] for k in pieces[0]] == [2] * len(pieces[0])


def test_unscored_words_are_never_labelled() -> None:
    encoding, pieces = _multi_piece_encoding()
    labels = word_labels_to_subtokens(encoding, [1, 0, 1], label_all_subtokens=True, scored_words=range(1, 2))
    labelled = [k for k, label in enumerate(labels) if label != IGNORE_INDEX]
    assert labelled == pieces[1]

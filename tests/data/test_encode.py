"""Tests for lsfa.data.encode: windows over long sentences, over-long words, document context, label ids."""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsfa.data.align import IGNORE_INDEX, encode_words, special_token_frame
from lsfa.data.encode import EncodedSet, Segment, document_runs, encode_sentences
from tests.tiny import byte_bpe_tokenizer, metaspace_tokenizer, wordpiece_tokenizer

TOKENIZERS = {
    "byte_bpe": functools.cache(byte_bpe_tokenizer),
    "metaspace": functools.cache(metaspace_tokenizer),
    "wordpiece": functools.cache(wordpiece_tokenizer),
}
VOCABULARY = ["the", "Peter", "Blackburn", "visited", "Brussels", "in", "1996", ",", ".", "naloxone", "clonidine"]
VOCABULARY += ["Zürich", "東京", "🙂", "Guillain-Barré"]


def random_sentence(rng: random.Random, length: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(length)]


def word_labels(sentences: list[list[str]]) -> list[list[int]]:
    """Distinct label ids per word (sentence * 1000 + word), so a misplaced label cannot match by chance."""
    return [[1000 * s + w for w in range(len(words))] for s, words in enumerate(sentences)]


def assert_every_word_scored_once(encoded: EncodedSet, sentences, labels, max_length: int) -> None:
    """Each word is scored in exactly one row, at its own first sub-token, and rows fit ``max_length``."""
    scored = Counter()
    for row in encoded.examples:
        assert len(row.input_ids) <= max_length
        assert len(row.labels) == len(row.input_ids)
        assert len(row.scored_words()) == len(row.label_positions)
        for (sentence, word), position in zip(row.scored_words(), row.label_positions, strict=True):
            scored[sentence, word] += 1
            assert row.labels[position] == labels[sentence][word]
        # No label anywhere else (first-sub-token labelling): nothing outside the scored words leaks in.
        assert sum(label != IGNORE_INDEX for label in row.labels) == len(row.label_positions)
    expected = {(s, w) for s, words in enumerate(sentences) for w in range(len(words))}
    assert set(scored) == expected
    assert set(scored.values()) <= {1}


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_short_sentence_is_one_row(name: str) -> None:
    tokenizer = TOKENIZERS[name]()
    words = ["Peter", "visited", "Brussels"]
    encoded = encode_sentences(tokenizer, [words], [[1, 0, 2]])
    (row,) = encoded.examples
    whole = encode_words(tokenizer, words)
    assert row.input_ids == whole.input_ids
    assert row.label_positions == whole.first_subtoken
    assert row.scored_words() == [(0, 0), (0, 1), (0, 2)]
    assert [row.labels[p] for p in row.label_positions] == [1, 0, 2]
    assert encoded.cut_words == 0
    assert encoded.n_subtokens == len(row.input_ids)


@pytest.mark.parametrize("name", list(TOKENIZERS))
@pytest.mark.parametrize("max_length", [6, 9, 16, 33])
def test_long_sentence_windows_score_every_word_once(name: str, max_length: int) -> None:
    tokenizer = TOKENIZERS[name]()
    sentences = [random_sentence(random.Random(max_length), 60)]
    labels = word_labels(sentences)
    encoded = encode_sentences(tokenizer, sentences, labels, max_length=max_length)
    assert len(encoded.examples) > 1
    assert_every_word_scored_once(encoded, sentences, labels, max_length)
    longest_word = max(len(encode_words(tokenizer, [w], add_special_tokens=False)) for w in sentences[0])
    assert (encoded.cut_words > 0) == (longest_word > max_length - len(encode_words(tokenizer, []).input_ids))


def test_window_positions_are_the_words_first_subtokens() -> None:
    """A word in a window gets the same sub-tokens (and label slot) as in the whole sentence."""
    tokenizer = TOKENIZERS["byte_bpe"]()
    words = random_sentence(random.Random(3), 40)
    whole = encode_words(tokenizer, words)
    whole_pieces = [[whole.input_ids[k] for k, w in enumerate(whole.word_ids) if w == i] for i in range(len(words))]
    first_offset = [whole.first_subtoken[i] - whole.word_ids.index(i) for i in range(len(words))]
    for row in encode_sentences(tokenizer, [words], max_length=12).examples:
        for (_, word), position in zip(row.scored_words(), row.label_positions, strict=True):
            start = position - first_offset[word]
            assert row.input_ids[start : start + len(whole_pieces[word])] == whole_pieces[word]


def test_windows_overlap_so_scored_words_have_context() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    words = ["word"] * 80
    pieces = sum(1 for w in encode_words(tokenizer, ["a", "word"]).word_ids if w == 1)
    rows = encode_sentences(tokenizer, [words], max_length=34).examples
    # Middle windows score words away from both edges: unscored context words precede the first scored one.
    middle = rows[1:-1]
    assert middle
    for row in middle:
        assert row.label_positions[0] > 1 + pieces  # BOS, then at least one unscored context word


def test_single_giant_word_is_cut_but_labelled() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    giant = "x" * 5000
    sentences = [["In", giant, "Brussels"], [giant]]
    labels = [[1, 2, 3], [4]]
    encoded = encode_sentences(tokenizer, sentences, labels, max_length=16)
    assert_every_word_scored_once(encoded, sentences, labels, 16)
    assert encoded.cut_words == 2
    giant_rows = [row for row in encoded.examples if len(row.input_ids) == 16]
    assert len(giant_rows) == 2


def test_empty_sentence_gives_no_row_but_counts() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    encoded = encode_sentences(tokenizer, [[], ["Peter"]], [[], [1]])
    assert encoded.n_sentences == 2
    assert [row.segments[0].sentence for row in encoded.examples] == [1]


def test_unlabelled_input_has_only_ignore_labels() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    encoded = encode_sentences(tokenizer, [["Peter", "visited"]])
    (row,) = encoded.examples
    assert set(row.labels) == {IGNORE_INDEX}
    assert len(row.label_positions) == 2


def test_label_all_subtokens_uses_inside_ids() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    encoded = encode_sentences(tokenizer, [["Blackburn"]], [[1]], label_all_subtokens=True, inside_of={1: 2})
    (row,) = encoded.examples
    labelled = [label for label in row.labels if label != IGNORE_INDEX]
    assert labelled[0] == 1
    assert labelled[1:] and set(labelled[1:]) == {2}


# --------------------------------------------------------------------------------------------------------------
# Document context
# --------------------------------------------------------------------------------------------------------------


TWO_DOCUMENTS = ([["Peter", "visited"], ["Brussels", "."], ["the", "Zürich"], ["naloxone"]], [0, 0, 0, 1])
"""Three short sentences of one document, then a one-sentence document: every row fits 512 sub-tokens."""


def test_document_context_adds_neighbours_but_labels_only_own_words() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences, documents = TWO_DOCUMENTS
    labels = word_labels(sentences)
    encoded = encode_sentences(tokenizer, sentences, labels, documents=documents, context="document")
    assert_every_word_scored_once(encoded, sentences, labels, 512)
    by_sentence = {row.segments[0].sentence: row for row in encoded.examples}
    doc0 = encode_words(tokenizer, [w for s in sentences[:3] for w in s])
    for index in range(3):  # the whole document fits: every row shows all three sentences
        assert by_sentence[index].input_ids == doc0.input_ids
    middle = by_sentence[1]
    assert middle.label_positions == [doc0.first_subtoken[2], doc0.first_subtoken[3]]
    # Never across documents: sentence 3 (document 1) is alone in its row, rows of document 0 never show it.
    assert by_sentence[3].input_ids == encode_words(tokenizer, sentences[3]).input_ids


def test_document_context_without_documents_is_sentence_context() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences = [["Peter", "visited"], ["Brussels", "."]]
    plain = encode_sentences(tokenizer, sentences)
    with_context = encode_sentences(tokenizer, sentences, context="document")
    assert [row.input_ids for row in with_context.examples] == [row.input_ids for row in plain.examples]


def test_document_context_prefers_nearest_neighbours_when_space_is_short() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences = [["the"] * 6, ["Peter"], ["visited"], ["Brussels"], ["the"] * 6]
    documents = [0] * 5
    lengths = [len(encode_words(tokenizer, s, add_special_tokens=False)) for s in sentences]
    budget = 1 + lengths[1] + lengths[2] + lengths[3] + 2  # BOS + the three short ones + slack, not a long one
    encoded = encode_sentences(tokenizer, sentences, documents=documents, context="document", max_length=budget)
    row = next(r for r in encoded.examples if r.segments[0].sentence == 2)
    assert row.input_ids == encode_words(tokenizer, ["Peter", "visited", "Brussels"]).input_ids


def test_document_sentence_too_long_for_context_falls_back_to_windows() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences = [["Peter"], random_sentence(random.Random(0), 40)]
    labels = word_labels(sentences)
    encoded = encode_sentences(tokenizer, sentences, labels, max_length=16, documents=[0, 0], context="document")
    assert_every_word_scored_once(encoded, sentences, labels, 16)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 10), min_size=1, max_size=8),
    seed=st.integers(0, 10_000),
    max_length=st.integers(5, 40),
    context=st.sampled_from(["sentence", "document", "document-windows"]),
    name=st.sampled_from(list(TOKENIZERS)),
)
def test_rows_always_fit_and_score_each_word_once(lengths, seed, max_length, context, name) -> None:
    """Whatever the mix of documents, lengths and limits: no row too long, every word scored once."""
    rng = random.Random(seed)
    sentences = [random_sentence(rng, n) for n in lengths]
    documents = sorted(rng.randrange(3) for _ in sentences)
    labels = word_labels(sentences)
    tokenizer = TOKENIZERS[name]()
    encoded = encode_sentences(tokenizer, sentences, labels, max_length, documents=documents, context=context)
    assert_every_word_scored_once(encoded, sentences, labels, max_length)
    if context != "sentence":
        for row in encoded.examples:  # a row only ever shows words of its own document
            (document,) = {documents[segment.sentence] for segment in row.segments}
            own = [s for s, d in zip(sentences, documents, strict=True) if d == document]
            allowed = set(encode_words(tokenizer, [w for s in own for w in s]).input_ids)
            allowed.update(i for s in own for i in encode_words(tokenizer, s).input_ids)
            assert set(row.input_ids) <= allowed | set(tokenizer.all_special_ids)


def test_document_context_row_never_exceeds_max_length_when_joining_changes_tokens() -> None:
    """Regression: a sentence-initial word can take more sub-tokens after a neighbour's space.

    Per-sentence lengths then underestimate the joined row; the row must still fit ``max_length``.
    """
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences = [
        ["Zürich", "1996", ",", "clonidine", ".", "Peter", "in"],
        ["naloxone"],
        ["東京", "naloxone", "1996", "Brussels", "Brussels"],
    ]
    labels = word_labels(sentences)
    for max_length in range(8, 60):
        encoded = encode_sentences(tokenizer, sentences, labels, max_length, documents=[0, 0, 0], context="document")
        assert_every_word_scored_once(encoded, sentences, labels, max_length)


def test_document_windows_read_each_document_as_running_text() -> None:
    tokenizer = TOKENIZERS["byte_bpe"]()
    sentences, documents = TWO_DOCUMENTS
    labels = word_labels(sentences)
    encoded = encode_sentences(tokenizer, sentences, labels, documents=documents, context="document-windows")
    assert_every_word_scored_once(encoded, sentences, labels, 512)
    first, second = encoded.examples  # each document fits: one row each, scoring all of its sentences
    assert first.input_ids == encode_words(tokenizer, [w for s in sentences[:3] for w in s]).input_ids
    assert first.segments == [Segment(0, range(2)), Segment(1, range(2)), Segment(2, range(2))]
    assert second.segments == [Segment(3, range(1))]
    neighbours = encode_sentences(tokenizer, sentences, labels, documents=documents, context="document")
    assert len(neighbours.examples) == 4 and encoded.n_subtokens < neighbours.n_subtokens


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_document_windows_cost_little_more_than_sentences_and_give_context(name: str) -> None:
    """Long documents: windows cost about 1 / (1 - overlap) of the sentence-level tokens (neighbour
    context costs several times more), and a middle window's scored words have context on both sides."""
    tokenizer = TOKENIZERS[name]()
    rng = random.Random(5)
    sentences = [random_sentence(rng, rng.randint(3, 12)) for _ in range(60)]
    documents = [k // 20 for k in range(60)]
    labels = word_labels(sentences)
    cost = {
        context: encode_sentences(tokenizer, sentences, labels, 128, documents=documents, context=context)
        for context in ("sentence", "document", "document-windows")
    }
    windows = cost["document-windows"]
    assert_every_word_scored_once(windows, sentences, labels, 128)
    assert windows.n_subtokens < 1.6 * cost["sentence"].n_subtokens
    assert cost["document"].n_subtokens > 1.5 * windows.n_subtokens
    spanning = [row for row in windows.examples if len(row.segments) > 1]
    assert spanning, "windows must cross sentence boundaries"
    prefix = len(special_token_frame(tokenizer)[0])
    seen: set[int] = set()
    for row in windows.examples:
        document = documents[row.segments[0].sentence]
        if document in seen:  # not the document's first window: unscored context precedes its first scored word
            assert row.label_positions[0] > prefix
        seen.add(document)


def test_document_runs_are_runs_of_equal_ids() -> None:
    assert document_runs([0, 0, 1, 1, 1, 0, 2]) == [range(0, 2), range(2, 5), range(5, 6), range(6, 7)]
    assert document_runs([]) == []

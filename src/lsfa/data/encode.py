"""Sentences to model inputs: windows for long inputs, document context, label ids.

One function serves training, evaluation and prediction, so the model sees its input the same way in
all three. A sentence that does not fit ``max_length`` sub-tokens is cut into overlapping windows on
word boundaries; every word is *scored* in exactly one window, the one where it sits farthest from a
window edge (most context on both sides). Nothing is dropped: a single word longer than a whole window
keeps its first sub-tokens (enough to label it) and the cut is counted in ``EncodedSet.cut_words``.

Three kinds of context (:data:`Context`):

- ``sentence``: each sentence alone.
- ``document``: each sentence in its own row, with its nearest same-document neighbours added (unscored)
  while they fit ``max_length``. Every sentence gets the most context, but each row is about
  ``max_length`` sub-tokens long, so a pass costs about ``max_length / mean sentence length`` times a
  sentence-level pass (10-20x on CoNLL-2003 at 512).
- ``document-windows``: each document is read as one running text and cut into overlapping windows, as
  a long sentence is; every word is scored once, in the window where it has most context, so a row
  scores words of several sentences (its :class:`Segment` s). A pass costs about ``1 / (1 - overlap)``
  times a sentence-level pass, and a word has at least ``overlap / 2`` of a window as context on each
  side, except at a document's edges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lsfa.data.align import (
    IGNORE_INDEX,
    WordEncoding,
    encode_words,
    special_token_frame,
    word_labels_to_subtokens,
)

Context = Literal["sentence", "document", "document-windows"]
"""What a sentence is encoded with: itself, its document neighbours, or its place in document windows."""


@dataclass(frozen=True)
class Segment:
    """Words ``words`` (in order) of input sentence ``sentence``, scored in one row."""

    sentence: int
    words: range


@dataclass
class Example:
    """One model input row.

    ``segments`` say which words of which sentences this row scores, in order: one segment, except for
    document windows, whose rows can span sentences. Their labels sit at ``label_positions`` (first
    sub-tokens, one per scored word, in the same order). ``labels`` holds training labels (or
    :data:`IGNORE_INDEX` everywhere when unlabelled).
    """

    input_ids: list[int]
    labels: list[int]
    segments: list[Segment]
    label_positions: list[int]

    def scored_words(self) -> list[tuple[int, int]]:
        """``(sentence, word)`` of every scored word, in the order of ``label_positions``."""
        return [(segment.sentence, word) for segment in self.segments for word in segment.words]


@dataclass
class EncodedSet:
    """All rows for a list of sentences, plus how many over-long single words had to be cut."""

    examples: list[Example]
    n_sentences: int
    cut_words: int = 0

    @property
    def n_subtokens(self) -> int:
        """Sub-tokens over all rows (context and window overlaps included): what a pass computes."""
        return sum(len(example.input_ids) for example in self.examples)


def concat_encoded(sets: Sequence[EncodedSet]) -> EncodedSet:
    """The rows of several encoded sets as one set, sentence numbers following on (set 2's sentence 0 becomes
    ``sets[0].n_sentences``): texts encoded one by one (to count each one's work) run as one batch."""
    result = EncodedSet(examples=[], n_sentences=0)
    for encoded in sets:
        offset = result.n_sentences
        for example in encoded.examples:
            segments = [Segment(segment.sentence + offset, segment.words) for segment in example.segments]
            result.examples.append(dataclasses.replace(example, segments=segments))
        result.n_sentences += encoded.n_sentences
        result.cut_words += encoded.cut_words
    return result


def scatter_to_words(examples: Sequence[Example], values: Sequence, into: list[list]) -> None:
    """Put per-word values back in their sentences: ``values`` follow the examples' scored words in order
    (each example's segments, i.e. its ``label_positions``); ``into[sentence][word]`` receives them. The one
    rows-to-words mapping, used by training's dev metric and by the predictor."""
    cursor = 0
    for example in examples:
        for sentence, word in example.scored_words():
            into[sentence][word] = values[cursor]
            cursor += 1
    if cursor != len(values):
        raise ValueError(f"{len(values)} values for {cursor} scored words")


def encode_sentences(
    tokenizer,
    sentences: Sequence[Sequence[str]],
    label_ids: Sequence[Sequence[int]] | None = None,
    max_length: int = 512,
    label_all_subtokens: bool = False,
    inside_of: dict[int, int] | None = None,
    documents: Sequence[int] | None = None,
    context: Context = "sentence",
    overlap: float = 0.25,
) -> EncodedSet:
    """Encode word sequences into :class:`Example` rows (see the module docstring).

    ``documents`` gives each sentence's document id (a document is a run of consecutive sentences with
    the same id); without it, every context is ``sentence``.
    """
    prefix, suffix = special_token_frame(tokenizer)
    budget = max(max_length - len(prefix) - len(suffix), 1)
    result = EncodedSet(examples=[], n_sentences=len(sentences))
    if context == "document-windows" and documents is not None:
        for group in document_runs(documents):
            rows, cut = _encode_document_windows(
                tokenizer, sentences, label_ids, group, budget, overlap, label_all_subtokens, inside_of
            )
            result.examples.extend(rows)
            result.cut_words += cut
        return result
    lengths = None
    if context == "document":
        lengths = [len(encode_words(tokenizer, words, add_special_tokens=False)) for words in sentences]
    for index, words in enumerate(sentences):
        labels = label_ids[index] if label_ids is not None else [IGNORE_INDEX] * len(words)
        if not words:
            continue
        if context == "document" and documents is not None and lengths is not None:
            rows = _encode_in_document(
                tokenizer,
                sentences,
                documents,
                lengths,
                index,
                labels,
                budget,
                label_all_subtokens,
                inside_of,
            )
            if rows is not None:
                result.examples.extend(rows)
                continue
        rows, cut = _encode_windows(tokenizer, words, labels, index, budget, overlap, label_all_subtokens, inside_of)
        result.examples.extend(rows)
        result.cut_words += cut
    return result


def _encode_windows(tokenizer, words, labels, sentence, budget, overlap, label_all, inside_of):
    """Rows for one sentence without document context: one row, or overlapping windows.

    Windows are slices of the whole sentence's sub-tokens (framed by the special tokens), so a word has
    the same sub-tokens in every window as in running text.
    """
    whole = encode_words(tokenizer, words)
    sizes = _subtoken_counts(whole, len(words))
    if sum(sizes) <= budget:
        row_labels = word_labels_to_subtokens(whole, labels, label_all, inside_of)
        segments = [Segment(sentence, range(len(words)))]
        return [Example(whole.input_ids, row_labels, segments, list(whole.first_subtoken))], 0
    prefix, suffix = special_token_frame(tokenizer)
    windows = _plan_windows(sizes, budget, overlap)
    owners = _assign_owners(windows, len(words))
    rows, cut = [], 0
    for window_index, (start, stop) in enumerate(windows):
        scored = [w for w in range(start, stop) if owners[w] == window_index]
        if not scored:
            continue
        encoding, was_cut = _slice(whole, start, stop, budget, prefix, suffix)
        cut += was_cut
        local = range(scored[0] - start, scored[-1] + 1 - start)
        row_labels = word_labels_to_subtokens(encoding, labels[start:stop], label_all, inside_of, local)
        positions = [encoding.first_subtoken[w] for w in local]
        segments = [Segment(sentence, range(scored[0], scored[-1] + 1))]
        rows.append(Example(encoding.input_ids, row_labels, segments, positions))
    return rows, cut


def _slice(whole: WordEncoding, start: int, stop: int, budget: int, prefix, suffix) -> tuple[WordEncoding, int]:
    """The sub-tokens of words ``start…stop-1`` framed by special tokens, cut to ``budget`` if one word is longer."""
    positions = [k for k, w in enumerate(whole.word_ids) if w is not None and start <= w < stop]
    was_cut = int(len(positions) > budget)
    positions = positions[:budget]
    ids = list(prefix) + [whole.input_ids[k] for k in positions] + list(suffix)
    word_ids = [None] * len(prefix) + [whole.word_ids[k] - start for k in positions] + [None] * len(suffix)
    new_position = {old: len(prefix) + k for k, old in enumerate(positions)}
    first = [new_position.get(whole.first_subtoken[w], len(prefix)) for w in range(start, stop)]
    return WordEncoding(ids, word_ids, first), was_cut


def _subtoken_counts(encoding: WordEncoding, n_words: int) -> list[int]:
    sizes = [0] * n_words
    for word in encoding.word_ids:
        if word is not None:
            sizes[word] += 1
    return sizes


def _plan_windows(sizes: list[int], budget: int, overlap: float) -> list[tuple[int, int]]:
    """Word ranges of at most ``budget`` sub-tokens, each starting ``(1 - overlap)`` of a window later."""
    windows: list[tuple[int, int]] = []
    start = 0
    stride = max(int(budget * (1 - overlap)), 1)
    while start < len(sizes):
        stop, used = start, 0
        while stop < len(sizes) and (used + sizes[stop] <= budget or stop == start):
            used += sizes[stop]
            stop += 1
        windows.append((start, stop))
        if stop >= len(sizes):
            break
        advanced, next_start = 0, start
        while next_start < stop - 1 and advanced + sizes[next_start] <= stride:
            advanced += sizes[next_start]
            next_start += 1
        start = max(next_start, start + 1)
    return windows


def _assign_owners(windows: list[tuple[int, int]], n_words: int) -> list[int]:
    """For every word, the window where it is farthest from a cut edge (ties: the earlier window).

    A window edge at the start or end of the sentence is not a cut: nothing lies beyond it.
    """
    owners = [-1] * n_words
    best = [-1.0] * n_words
    for index, (start, stop) in enumerate(windows):
        for word in range(start, stop):
            left = word - start if start > 0 else float("inf")
            right = stop - 1 - word if stop < n_words else float("inf")
            if min(left, right) > best[word]:
                best[word], owners[word] = min(left, right), index
    return owners


def _encode_in_document(tokenizer, sentences, documents, lengths, index, labels, budget, label_all, inside_of):
    """One row: the sentence plus its nearest same-document neighbours that fit; ``None`` if too long."""
    if lengths[index] > budget:
        return None
    first, last, used = index, index, lengths[index]
    grew = True
    while grew:
        grew = False
        for candidate in (first - 1, last + 1):
            if 0 <= candidate < len(sentences) and documents[candidate] == documents[index]:
                if candidate in range(first, last + 1) or used + lengths[candidate] > budget:
                    continue
                used += lengths[candidate]
                first, last = min(first, candidate), max(last, candidate)
                grew = True
    while True:
        # Per-sentence lengths are estimates: a sentence-initial word can take more sub-tokens once a
        # neighbour (and a space) precedes it. Drop the farthest neighbour until the row really fits.
        words = [word for k in range(first, last + 1) for word in sentences[k]]
        encoding = encode_words(tokenizer, words)
        if sum(w is not None for w in encoding.word_ids) <= budget or first == last:
            break
        if index - first >= last - index:
            first += 1
        else:
            last -= 1
    offset = sum(len(sentences[k]) for k in range(first, index))
    own = range(offset, offset + len(sentences[index]))
    padded_labels = [IGNORE_INDEX] * offset + list(labels) + [IGNORE_INDEX] * (len(words) - offset - len(labels))
    row_labels = word_labels_to_subtokens(encoding, padded_labels, label_all, inside_of, scored_words=own)
    positions = [encoding.first_subtoken[w] for w in own]
    segments = [Segment(index, range(len(sentences[index])))]
    return [Example(encoding.input_ids, row_labels, segments, positions)]


def document_runs(documents: Sequence[int]) -> list[range]:
    """The sentence ranges of the documents: runs of consecutive equal ids."""
    runs: list[range] = []
    start = 0
    for index in range(1, len(documents) + 1):
        if index == len(documents) or documents[index] != documents[start]:
            runs.append(range(start, index))
            start = index
    return runs


def _encode_document_windows(tokenizer, sentences, label_ids, group, budget, overlap, label_all, inside_of):
    """Rows for one document read as running text: its words windowed like one long sentence, then each
    row's scored words split back into per-sentence :class:`Segment` s."""
    owners = [(index, word) for index in group for word in range(len(sentences[index]))]
    if not owners:
        return [], 0
    words = [sentences[index][word] for index, word in owners]
    labels = [IGNORE_INDEX if label_ids is None else label_ids[index][word] for index, word in owners]
    rows, cut = _encode_windows(tokenizer, words, labels, group.start, budget, overlap, label_all, inside_of)
    for row in rows:
        (flat,) = row.segments
        row.segments = _split_by_sentence([owners[k] for k in flat.words])
    return rows, cut


def _split_by_sentence(scored: list[tuple[int, int]]) -> list[Segment]:
    """Consecutive ``(sentence, word)`` pairs grouped into one segment per sentence."""
    segments: list[Segment] = []
    for sentence, word in scored:
        if segments and segments[-1].sentence == sentence:
            last = segments[-1]
            segments[-1] = Segment(sentence, range(last.words.start, word + 1))
        else:
            segments.append(Segment(sentence, range(word, word + 1)))
    return segments

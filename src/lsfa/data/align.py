"""Words to sub-tokens and back, through character offsets.

Why offsets: byte-level BPE tokenizers (GPT-2, SmolLM2, Qwen, Llama 3) fold the leading space into the
next token (``"ĠParis"``). Tokenising pre-split words (``is_split_into_words=True``) drops that marker, so
every word gets the sub-tokens of a sentence-initial word — not what the model saw in pre-training. We
instead join the words with single spaces, tokenise the running text with offsets, and assign each
sub-token to the word whose characters it covers. Every word is guaranteed at least one sub-token;
words the tokenizer would swallow (empty strings, pure whitespace or invisible format characters, real
cases in BC5CDR) are shown to the model as :data:`PLACEHOLDER` and still get their own label.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from lsfa.errors import LsfaError

PLACEHOLDER = "\ufffd"
"""What an empty or invisible word is replaced with in the model's input text (U+FFFD, "lost character")."""

SPACE_MARKERS = "Ġ▁ "
"""How tokenizers spell a space inside a sub-token (byte-level BPE ``Ġ``, SentencePiece/Metaspace ``▁``)."""

IGNORE_INDEX = -100
"""Label id the loss ignores (PyTorch ``CrossEntropyLoss`` default)."""


@dataclass
class WordEncoding:
    """Sub-tokens of a run of words.

    ``word_ids[k]`` is the index (into the words passed in) of the word sub-token ``k`` belongs to, or
    ``None`` for special tokens. ``first_subtoken[w]`` is the position of word ``w``'s first sub-token.
    """

    input_ids: list[int]
    word_ids: list[int | None]
    first_subtoken: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def model_text_for(word: str) -> str:
    """The surface a word is given to the model as: itself, or the placeholder when it is invisible."""
    if not word or all(_is_invisible(ch) for ch in word):
        return PLACEHOLDER
    return word


def _is_invisible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Zs", "Zl", "Zp", "Cn", "Co", "Cs"}


def join_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join words with single spaces; return the text and each word's ``(start, end)`` in it."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    position = 0
    for index, word in enumerate(words):
        if index:
            pieces.append(" ")
            position += 1
        surface = model_text_for(word)
        pieces.append(surface)
        spans.append((position, position + len(surface)))
        position += len(surface)
    return "".join(pieces), spans


def encode_words(tokenizer, words: Sequence[str], add_special_tokens: bool = True) -> WordEncoding:
    """Tokenise ``words`` as running text and map every sub-token to its word.

    Needs a fast tokenizer (offset mapping). Sub-tokens that cover no word character (a lone space
    token some tokenizers emit) are attached to the following word, so no input id is dropped.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise LsfaError("lsfa needs a fast tokenizer (with character offsets) to align words and sub-tokens")
    text, spans = join_words(words)
    encoded = tokenizer(
        text,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    input_ids = list(encoded["input_ids"])
    special = _special_positions(tokenizer, input_ids, encoded, add_special_tokens)
    word_ids, covering = _assign_words(encoded["offset_mapping"], spans, special)
    markers = _is_space_marker(encoded.tokens()) if hasattr(encoded, "tokens") else [False] * len(input_ids)
    content = [cover and not marker for cover, marker in zip(covering, markers, strict=True)]
    first = _first_subtokens(word_ids, len(words), preferred=content, acceptable=covering)
    if any(position < 0 for position in first):
        return _encode_word_by_word(tokenizer, words, add_special_tokens)
    return WordEncoding(input_ids=input_ids, word_ids=word_ids, first_subtoken=first)


def _is_space_marker(tokens: Sequence[str]) -> list[bool]:
    """Which sub-tokens are only a space marker (``Ġ``, ``▁``): a word's label never goes on one if avoidable.

    Metaspace tokenizers (Llama 2, the tiny test one) give the ``▁`` they prepend to the first word the
    offsets of that word's first character, so offsets alone would put the word's label on a lone ``▁``.
    """
    return [bool(token) and not token.strip(SPACE_MARKERS) for token in tokens]


def _special_positions(tokenizer, input_ids, encoded, add_special_tokens: bool) -> set[int]:
    if not add_special_tokens:
        return set()
    # A fast tokenizer marks the tokens its post-processor added (BOS/CLS/SEP) with sequence id None.
    sequence_ids = encoded.sequence_ids() if hasattr(encoded, "sequence_ids") else None
    if sequence_ids is not None:
        return {k for k, sid in enumerate(sequence_ids) if sid is None}
    specials = set(tokenizer.all_special_ids)
    return {k for k, token_id in enumerate(input_ids) if token_id in specials}


def _assign_words(offsets, spans: list[tuple[int, int]], special: set[int]) -> tuple[list[int | None], list[bool]]:
    """Word index per sub-token by character overlap; uncovered sub-tokens join the next word.

    Also says which sub-tokens cover characters of their word: a word's label goes on the first of
    those (a lone ``Ġ`` space token before ``1996`` must not carry the label of ``1996``).
    """
    word_ids: list[int | None] = []
    covering: list[bool] = []
    pending: list[int] = []
    cursor = 0
    for position, (start, end) in enumerate(offsets):
        if position in special:
            word_ids.append(None)
            covering.append(False)
            continue
        word = None
        if start < end:
            while cursor < len(spans) and spans[cursor][1] <= start:
                cursor += 1
            word = _overlapping_word(spans, cursor, start, end)
        word_ids.append(word)
        covering.append(word is not None)
        if word is None:
            pending.append(position)
        else:
            for earlier in pending:
                word_ids[earlier] = word
            pending.clear()
    if pending and spans:
        for earlier in pending:
            word_ids[earlier] = len(spans) - 1
    return word_ids, covering


def _overlapping_word(spans, cursor: int, start: int, end: int) -> int | None:
    if cursor >= len(spans):
        return None
    word_start, word_end = spans[cursor]
    if start < word_end and end > word_start:
        return cursor
    return None


def _first_subtokens(
    word_ids: list[int | None],
    n_words: int,
    preferred: list[bool] | None = None,
    acceptable: list[bool] | None = None,
) -> list[int]:
    """Each word's first ``preferred`` sub-token, else its first ``acceptable`` one (-1: none; None: any)."""
    best = [-1] * n_words
    fallback = [-1] * n_words
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        if fallback[word] < 0 and (acceptable is None or acceptable[position]):
            fallback[word] = position
        if best[word] < 0 and (preferred is None or preferred[position]):
            best[word] = position
    return [chosen if chosen >= 0 else other for chosen, other in zip(best, fallback, strict=True)]


def _encode_word_by_word(tokenizer, words: Sequence[str], add_special_tokens: bool) -> WordEncoding:
    """Fallback when some word got no sub-token of its own: encode each word with its leading space."""
    input_ids: list[int] = []
    word_ids: list[int | None] = []
    for index, word in enumerate(words):
        surface = model_text_for(word)
        ids = tokenizer(surface if index == 0 else " " + surface, add_special_tokens=False)["input_ids"]
        if not ids:
            ids = [tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0]
        input_ids.extend(ids)
        word_ids.extend([index] * len(ids))
    if add_special_tokens:
        prefix, suffix = special_token_frame(tokenizer)
        input_ids = prefix + input_ids + suffix
        word_ids = [None] * len(prefix) + word_ids + [None] * len(suffix)
    markers = _is_space_marker(tokenizer.convert_ids_to_tokens(input_ids))
    first = _first_subtokens(word_ids, len(words), preferred=[not marker for marker in markers])
    return WordEncoding(input_ids, word_ids, first)


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text (e.g. ``[BOS]`` or ``[CLS] … [SEP]``)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    framed = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return list(framed[:start]), list(framed[start + len(bare) :])
    return [], []


def word_labels_to_subtokens(
    encoding: WordEncoding,
    word_label_ids: Sequence[int],
    label_all_subtokens: bool = False,
    inside_of: dict[int, int] | None = None,
    scored_words: range | None = None,
) -> list[int]:
    """Label ids per sub-token: the first sub-token of each word carries the word's label.

    With ``label_all_subtokens`` the continuation sub-tokens are labelled too (a ``B-X`` word's later
    pieces get ``I-X`` through ``inside_of``); otherwise they get :data:`IGNORE_INDEX`. A lone space
    token before the first sub-token is never labelled (it is not part of the word's text). Words outside
    ``scored_words`` (document context, window overlap) are never labelled.
    """
    labels = [IGNORE_INDEX] * len(encoding.input_ids)
    for position, word in enumerate(encoding.word_ids):
        if word is None or (scored_words is not None and word not in scored_words):
            continue
        label = word_label_ids[word]
        if position == encoding.first_subtoken[word]:
            labels[position] = label
        elif label_all_subtokens and position > encoding.first_subtoken[word]:
            labels[position] = (inside_of or {}).get(label, label)
    return labels

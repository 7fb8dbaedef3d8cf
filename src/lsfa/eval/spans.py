"""Entity spans from word-level tag sequences, bit-for-bit compatible with seqeval.

Two decoders, chosen by ``mode``:

``"strict"``
    seqeval's ``mode="strict"`` (``seqeval.scheme.Tokens.entities``): an entity must start with a tag the
    scheme allows to start one and end with an allowed transition, otherwise it is dropped. In IOB2 a lone
    ``I-PER`` is *not* an entity; in BIOES ``B-PER O`` is not one either. Reported scores therefore
    penalise ill-formed predictions, which is what the paper and most NER papers report.
``"conlleval"``
    seqeval's default mode (``seqeval.metrics.sequence_labeling.get_entities``), a port of ``conlleval.pl``:
    lenient, any ``I-X`` after something else opens an entity, so ill-formed output is repaired.

The decoders are ports of seqeval's transition tables rather than re-derivations, because "almost
seqeval" scores are worse than useless when comparing with published numbers; the property tests in
``tests/eval`` keep them identical. Both are pure functions of one sentence's tags (seqeval's default
mode flattens sentences with ``O`` separators; for well-formed tags that gives exactly the per-sentence
entities, see the tests).

Tags must be ``O`` or ``<prefix>-<TYPE>`` with a non-empty type that does not start or end with ``-``
(seqeval silently turns e.g. ``B`` into a type ``_`` and strips hyphens differently per mode; we refuse
such tags with :class:`InvalidTagError` instead of scoring garbage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lsfa.data.schemes import PREFIXES, SCHEME_PREFIXES, Span, normalise_scheme
from lsfa.errors import LsfaError

Mode = Literal["strict", "conlleval"]
MODES: tuple[str, ...] = ("strict", "conlleval")

_ANY, _SAME, _DIFF = "any", "same", "diff"
_Pattern = tuple[str, str, str]  # (previous prefixes, current prefixes, type condition)

# seqeval.scheme tables, transcribed: each row is (previous prefix set, current prefix set, type test).
_STRICT_TABLES: dict[str, dict[str, tuple[_Pattern, ...]]] = {
    "IOB1": {
        "start": (("O", "I", _ANY), ("I", "I", _DIFF), ("B", "I", _ANY), ("I", "B", _SAME), ("B", "B", _SAME)),
        "inside": (("B", "I", _SAME), ("I", "I", _SAME)),
        "end": (
            ("I", "I", _DIFF),
            ("I", "O", _ANY),
            ("I", "B", _ANY),
            ("B", "O", _ANY),
            ("B", "I", _DIFF),
            ("B", "B", _SAME),
        ),
    },
    "IOB2": {
        "start": (("IOB", "B", _ANY),),
        "inside": (("B", "I", _SAME), ("I", "I", _SAME)),
        "end": (
            ("I", "O", _ANY),
            ("I", "I", _DIFF),
            ("I", "B", _ANY),
            ("B", "O", _ANY),
            ("B", "I", _DIFF),
            ("B", "B", _ANY),
        ),
    },
    "BIOES": {  # seqeval.scheme.IOBES
        "start": (("IOBES", "B", _ANY), ("IOBES", "S", _ANY)),
        "inside": (("B", "I", _SAME), ("B", "E", _SAME), ("I", "I", _SAME), ("I", "E", _SAME)),
        "end": (("S", "IOBES", _ANY), ("E", "IOBES", _ANY)),
    },
}


class InvalidTagError(LsfaError, ValueError):
    """A tag that is malformed or not allowed by the scheme; ``position`` is its 0-based word index."""

    def __init__(self, message: str, tag: str, position: int, sentence: int | None = None):
        self.tag = tag
        self.position = position
        self.sentence = sentence
        self.reason = message
        super().__init__(message if sentence is None else f"sentence {sentence}, word {position}: {message}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise LsfaError(f"unknown evaluation mode {mode!r}; use one of {', '.join(MODES)}")


def allowed_prefixes(scheme: str = "IOB2", mode: Mode = "strict") -> str:
    """The entity prefixes accepted in this scheme and mode (``O`` is always accepted)."""
    _check_mode(mode)
    canonical = normalise_scheme(scheme)
    return SCHEME_PREFIXES[canonical] if mode == "strict" else PREFIXES  # seqeval's default mode reads all four


def check_tags(tags: Sequence[str], scheme: str = "IOB2", mode: Mode = "strict") -> list[tuple[str, str]]:
    """Validate ``tags`` and split each into ``(prefix, type)`` (``("O", "_")`` for ``O``, as seqeval does).

    Raises :class:`InvalidTagError` naming the first bad tag. Only the *form* of each tag is checked;
    ill-formed sequences (``O I-PER``) are legal input whose scoring is the decoder's business.
    """
    prefixes = allowed_prefixes(scheme, mode)
    parsed: list[tuple[str, str]] = []
    for position, tag in enumerate(tags):
        if tag == "O":
            parsed.append(("O", "_"))
            continue
        if not isinstance(tag, str) or len(tag) < 3 or tag[1] != "-":
            raise InvalidTagError(f"malformed tag {tag!r} (expected O or PREFIX-TYPE)", str(tag), position)
        entity_type = tag[2:]
        if entity_type.startswith("-") or entity_type.endswith("-"):
            raise InvalidTagError(f"malformed tag {tag!r} (type may not start or end with '-')", tag, position)
        if tag[0] not in prefixes:
            allowed = ", ".join(f"{p}-" for p in prefixes)
            raise InvalidTagError(
                f"tag {tag!r} is not allowed in {mode} {normalise_scheme(scheme)} (allowed: {allowed}, O)",
                tag,
                position,
            )
        parsed.append((tag[0], entity_type))
    return parsed


def get_spans(tags: Sequence[str], scheme: str = "IOB2", mode: Mode = "strict") -> list[Span]:
    """The entities of one sentence's tags, in order, exactly as seqeval decodes them.

    ``scheme`` selects the strict transition table (``IOB1``, ``IOB2``, ``BIOES``/``IOBES``); the
    ``conlleval`` mode, like seqeval's default, reads ``B/I/E/S`` whatever the scheme.
    """
    parsed = check_tags(tags, scheme, mode)
    if mode == "strict":
        return _strict_spans(parsed, _STRICT_TABLES[normalise_scheme(scheme)])
    return _conlleval_spans(parsed)


def _matches(patterns: tuple[_Pattern, ...], prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """seqeval ``Token.check_patterns``: does the (prev, cur) transition match any row?"""
    for prev_prefixes, cur_prefixes, condition in patterns:
        type_ok = condition == _ANY or (condition == _SAME) == (prev[1] == cur[1])
        if prev[0] in prev_prefixes and cur[0] in cur_prefixes and type_ok:
            return True
    return False


def _strict_spans(parsed: list[tuple[str, str]], table: dict[str, tuple[_Pattern, ...]]) -> list[Span]:
    """Port of ``seqeval.scheme.Tokens.entities`` (a trailing ``O`` closes the last entity)."""
    outside = ("O", "_")
    extended = [*parsed, outside]
    spans: list[Span] = []
    i, prev = 0, outside
    while i < len(extended):
        token = extended[i]
        if _matches(table["start"], prev, token):
            end = i + 1
            inside_prev = token
            while end < len(extended) and _matches(table["inside"], inside_prev, extended[end]):
                inside_prev = extended[end]
                end += 1
            # the appended O is never "inside", so end always stays within `extended`
            if _matches(table["end"], extended[end - 1], extended[end]):
                spans.append(Span(i, end, token[1]))
            i = end
        else:
            i += 1
        prev = extended[i - 1]
    return spans


def _conlleval_spans(parsed: list[tuple[str, str]]) -> list[Span]:
    """Port of ``seqeval.metrics.sequence_labeling.get_entities`` for one sentence."""
    spans: list[Span] = []
    prev_prefix, prev_type, begin = "O", "", 0
    for i, (prefix, entity_type) in enumerate([*parsed, ("O", "_")]):
        if _chunk_ends(prev_prefix, prefix, prev_type, entity_type):
            spans.append(Span(begin, i, prev_type))
        if _chunk_starts(prev_prefix, prefix, prev_type, entity_type):
            begin = i
        prev_prefix, prev_type = prefix, entity_type
    return spans


def _chunk_ends(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """seqeval ``end_of_chunk``: did an entity end on the previous word?"""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix != "O" and prev_type != entity_type


def _chunk_starts(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """seqeval ``start_of_chunk``: does an entity start on this word?"""
    if prefix in ("B", "S"):
        return True
    if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix != "O" and prev_type != entity_type


def spans_of_all(
    tag_sequences: Sequence[Sequence[str]], scheme: str = "IOB2", mode: Mode = "strict"
) -> list[list[Span]]:
    """:func:`get_spans` of every sentence; an :class:`InvalidTagError` gains a ``sentence`` index."""
    result: list[list[Span]] = []
    for index, tags in enumerate(tag_sequences):
        try:
            result.append(get_spans(tags, scheme, mode))
        except InvalidTagError as error:
            raise InvalidTagError(error.reason, error.tag, error.position, sentence=index) from None
    return result

"""Tag schemes (IOB1, IOB2, BIOES) and lossless conversion between them.

Corpora come in different schemes, but everything downstream (training labels, metrics) works on IOB2,
so readers normalise through here. Conversion goes through entity spans: decode the tags into
``(start, end, type)`` spans, then encode the spans in the target scheme. For a sequence that is valid
under its scheme this round trip is exact; invalid sequences are decoded leniently the way conlleval and
seqeval do (an ``I-X`` that cannot continue an entity starts one), and :func:`validate` reports them.

All functions are pure and work on ``list[str]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from lsfa.errors import LsfaError

IOB1 = "IOB1"
IOB2 = "IOB2"
BIOES = "BIOES"

SCHEME_ALIASES: dict[str, str] = {"IOB1": IOB1, "IOB2": IOB2, "BIO": IOB2, "BIOES": BIOES, "IOBES": BIOES}
"""Accepted scheme names (case-insensitive) and the canonical name each stands for."""
PREFIXES = "BIES"
"""Every entity prefix of the three schemes (what a lenient reader such as conlleval accepts in any of them)."""
SCHEME_PREFIXES: dict[str, str] = {IOB1: "BI", IOB2: "BI", BIOES: "BIES"}
"""The entity prefixes each scheme has (``O`` aside): the one table readers, scorers and decoders check against."""


class Span(NamedTuple):
    """One entity: words ``start`` to ``end - 1`` of a sentence (end exclusive) and its type. A tuple, so
    ``(0, 2, "PER")`` compares equal to it."""

    start: int
    end: int
    type: str

    @property
    def length(self) -> int:
        """Number of words covered."""
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        """Whether the two spans share at least one word."""
        return self.start < other.end and other.start < self.end


LENGTH_BUCKETS: tuple[str, ...] = ("1", "2", "3+")
"""Entity lengths in words as corpus statistics, scores by length and the report's tables group them."""


def length_bucket(span: Span) -> str:
    """The :data:`LENGTH_BUCKETS` entry of a span: ``"1"``, ``"2"`` or ``"3+"`` words."""
    return LENGTH_BUCKETS[min(span.length, len(LENGTH_BUCKETS)) - 1]


class UnknownSchemeError(LsfaError, ValueError):
    """A scheme name that is none of :data:`SCHEME_ALIASES`."""


def normalise_scheme(name: str) -> str:
    """The canonical name of a scheme (``"iobes"`` -> ``"BIOES"``, ``"bio"`` -> ``"IOB2"``)."""
    canonical = SCHEME_ALIASES.get(str(name).strip().upper())
    if canonical is None:
        raise UnknownSchemeError(f"unknown tag scheme {name!r}; use one of {', '.join(SCHEME_ALIASES)}")
    return canonical


@lru_cache(maxsize=4096)
def parse_tag(tag: str) -> tuple[str, str]:
    """Split a tag into ``(prefix, type)``: ``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``.

    Only the first hyphen separates, so types may contain hyphens (``B-Gene-or-protein``). Anything else
    (``X-PER``, ``B-``, ``PER``, ``""``) raises ValueError: silently treating it as ``O`` would drop labels.
    Cached because a corpus has only a handful of distinct tags but hundreds of thousands of words.
    """
    if tag == "O":
        return "O", ""
    prefix, hyphen, entity_type = tag.partition("-")
    known_prefix = len(prefix) == 1 and prefix in PREFIXES
    if not hyphen or not known_prefix or not entity_type or entity_type != entity_type.strip():
        raise ValueError(f"unknown tag {tag!r}: expected 'O' or B-/I-/E-/S- followed by an entity type")
    return prefix, entity_type


def entity_types(tags: Iterable[str]) -> list[str]:
    """Entity types of tags or labels in first-seen order: ``["O", "B-PER", "I-PER", "B-LOC"]`` -> ``["PER", "LOC"]``
    (the one definition: corpora sort it, taggers and prompts keep label order)."""
    types: dict[str, None] = {}
    for tag in tags:
        if tag != "O":
            types.setdefault(parse_tag(tag)[1], None)
    return list(types)


def label_scheme(labels: Iterable[str]) -> str:
    """The scheme of a tagger's label set: BIOES when it has ``E-``/``S-`` labels, else IOB2 (what lsfa trains on).
    Why not :func:`detect_scheme`: a label list is a set, not a sequence, so its order says nothing about IOB1."""
    return BIOES if any(parse_tag(label)[0] in ("E", "S") for label in labels if label != "O") else IOB2


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of a corpus from its tags.

    Any ``E-``/``S-`` means BIOES. Otherwise a corpus is IOB1 when some ``I-`` opens an entity and no
    ``B-`` ever opens one (in IOB1 ``B-`` only separates two adjacent entities of the same type). A
    corpus with both patterns is an IOB2 corpus with a few errors, and one without entities is IOB2.
    """
    i_opens_entity = False
    b_opens_entity = False
    for tags in tag_sequences:
        previous_type = ""
        for tag in tags:
            prefix, entity_type = parse_tag(tag)
            if prefix in ("E", "S"):
                return BIOES
            if prefix == "I" and entity_type != previous_type:
                i_opens_entity = True
            elif prefix == "B" and entity_type != previous_type:
                b_opens_entity = True
            previous_type = entity_type
    return IOB1 if i_opens_entity and not b_opens_entity else IOB2


def to_spans(tags: Sequence[str]) -> list[Span]:
    """Decode tags of any of the three schemes into entity spans.

    One lenient decoder serves all schemes: ``B``/``S`` always open an entity, ``I``/``E`` continue an
    entity of the same type or else open one, ``E``/``S`` close the entity they are in, ``O`` closes.
    """
    spans: list[Span] = []
    start, current_type = -1, ""
    for index, tag in enumerate(tags):
        prefix, entity_type = parse_tag(tag)
        if prefix == "O" or prefix in ("B", "S") or entity_type != current_type:
            if current_type:
                spans.append(Span(start, index, current_type))
            start, current_type = index, entity_type
        if prefix in ("E", "S"):
            spans.append(Span(start, index + 1, current_type))
            start, current_type = -1, ""
    if current_type:
        spans.append(Span(start, len(tags), current_type))
    return spans


def from_spans(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Encode non-overlapping spans as ``length`` tags in ``scheme``."""
    scheme = normalise_scheme(scheme)
    tags = ["O"] * length
    previous_end, previous_type = -1, ""
    for start, end, entity_type in sorted(spans):
        if scheme == BIOES and end - start == 1:
            tags[start] = f"S-{entity_type}"
        else:
            tags[start:end] = [f"I-{entity_type}"] * (end - start)
            if scheme in (IOB2, BIOES):
                tags[start] = f"B-{entity_type}"
            elif previous_end == start and previous_type == entity_type:
                tags[start] = f"B-{entity_type}"  # IOB1 marks only a boundary between same-type neighbours
            if scheme == BIOES:
                tags[end - 1] = f"E-{entity_type}"
        previous_end, previous_type = end, entity_type
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Rewrite ``tags`` from scheme ``source`` into scheme ``target``.

    ValueError if a tag uses a prefix ``source`` does not have (``E-`` in IOB2 usually means the source
    scheme was given wrongly, and guessing would corrupt the labels).
    """
    source, target = normalise_scheme(source), normalise_scheme(target)
    allowed = SCHEME_PREFIXES[source]
    for index, tag in enumerate(tags):
        prefix, _ = parse_tag(tag)
        if prefix != "O" and prefix not in allowed:
            raise ValueError(f"tag {tag!r} at position {index} is not an {source} tag")
    return from_spans(to_spans(tags), len(tags), target)


def validate(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """Every invalid transition in ``tags`` under the strict rules of ``scheme``, as ``(index, message)``.

    IOB2: ``I-X`` must follow ``B-X``/``I-X``. IOB1: ``B-X`` must follow ``B-X``/``I-X``. BIOES: ``I-X``
    and ``E-X`` must follow ``B-X``/``I-X``, and ``B-X``/``I-X`` must be followed by ``I-X``/``E-X``.
    Tags with prefixes foreign to the scheme are reported too. An empty list means the sequence is valid.
    """
    scheme = normalise_scheme(scheme)
    allowed = SCHEME_PREFIXES[scheme]
    parsed = [parse_tag(tag) for tag in tags]
    problems: list[tuple[int, str]] = []
    for index, (prefix, entity_type) in enumerate(parsed):
        previous = parsed[index - 1] if index > 0 else ("O", "")
        following = parsed[index + 1] if index + 1 < len(parsed) else ("O", "")
        continues = previous[0] in ("B", "I") and previous[1] == entity_type
        if prefix != "O" and prefix not in allowed:
            problems.append((index, f"{tags[index]} is not an {scheme} tag"))
        elif scheme == IOB2 and prefix == "I" and not continues:
            problems.append((index, f"{tags[index]} after {_describe(tags, index - 1)} (must follow B- or I-)"))
        elif scheme == IOB1 and prefix == "B" and not continues:
            problems.append(
                (index, f"{tags[index]} after {_describe(tags, index - 1)} (IOB1 uses B- only after I-/B-)")
            )
        elif scheme == BIOES:
            if prefix in ("I", "E") and not continues:
                problems.append((index, f"{tags[index]} after {_describe(tags, index - 1)} (must follow B-/I-)"))
            elif prefix in ("B", "I") and not (following[0] in ("I", "E") and following[1] == entity_type):
                problems.append(
                    (index, f"{tags[index]} before {_describe(tags, index + 1)} (must be followed by I-/E-)")
                )
    return problems


def _describe(tags: Sequence[str], index: int) -> str:
    """The tag at ``index`` for an error message, or where the sentence starts or ends."""
    if index < 0:
        return "sentence start"
    if index >= len(tags):
        return "sentence end"
    return tags[index]

"""Tag schemes: parsing, detection, validation and lossless conversion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsfa.data.schemes import (
    BIOES,
    IOB1,
    IOB2,
    convert,
    detect_scheme,
    from_spans,
    normalise_scheme,
    parse_tag,
    to_spans,
    validate,
)

# --- parse_tag ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("O", ("O", "")),
        ("B-PER", ("B", "PER")),
        ("I-Disease", ("I", "Disease")),
        ("E-LOC", ("E", "LOC")),
        ("S-MISC", ("S", "MISC")),
        ("B-Gene-or-protein", ("B", "Gene-or-protein")),
    ],
)
def test_parse_tag_accepts_well_formed_tags(tag: str, expected: tuple[str, str]) -> None:
    assert parse_tag(tag) == expected


@pytest.mark.parametrize("tag", ["X-PER", "B-", "PER", "", "o", "O-PER", "B PER", "b-PER", "B- PER"])
def test_parse_tag_rejects_unknown_shapes(tag: str) -> None:
    with pytest.raises(ValueError, match="unknown tag"):
        parse_tag(tag)


def test_scheme_names_are_case_insensitive_with_aliases() -> None:
    assert normalise_scheme("iobes") == BIOES
    assert normalise_scheme("BIO") == IOB2
    assert normalise_scheme("iob1") == IOB1
    with pytest.raises(ValueError, match="unknown tag scheme"):
        normalise_scheme("IO")


# --- detect_scheme -------------------------------------------------------------------------------------


def test_detect_bioes_from_end_or_single_tags() -> None:
    assert detect_scheme([["O", "S-PER"]]) == BIOES
    assert detect_scheme([["B-PER", "E-PER"], ["O"]]) == BIOES


def test_detect_iob1_when_i_opens_entities_and_b_only_separates() -> None:
    assert detect_scheme([["I-PER", "I-PER", "O", "I-LOC"], ["I-PER", "B-PER"]]) == IOB1


def test_detect_iob2_by_default_and_for_iob2_with_a_few_errors() -> None:
    assert detect_scheme([["B-PER", "I-PER", "O"]]) == IOB2
    assert detect_scheme([["O", "O"]]) == IOB2
    assert detect_scheme([]) == IOB2
    # B- opening entities is IOB2 evidence; a stray I- opening one is an error in an IOB2 corpus.
    assert detect_scheme([["B-PER", "O", "I-LOC"]]) == IOB2


# --- validate -----------------------------------------------------------------------------------------


def test_validate_iob2_rejects_i_after_o_and_type_change() -> None:
    assert [index for index, _ in validate(["O", "I-PER"], IOB2)] == [1]
    assert [index for index, _ in validate(["I-PER"], IOB2)] == [0]
    assert [index for index, _ in validate(["B-PER", "I-LOC"], IOB2)] == [1]
    assert validate(["B-PER", "I-PER", "B-PER", "O"], IOB2) == []


def test_validate_iob1_rejects_b_that_does_not_separate_same_type() -> None:
    assert [index for index, _ in validate(["O", "B-PER"], IOB1)] == [1]
    assert [index for index, _ in validate(["I-LOC", "B-PER"], IOB1)] == [1]
    assert validate(["I-PER", "B-PER", "O", "I-LOC"], IOB1) == []


def test_validate_bioes_requires_closed_entities() -> None:
    problems = validate(["B-PER", "O"], BIOES)
    assert [index for index, _ in problems] == [0]
    assert "B-PER before O" in problems[0][1]
    assert [index for index, _ in validate(["B-PER"], BIOES)] == [0]
    assert [index for index, _ in validate(["O", "I-PER", "E-PER"], BIOES)] == [1]
    assert [index for index, _ in validate(["E-PER"], BIOES)] == [0]
    assert validate(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], BIOES) == []


def test_validate_reports_prefixes_foreign_to_the_scheme() -> None:
    assert [index for index, _ in validate(["O", "S-PER"], IOB2)] == [1]
    assert [index for index, _ in validate(["E-PER"], IOB1)] == [0]


# --- conversion -----------------------------------------------------------------------------------------


def test_convert_known_examples() -> None:
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG"]
    assert convert(iob2, IOB2, BIOES) == ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]
    assert convert(iob2, IOB2, IOB1) == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "I-ORG"]
    assert convert(["I-PER", "I-PER", "O", "I-LOC"], IOB1, IOB2) == ["B-PER", "I-PER", "O", "B-LOC"]


def test_convert_decodes_invalid_sequences_leniently() -> None:
    # conlleval behaviour: an I- that cannot continue an entity starts one.
    assert convert(["O", "I-PER", "I-LOC"], IOB2, IOB2) == ["O", "B-PER", "B-LOC"]
    assert convert(["B-PER", "O"], BIOES, IOB2) == ["B-PER", "O"]


def test_convert_refuses_tags_of_another_scheme() -> None:
    with pytest.raises(ValueError, match="not an IOB2 tag"):
        convert(["S-PER"], IOB2, BIOES)


TYPES = ("PER", "LOC", "Chemical")
# A sentence as segments: ("O", 1) or (type, length); adjacent entities of one type are allowed.
segments = st.lists(
    st.one_of(st.tuples(st.just("O"), st.just(1)), st.tuples(st.sampled_from(TYPES), st.integers(1, 4))),
    max_size=12,
)


def encode_by_hand(parts: list[tuple[str, int]], scheme: str) -> list[str]:
    """An independent encoder of the scheme definitions, to check the library's one against."""
    tags: list[str] = []
    previous_type = ""
    for entity_type, length in parts:
        if entity_type == "O":
            tags.append("O")
            previous_type = ""
            continue
        if scheme == IOB2:
            tags += [f"B-{entity_type}"] + [f"I-{entity_type}"] * (length - 1)
        elif scheme == IOB1:
            first = "B" if previous_type == entity_type else "I"
            tags += [f"{first}-{entity_type}"] + [f"I-{entity_type}"] * (length - 1)
        elif length == 1:
            tags.append(f"S-{entity_type}")
        else:
            tags += [f"B-{entity_type}"] + [f"I-{entity_type}"] * (length - 2) + [f"E-{entity_type}"]
        previous_type = entity_type
    return tags


@given(segments, st.sampled_from([IOB1, IOB2, BIOES]), st.sampled_from([IOB1, IOB2, BIOES]))
def test_conversion_of_valid_sequences_is_lossless(parts: list[tuple[str, int]], source: str, target: str) -> None:
    original = encode_by_hand(parts, source)
    expected = encode_by_hand(parts, target)
    assert validate(original, source) == []
    converted = convert(original, source, target)
    assert converted == expected
    assert convert(converted, target, source) == original


tag_sequences = st.lists(
    st.sampled_from(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]), max_size=15
)


@given(tag_sequences, st.sampled_from([IOB1, IOB2, BIOES]))
def test_any_sequence_keeps_its_spans_through_conversion(tags: list[str], target: str) -> None:
    converted = convert(tags, BIOES, target)
    assert to_spans(converted) == to_spans(tags)
    assert validate(converted, target) == []  # the output of a conversion is always valid


@given(segments)
def test_spans_round_trip_through_every_scheme(parts: list[tuple[str, int]]) -> None:
    tags = encode_by_hand(parts, IOB2)
    spans = to_spans(tags)
    for scheme in (IOB1, IOB2, BIOES):
        assert to_spans(from_spans(spans, len(tags), scheme)) == spans


def test_label_scheme_reads_a_label_set_whatever_its_order() -> None:
    """A tagger's labels are a set: I- before B- must not read as IOB1 (detect_scheme reads sequences)."""
    from lsfa.data.schemes import label_scheme

    assert label_scheme(["O", "I-PER", "B-PER"]) == "IOB2"
    assert label_scheme(["O", "B-X", "I-X", "E-X", "S-X"]) == "BIOES"
    assert label_scheme(["O"]) == "IOB2"

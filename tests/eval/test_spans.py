"""get_spans must decode exactly like seqeval, sentence by sentence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsfa.data.schemes import normalise_scheme
from lsfa.errors import LsfaError
from lsfa.eval.spans import InvalidTagError, Span, get_spans, spans_of_all
from tests.eval.oracle import PREFIXES, seqeval_spans, tags_strategy


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "IOBES"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_strict_spans_equal_seqeval(scheme, data):
    tags = data.draw(tags_strategy(PREFIXES[scheme]))
    ours = [(s.start, s.end, s.type) for s in get_spans(tags, scheme, "strict")]
    assert ours == seqeval_spans(tags, scheme, "strict")


@settings(max_examples=400, deadline=None)
@given(tags=tags_strategy("BIOES"))
def test_conlleval_spans_equal_seqeval_default(tags):
    expected = seqeval_spans(tags, "IOB2", "conlleval")
    for scheme in ("IOB1", "IOB2", "IOBES"):  # seqeval's default mode ignores the scheme
        assert [(s.start, s.end, s.type) for s in get_spans(tags, scheme, "conlleval")] == expected


@pytest.mark.parametrize(
    ("tags", "scheme", "mode", "expected"),
    [
        (["I-PER"], "IOB2", "strict", []),
        (["I-PER"], "IOB2", "conlleval", [Span(0, 1, "PER")]),
        (["B-PER", "I-LOC"], "IOB2", "strict", [Span(0, 1, "PER")]),
        (["B-PER", "I-LOC"], "IOB2", "conlleval", [Span(0, 1, "PER"), Span(1, 2, "LOC")]),
        (["O", "I-PER", "I-PER", "B-PER"], "IOB1", "strict", [Span(1, 3, "PER"), Span(3, 4, "PER")]),
        (["B-PER", "O"], "IOBES", "strict", []),
        (["B-PER", "E-PER", "S-LOC"], "BIOES", "strict", [Span(0, 2, "PER"), Span(2, 3, "LOC")]),
        (["B-ORG-X", "I-ORG-X"], "IOB2", "strict", [Span(0, 2, "ORG-X")]),
        ([], "IOB2", "strict", []),
    ],
)
def test_hand_made_spans(tags, scheme, mode, expected):
    assert get_spans(tags, scheme, mode) == expected


@pytest.mark.parametrize("bad", ["B", "B-", "X-PER", "B-PER-", "B--PER", "o", "", "BPER"])
def test_malformed_tags_are_refused_with_position(bad):
    with pytest.raises(InvalidTagError) as caught:
        get_spans(["O", bad], "IOB2", "conlleval")
    assert caught.value.position == 1
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2"])
def test_iobes_prefixes_are_refused_in_strict_iob(scheme):
    with pytest.raises(InvalidTagError, match="not allowed in strict"):
        get_spans(["B-PER", "E-PER"], scheme, "strict")
    assert get_spans(["B-PER", "E-PER"], scheme, "conlleval") == [Span(0, 2, "PER")]


def test_invalid_tag_error_names_the_sentence():
    with pytest.raises(InvalidTagError, match="sentence 1, word 0") as caught:
        spans_of_all([["O"], ["S-PER"]], "IOB2", "strict")
    assert caught.value.sentence == 1


def test_scheme_names_and_unknown_values():
    assert normalise_scheme("iobes") == "BIOES"
    assert normalise_scheme("BIO") == "IOB2"
    with pytest.raises(LsfaError, match="unknown tag scheme"):
        get_spans(["O"], "IOE2")
    with pytest.raises(LsfaError, match="unknown evaluation mode"):
        get_spans(["O"], "IOB2", "lenient")  # type: ignore[arg-type]

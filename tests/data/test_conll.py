"""Reading and writing CoNLL files: shapes, errors, quirks and round trips."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsfa.data.conll import iter_documents, read_conll, write_conll
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError

WriteFile = Callable[..., Path]

CONLL2003_LIKE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def same_content(left: list[Sentence], right: list[Sentence]) -> bool:
    """Sentences equal in words, tags, extra columns and documents (line numbers aside)."""
    return [(s.tokens, s.tags, s.extra, s.doc_id) for s in left] == [
        (s.tokens, s.tags, s.extra, s.doc_id) for s in right
    ]


# --- reading: shapes ---------------------------------------------------------------------------------------


def test_reads_sentences_columns_documents_and_lines(write_file: WriteFile) -> None:
    conll = read_conll(write_file(CONLL2003_LIKE))
    assert [s.tokens for s in conll.sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert conll.sentences[0].tags == ["B-ORG", "O", "B-MISC"]
    assert conll.sentences[0].extra[0] == ["NNP", "B-NP"]
    assert [s.doc_id for s in conll.sentences] == [0, 0, 1]
    assert [s.line for s in conll.sentences] == [3, 7, 12]
    assert (conll.n_documents, conll.has_docstart, conll.n_columns, conll.sep) == (2, True, 4, " ")
    assert conll.scheme == "IOB2"
    assert conll.warnings == []


def test_two_column_file_without_docstart_is_one_document(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a O\nb B-X\n\nc O\n"))
    assert conll.n_documents == 1
    assert not conll.has_docstart
    assert conll.sentences[0].extra == []


def test_docstart_at_start_end_and_repeated_creates_no_empty_documents(write_file: WriteFile) -> None:
    text = "-DOCSTART- O\n\n-DOCSTART- O\na O\n\nb O\n-DOCSTART- O\nc O\n\n-DOCSTART- O\n\n-DOCSTART- O\n"
    conll = read_conll(write_file(text))
    # The DOCSTART right after "b O" (no blank line) also ends that sentence.
    assert [s.tokens for s in conll.sentences] == [["a"], ["b"], ["c"]]
    assert [s.doc_id for s in conll.sentences] == [0, 0, 1]
    assert conll.n_documents == 2


def test_tab_separated_file_keeps_spaces_inside_words(write_file: WriteFile) -> None:
    conll = read_conll(write_file("New York\tB-LOC\ncity\tO\n"))
    assert conll.sep == "\t"
    assert conll.sentences[0].tokens == ["New York", "city"]


def test_space_separated_file_accepts_runs_of_spaces(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a  NN   O\nb NN B-X  \n"))
    assert conll.sentences[0].tags == ["O", "B-X"]


def test_whitespace_only_lines_separate_sentences(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a O\n   \nb O\n\t\nc O\n \t \n"))
    assert [s.tokens for s in conll.sentences] == [["a"], ["b"], ["c"]]


def test_crlf_line_ends_and_missing_final_newline(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a O\r\nb B-X\r\n\r\nc O"))
    assert [s.tags for s in conll.sentences] == [["O", "B-X"], ["O"]]


def test_chosen_tag_column_moves_other_columns_to_extra(write_file: WriteFile) -> None:
    conll = read_conll(write_file("EU B-ORG NNP\nrejects O VBZ\n"), tag_column=1)
    assert conll.sentences[0].tags == ["B-ORG", "O"]
    assert conll.sentences[0].extra == [["NNP"], ["VBZ"]]


@pytest.mark.parametrize("tag_column", [0, 3, -3])
def test_tag_column_must_exist_and_not_be_the_word(write_file: WriteFile, tag_column: int) -> None:
    with pytest.raises(DataFormatError, match="tag column"):
        read_conll(write_file("EU NNP B-ORG\n"), tag_column=tag_column)


# --- reading: errors --------------------------------------------------------------------------------------


def test_one_column_where_two_expected_is_an_error_with_line(write_file: WriteFile) -> None:
    path = write_file("a O\nb O\nB-PER\n")
    with pytest.raises(DataFormatError, match="expected 2 columns") as caught:
        read_conll(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert str(caught.value).startswith(f"{path}:3: ")


def test_extra_column_is_an_error(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="expected 4 columns") as caught:
        read_conll(write_file("a NN B-NP O\n\nb NN O\n"))
    assert caught.value.line == 3


def test_single_column_file_is_an_error(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="at least two columns"):
        read_conll(write_file("word\nother\n"))


@pytest.mark.parametrize("bad_tag", ["X-PER", "B-", "PER", "B_PER"])
def test_unknown_tag_shape_is_an_error_with_line(write_file: WriteFile, bad_tag: str) -> None:
    with pytest.raises(DataFormatError, match="unknown tag") as caught:
        read_conll(write_file(f"a O\n\nb {bad_tag}\n"))
    assert caught.value.line == 3


def test_strict_mode_rejects_invalid_transition_at_its_line(write_file: WriteFile) -> None:
    path = write_file("a B-PER\nb O\n\nc O\nd I-PER\n")
    with pytest.raises(DataFormatError, match="invalid IOB2 transition") as caught:
        read_conll(path, strict=True)
    assert caught.value.line == 5


def test_strict_bioes_rejects_unclosed_entity(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="invalid BIOES transition") as caught:
        read_conll(write_file("a S-PER\n\nb B-PER\nc O\n"), strict=True)
    assert caught.value.line == 3


def test_lenient_mode_warns_and_keeps_or_repairs_tags(write_file: WriteFile) -> None:
    path = write_file("a B-PER\nb O\nc I-PER\n")
    kept = read_conll(path)
    assert kept.sentences[0].tags == ["B-PER", "O", "I-PER"]
    assert kept.warnings == [f"{path}:3: invalid IOB2 transition: I-PER after O (must follow B- or I-)"]
    repaired = read_conll(path, convert_to="IOB2")
    assert repaired.sentences[0].tags == ["B-PER", "O", "B-PER"]


def test_many_invalid_transitions_are_summarised(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a B-X\n" + "b O\nc I-X\n" * 30))
    assert len(conll.warnings) == 11
    assert "30 invalid IOB2 transitions" in conll.warnings[-1]


def test_given_scheme_overrides_detection_and_unknown_scheme_is_a_user_error(write_file: WriteFile) -> None:
    path = write_file("a I-PER\nb B-PER\n")
    assert read_conll(path).scheme == "IOB1"
    assert read_conll(path, scheme="iob2").scheme == "IOB2"
    with pytest.raises(LsfaError, match="unknown tag scheme"):
        read_conll(path, scheme="IOX")


def test_binary_file_is_not_a_text_file(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="not a text file"):
        read_conll(write_file(b"a O\n\x00\x01\x02\xff binary", "model.bin"))


def test_non_utf8_file_is_not_a_text_file_with_line(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="not a text file") as caught:
        read_conll(write_file("a O\nCaf\xe9 O\n".encode("latin-1")))
    assert caught.value.line == 2


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_so_with_how_to_re_encode(write_file: WriteFile, encoding: str) -> None:
    """Issue #37 item 7: it used to be "not a text file (contains NUL bytes)"."""
    with pytest.raises(DataFormatError, match=r"UTF-16 text, not UTF-8: re-encode it, e\.g\. iconv -f UTF-16"):
        read_conll(write_file("EU B-ORG\nrejects O\n".encode(encoding)))


def test_mixed_tabs_and_spaces_are_named_as_such(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match=r"separators are mixed: the first word line .* tabs") as caught:
        read_conll(write_file("EU\tB-ORG\nrejects O\n"))
    assert caught.value.line == 2


def test_running_text_on_one_line_is_not_read_as_one_token(write_file: WriteFile) -> None:
    """A long line of words was one word with thousands of tag columns, and counted as an entity."""
    with pytest.raises(DataFormatError, match="5,000 columns on one line: CoNLL has one word per line"):
        read_conll(write_file(" ".join(["word"] * 4999 + ["O"]) + "\n"))


def test_empty_file_is_an_error(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="empty file"):
        read_conll(write_file(""))
    with pytest.raises(DataFormatError, match="empty file"):
        read_conll(write_file("\n \n\n"))


def test_file_with_only_docstart_has_no_sentences(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="no sentences"):
        read_conll(write_file("-DOCSTART- -X- -X- O\n\n"))


def test_missing_file_and_folder_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="no such file"):
        read_conll(tmp_path / "nope.txt")
    with pytest.raises(LsfaError, match="is a folder"):
        read_conll(tmp_path)


# --- the empty-token quirk -----------------------------------------------------------------------------


def test_line_starting_with_separator_keeps_an_empty_token(write_file: WriteFile) -> None:
    path = write_file("Guillain-Barr B-Disease\n I-Disease\n I-Disease\nsyndrome I-Disease\nwas O\n")
    conll = read_conll(path)
    sentence = conll.sentences[0]
    assert sentence.tokens == ["Guillain-Barr", "", "", "syndrome", "was"]
    assert sentence.tags == ["B-Disease", "I-Disease", "I-Disease", "I-Disease", "O"]
    assert conll.warnings == [f"{path}:2: empty token kept as ''", f"{path}:3: empty token kept as ''"]


def test_empty_token_keeps_extra_columns_in_place(write_file: WriteFile) -> None:
    conll = read_conll(write_file("a NN O\n NN B-X\n"))
    assert conll.sentences[0].tokens == ["a", ""]
    assert conll.sentences[0].extra == [["NN"], ["NN"]]
    assert conll.sentences[0].tags == ["O", "B-X"]


def test_empty_token_in_tab_file(write_file: WriteFile) -> None:
    path = write_file("a\tO\n\tB-X\n")
    conll = read_conll(path)
    assert conll.sentences[0].tokens == ["a", ""]
    assert conll.warnings == [f"{path}:2: empty token kept as ''"]


def test_indented_line_missing_two_columns_is_still_an_error(write_file: WriteFile) -> None:
    with pytest.raises(DataFormatError, match="expected 4 columns"):
        read_conll(write_file("a NN B-NP O\n B-NP O\n"))


# --- writing and round trips -----------------------------------------------------------------------------


def test_write_reproduces_a_conll2003_style_file(write_file: WriteFile, tmp_path: Path) -> None:
    source = read_conll(write_file(CONLL2003_LIKE))
    out = tmp_path / "out.txt"
    write_conll(source.sentences, out, docstart=source.has_docstart)
    assert out.read_text(encoding="utf-8") == CONLL2003_LIKE + "\n"
    again = read_conll(out)
    assert again.sentences == source.sentences  # line numbers included: same layout


def test_two_column_docstart_form(write_file: WriteFile) -> None:
    sentences = [Sentence(["a"], ["O"], doc_id=0), Sentence(["b"], ["B-X"], doc_id=1)]
    written = io.StringIO()
    write_conll(sentences, written, docstart=True)
    assert written.getvalue() == "-DOCSTART- O\n\na O\n\n-DOCSTART- O\n\nb B-X\n\n"


def test_write_tab_file_with_spaces_and_empty_token_round_trips(tmp_path: Path) -> None:
    sentences = [Sentence(["New York", "", "x"], ["B-LOC", "I-LOC", "O"], extra=[["a"], ["b"], ["c"]])]
    stream = io.StringIO()
    write_conll(sentences, stream, sep="\t")
    path = tmp_path / "out.tsv"
    path.write_text(stream.getvalue(), encoding="utf-8")
    again = read_conll(path)
    assert same_content(again.sentences, sentences)
    assert len(again.warnings) == 1


def test_write_refuses_words_that_would_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="sep='\\\\t'"):
        write_conll([Sentence(["New York"], ["B-LOC"])], tmp_path / "out.txt")
    with pytest.raises(LsfaError, match="cannot be written"):
        write_conll([Sentence(["-DOCSTART-"], ["O"])], tmp_path / "out.txt")


# Words may hold any character but the separators and line breaks; unusual spaces (U+00A0, U+3000) and
# U+2028 stay inside words, since the reader only splits at spaces, tabs and newlines. (A leading U+FEFF
# is read as a byte-order mark, so it is left out.)
words = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters=" \t\n\r\x0b\x0c\x00\ufeff"),
    min_size=1,
    max_size=6,
)


@st.composite
def documents(draw: st.DrawFn) -> list[Sentence]:
    """Random sentences with two extra columns, spread over one to three documents."""
    sentences = []
    for doc_id in range(draw(st.integers(1, 3))):
        for _ in range(draw(st.integers(1, 3))):
            n = draw(st.integers(1, 5))
            sentence_tags = ["B-PER"] + [draw(st.sampled_from(["O", "B-LOC", "B-PER"])) for _ in range(n - 1)]
            extra = [[draw(words), draw(words)] for _ in range(n)]
            sentences.append(Sentence([draw(words) for _ in range(n)], sentence_tags, extra, doc_id))
    return sentences


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents(), st.sampled_from([" ", "\t"]))
def test_write_then_read_gives_identical_sentences(tmp_path: Path, sentences: list[Sentence], sep: str) -> None:
    path = tmp_path / "round.txt"
    write_conll(sentences, path, sep=sep, docstart=True)
    again = read_conll(path)
    assert same_content(again.sentences, sentences)
    assert again.sep == sep


def test_iter_documents_groups_consecutive_sentences() -> None:
    sentences = [Sentence(["a"], ["O"], doc_id=0), Sentence(["b"], ["O"], doc_id=0), Sentence(["c"], ["O"], doc_id=1)]
    assert [[s.tokens[0] for s in doc] for doc in iter_documents(sentences)] == [["a", "b"], ["c"]]
    assert iter_documents([]) == []

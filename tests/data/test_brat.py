"""BRAT standoff (``.txt`` + ``.ann``): read, written, round-tripped, found by the format table everywhere, and
malformed ``.ann`` lines as errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsfa.data.brat import read_brat, write_brat
from lsfa.data.corpora import load_corpus
from lsfa.data.formats import DataFormat, format_of, read_file, register
from lsfa.data.jsonl import SpanOptions
from lsfa.errors import DataFormatError, LsfaError

TEXT = "Peter Blackburn flew to Brussels .\nEU rejects German call .\n"
ANN = (
    "T1\tPER 0 15\tPeter Blackburn\n"
    "T2\tLOC 24 32\tBrussels\n"
    "T3\tORG 35 37\tEU\n"
    "R1\tIn Arg1:T1 Arg2:T2\n"
    "E1\tTravel:T1 Dest:T2\n"
    "A1\tNegated E1\n"
    "#1\tAnnotatorNotes T1\tchecked\n"
)


def write_pair(folder: Path, name: str = "doc", text: str = TEXT, ann: str = ANN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    (folder / f"{name}.ann").write_text(ann, encoding="utf-8")
    return folder / f"{name}.ann"


def test_entities_become_iob2_sentences_and_the_rest_is_counted(tmp_path: Path) -> None:
    read = read_brat(write_pair(tmp_path))
    assert [s.tokens for s in read.sentences] == [TEXT.split("\n")[0].split(), TEXT.split("\n")[1].split()]
    assert [s.tags for s in read.sentences] == [
        ["B-PER", "I-PER", "O", "O", "B-LOC", "O"],
        ["B-ORG", "O", "O", "O", "O"],
    ]
    assert [s.line for s in read.sentences] == [1, 2]
    assert sorted(w.split(": ", 1)[1] for w in read.warnings) == [
        "1 attributes ignored (lsfa reads entities only)",
        "1 events ignored (lsfa reads entities only)",
        "1 notes ignored (lsfa reads entities only)",
        "1 relations ignored (lsfa reads entities only)",
    ]


def test_write_then_read_gives_the_same_sentences_and_files(tmp_path: Path) -> None:
    original = read_brat(write_pair(tmp_path / "in"))
    written = tmp_path / "out" / "copy.ann"
    written.parent.mkdir()
    assert write_brat(original.sentences, written) == 3
    again = read_brat(written)
    assert [(s.tokens, s.tags) for s in again.sentences] == [(s.tokens, s.tags) for s in original.sentences]
    assert written.with_suffix(".txt").read_text() == TEXT
    entity_lines = [line for line in ANN.splitlines() if line.startswith("T")]
    assert written.read_text().splitlines() == entity_lines


def test_a_folder_of_pairs_is_one_split_of_documents_and_the_table_finds_it(tmp_path: Path) -> None:
    write_pair(tmp_path / "corpus" / "train", "a")
    write_pair(tmp_path / "corpus" / "train", "b", "Bob sat .\n", "T1\tPER 0 3\tBob\n")
    write_pair(tmp_path / "corpus", "test")  # test.txt beside test.ann is BRAT's text, not a CoNLL split
    corpus = load_corpus(tmp_path / "corpus")
    assert list(corpus.splits) == ["train", "test"] and corpus.labels == ["LOC", "ORG", "PER"]
    assert corpus["train"].n_documents == 2 and [s.doc_id for s in corpus["train"].sentences] == [0, 0, 1]
    assert format_of(tmp_path / "corpus" / "test.txt").name == "brat"  # the companion of test.ann
    assert read_file(tmp_path / "corpus" / "test.ann").sentences == corpus["test"].sentences


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("T1\tPER 0 15", "expected 'T<id><TAB><type> <start> <end><TAB><text>'"),
        ("T1\tPER zero 15\tPeter Blackburn", "offsets must be whole numbers"),
        ("T1\tPER 0 99\tPeter", "are not a span of the .txt"),
        ("T1\tPER 0 5\tPetra", "entity text 'Petra' but the .txt has 'Peter' there"),
        ("T1\tPER 0 5;6 15\tPeter Blackburn", "discontinuous entity"),
        ("T1\tLOC 24 37\tBrussels . EU", "crosses a line break"),
        ("X1\tsomething", "not a BRAT annotation line"),
    ],
)
def test_malformed_ann_lines_are_errors_at_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    ann = write_pair(tmp_path, ann="T9\tORG 35 37\tEU\n" + line + "\n")
    with pytest.raises(DataFormatError, match=message) as error:
        read_brat(ann)
    assert (error.value.path, error.value.line) == (str(ann), 2)


def test_spans_off_word_boundaries_follow_the_span_options(tmp_path: Path) -> None:
    ann = write_pair(tmp_path, ann="T1\tPER 0 3\tPet\n")
    with pytest.raises(DataFormatError, match="does not fall on word boundaries") as error:
        read_brat(ann)
    assert error.value.line == 1
    snapped = read_brat(ann, SpanOptions(misaligned="snap"))
    assert snapped.sentences[0].tags[:2] == ["B-PER", "O"] and "1 spans snapped" in snapped.warnings[0]


def test_the_format_table_stays_one_to_one() -> None:
    with pytest.raises(LsfaError, match="already registered"):
        register(DataFormat("brat2", (".ann",), read_file, write_brat, "a second reader of .ann"))


def test_lsfa_data_convert_and_evaluate_take_brat(tmp_path: Path, monkeypatch, capsys) -> None:
    """The commands choose BRAT by suffix through the format table, with no code of their own for it."""
    import sys

    from lsfa.cli import main

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["lsfa", *args])
        try:
            main()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    ann = write_pair(tmp_path / "in")
    assert run("data", "convert", str(ann), str(tmp_path / "doc.conll")) == 0
    assert run("data", "convert", str(tmp_path / "doc.conll"), str(tmp_path / "back.ann")) == 0
    assert (tmp_path / "back.txt").read_text() == TEXT
    assert run("data", "convert", str(tmp_path / "doc.conll"), str(tmp_path / "words.txt")) == 0  # CoNLL as .txt
    assert run("data", "convert", str(tmp_path / "words.txt"), str(tmp_path / "words.ann")) == 2  # .txt: the input
    capsys.readouterr()
    assert run("evaluate", "--gold", str(ann), "--pred", str(tmp_path / "doc.conll"), "--json") == 0
    assert '"f1": 1.0' in capsys.readouterr().out

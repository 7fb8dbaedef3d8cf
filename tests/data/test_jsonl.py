"""Span-annotated JSONL and spaCy DocBin as corpora: the common shapes, clear errors at file:line, the snap /
drop / longest options with their counts, lossless round trips through `lsfa data convert`, and a training
run from JSONL on a tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lsfa.data.conll import read_conll
from lsfa.data.corpora import load_corpus
from lsfa.data.formats import read_file
from lsfa.data.jsonl import SpanOptions, read_span_jsonl, write_span_jsonl
from lsfa.errors import DataFormatError
from tests.training.synthetic import write_synthetic_corpus

TEXT = "Angela Merkel visited New York."


def write_lines(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.parametrize(
    "record",
    [
        {"text": TEXT, "entities": [[0, 13, "PER"], [22, 30, "LOC"]]},  # [start, end, label]
        {"text": TEXT, "label": [[0, 13, "PER"], [22, 30, "LOC"]]},  # doccano
        {"text": TEXT, "spans": [{"start": 0, "end": 13, "label": "PER"}, {"start": 22, "end": 30, "label": "LOC"}]},
        {"data": {"text": TEXT}, "annotations": [{"result": [  # Label Studio
            {"value": {"start": 0, "end": 13, "labels": ["PER"]}},
            {"value": {"start": 22, "end": 30, "labels": ["LOC"]}}]}]},
    ],
)  # fmt: skip
def test_the_common_shapes_give_the_same_sentence(tmp_path: Path, record) -> None:
    loaded = read_span_jsonl(write_lines(tmp_path / "train.jsonl", record))
    sentence = loaded.sentences[0]
    assert sentence.tokens == ["Angela", "Merkel", "visited", "New", "York", "."]
    assert sentence.tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"] and sentence.line == 1


def test_a_label_studio_json_list_is_read_too(tmp_path: Path) -> None:
    task = {"data": {"text": TEXT}, "annotations": [{"result": [{"value": {"start": 0, "end": 6, "labels": ["PER"]}}]}]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task, task]))
    assert [s.tags[0] for s in read_span_jsonl(path).sentences] == ["B-PER", "B-PER"]


def test_a_problem_in_a_json_list_names_its_record_not_a_line(tmp_path: Path) -> None:
    """The whole list may sit on one line: ':3' would point at nothing, 'record 3' at the third task."""
    good = {"data": {"text": TEXT}, "annotations": [{"result": []}]}
    bad = {"data": {"text": TEXT}, "annotations": [{"result": [{"value": {"start": 2, "end": 13, "labels": ["PER"]}}]}]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([good, good, bad]))
    with pytest.raises(DataFormatError, match=r"export\.json: record 3: span \[2, 13, 'PER'\]"):
        read_span_jsonl(path)
    path.write_text(json.dumps([good, 7]))
    with pytest.raises(DataFormatError, match=r"export\.json: record 2: a record must be a JSON object"):
        read_span_jsonl(path)


def test_misaligned_spans_are_an_error_or_snapped_or_dropped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", {"text": TEXT, "entities": [[0, 13, "PER"]]},
                       {"text": TEXT, "entities": [[2, 13, "PER"]]})  # fmt: skip
    with pytest.raises(DataFormatError, match=r"a\.jsonl:2: span \[2, 13, 'PER'\] \('gela Merkel'\) does not fall"):
        read_span_jsonl(path)
    snapped = read_span_jsonl(path, SpanOptions(misaligned="snap"))
    assert snapped.sentences[1].tags[:2] == ["B-PER", "I-PER"] and "1 spans snapped" in snapped.warnings[0]
    dropped = read_span_jsonl(path, SpanOptions(misaligned="drop"))
    assert set(dropped.sentences[1].tags) == {"O"} and "1 spans dropped" in dropped.warnings[0]


def test_overlapping_spans_are_an_error_or_the_longest_is_kept(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "o.jsonl", {"text": TEXT, "entities": [[0, 13, "PER"], [7, 13, "PER"]]})
    # The clash is named in the character offsets the user wrote, not lsfa's word indices.
    with pytest.raises(
        DataFormatError,
        match=r"o\.jsonl:1: spans \[0, 13, 'PER'\] \('Angela Merkel'\) and \[7, 13, 'PER'\] "
        r"\('Merkel'\) overlap",
    ):
        read_span_jsonl(path)
    longest = read_span_jsonl(path, SpanOptions(overlaps="longest"))
    assert longest.sentences[0].tags[:2] == ["B-PER", "I-PER"] and "overlapping dropped" in longest.warnings[0]


@pytest.mark.parametrize(
    ("record", "problem"),
    [({"entities": []}, "needs its text"), ({"text": TEXT, "entities": [[5, 2, "X"]]}, "inside the text"),
     ({"text": TEXT, "entities": [["a"]]}, "neither"), ([1, 2], "must be a JSON object")],
)  # fmt: skip
def test_bad_records_name_file_and_line(tmp_path: Path, record, problem) -> None:
    path = write_lines(tmp_path / "bad.jsonl", {"text": TEXT, "entities": []}, record)
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl:2: .*{problem}"):
        read_span_jsonl(path)


@pytest.mark.parametrize(
    ("record", "problem"),
    [({"text": TEXT, "entites": [[0, 13, "PER"]]}, 'key "entites" holds spans, but lsfa reads spans only from'),
     ({"text": TEXT, "tokens": ["Angela"], "ents": [{"start": 0, "end": 13, "label": "PER"}]}, 'key "ents"'),
     ({"text": TEXT, "entities": [[0, 13, "PER"]], "label": [[22, 30, "LOC"]]},
      'both "entities" and "label" hold spans, and they differ'),
     ({"text": TEXT, "entities": [], "label": [[22, 30, "LOC"]]}, 'both "entities" and "label"')],
)  # fmt: skip
def test_annotations_that_would_be_lost_are_an_error_at_file_and_line(tmp_path: Path, record, problem) -> None:
    """Issue #37 item 3: a misspelt span key used to give 0 entities, two span keys silently dropped one."""
    path = write_lines(tmp_path / "bad.jsonl", {"text": TEXT, "entities": []}, record)
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl:2: {problem}"):
        read_span_jsonl(path)


def test_the_same_spans_under_two_keys_and_other_lists_are_read(tmp_path: Path) -> None:
    spans = [[0, 13, "PER"]]
    path = write_lines(tmp_path / "ok.jsonl", {"text": TEXT, "entities": spans, "label": spans},
                       {"text": TEXT, "entities": spans, "labels": ["news"], "meta": {"ids": [1, 2, 3]}})  # fmt: skip
    assert [s.tags for s in read_span_jsonl(path).sentences] == [["B-PER", "I-PER", "O", "O", "O", "O"]] * 2


def test_conll_jsonl_conll_round_trip_is_lossless(tmp_path: Path) -> None:
    corpus = write_synthetic_corpus(tmp_path / "c", train=30, dev=2, test=2)
    original = read_conll(corpus / "train.txt").sentences
    write_span_jsonl(original, tmp_path / "train.jsonl")
    back = read_span_jsonl(tmp_path / "train.jsonl").sentences
    assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in original]


def test_cli_converts_between_all_three_formats(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("spacy")
    from lsfa.cli import main

    corpus = write_synthetic_corpus(tmp_path / "c", train=20, dev=2, test=2)
    original = read_conll(corpus / "train.txt").sentences
    steps = [(corpus / "train.txt", tmp_path / "a.jsonl"), (tmp_path / "a.jsonl", tmp_path / "b.spacy"),
             (tmp_path / "b.spacy", tmp_path / "c.conll")]  # fmt: skip
    for source, target in steps:
        monkeypatch.setattr(sys, "argv", ["lsfa", "data", "convert", str(source), str(target)])
        main()
    assert [(s.tokens, s.tags) for s in read_conll(tmp_path / "c.conll").sentences] == [
        (s.tokens, s.tags) for s in original
    ]
    assert read_file(tmp_path / "b.spacy").sentences[0].tags == original[0].tags
    assert "20 sentences" in capsys.readouterr().out


def test_a_corpus_folder_may_mix_formats_and_trains(tmp_path: Path) -> None:
    import lsfa
    from tests.tiny import tiny_decoder_dir

    corpus = write_synthetic_corpus(tmp_path / "c", train=24, dev=6, test=6)
    write_span_jsonl(read_conll(corpus / "train.txt").sentences, corpus / "train.jsonl")
    (corpus / "train.txt").unlink()
    loaded = load_corpus(corpus)
    assert loaded["train"].path.endswith("train.jsonl") and loaded["dev"].path.endswith("dev.txt")
    model = str(tiny_decoder_dir(tmp_path / "tiny"))
    run = str(tmp_path / "run")
    tagger = lsfa.train(model=model, corpus=str(corpus), epochs=1, batch_size=8, max_length=64, precision="fp32",
                        output_dir=run, log=lambda _: None)  # fmt: skip
    assert tagger is not None and (tmp_path / "run" / "metrics.json").is_file()

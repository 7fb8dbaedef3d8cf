"""``lsfa predict`` on text, JSONL and CoNLL input, and ``lsfa evaluate --model-dir``."""

from __future__ import annotations

import json
import shutil

import pytest

from lsfa.data.conll import read_conll
from lsfa.errors import LsfaError
from lsfa.inference.files import detect_format

GOLD = """-DOCSTART- -X- -X- O

Bob NNP B-NP B-PER
Carter NNP I-NP I-PER
met VBD B-VP O
Bill NNP B-NP B-PER
in IN B-PP O
Paris NNP B-NP B-LOC
. . O O

-DOCSTART- -X- -X- O

the DT B-NP O
dog NN I-NP O
Cole NNP I-NP B-PER
"""


@pytest.fixture
def rule_dir(tiny_taggers):
    return str(tiny_taggers["rule"])


def test_predict_text_prints_one_json_object(run, rule_dir):
    code, out, _ = run(["predict", "--model-dir", rule_dir, "--text", "Hi Bob Carter!", "--precision", "fp32"])
    assert code == 0
    result = json.loads(out)
    assert result["text"] == "Hi Bob Carter!"
    assert [(e["start"], e["end"], e["label"], e["text"]) for e in result["entities"]] == [(3, 13, "PER", "Bob Carter")]
    assert set(result["entities"][0]) == {"start", "end", "label", "text", "score"}


def test_predict_plain_text_file_gives_one_object_per_line(run, rule_dir, tmp_path):
    source = tmp_path / "docs.txt"
    source.write_text("Bob Carter sat.\n\nthe dog\u2028and Bill\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    code, _, err = run(["predict", "--model-dir", rule_dir, "--input", str(source), "-o", str(output)])
    assert code == 0 and "3 documents" in err
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3]
    assert [[e["text"] for e in row["entities"]] for row in rows] == [["Bob Carter"], [], ["Bill"]]
    assert rows[2]["text"] == "the dog\u2028and Bill"


def test_predict_jsonl_with_text_and_words(run, rule_dir, tmp_path):
    source = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "Bill in Berlin", "source": "x"}),
        "",
        json.dumps({"words": ["the", "Bob", "Carter", "."]}),
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = run(["predict", "--model-dir", rule_dir, "--input", str(source)])
    assert code == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert (
        first["id"] == "a" and first["source"] == "x" and [e["text"] for e in first["entities"]] == ["Bill", "Berlin"]
    )
    assert second["id"] == 3
    assert second["tags"] == ["O", "B-PER", "I-PER", "O"]
    (entity,) = second["entities"]
    assert second["text"][entity["start"] : entity["end"]] == "Bob Carter"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "ok"', "invalid JSON"),
        ('{"id": 3}', 'exactly one of "text" or "words"'),
        ('{"text": 5}', '"text" must be a string'),
        ('{"words": "Bob"}', '"words" must be a list of strings'),
        ('["Bob"]', "expected a JSON object"),
    ],
)
def test_bad_jsonl_line_is_named(run, rule_dir, tmp_path, line, message):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n\n' + line + "\n", encoding="utf-8")
    code, out, err = run(["predict", "--model-dir", rule_dir, "--input", str(source)])
    assert code == 2 and out == ""
    assert f"{source}:3: " in err and message in err
    assert "Traceback" not in err


def test_predict_conll_keeps_columns_and_documents(run, rule_dir, tmp_path):
    gold = tmp_path / "gold.conll"
    gold.write_text(GOLD, encoding="utf-8")
    output = tmp_path / "pred.conll"
    command = ["predict", "--model-dir", rule_dir, "--input", str(gold), "--output", str(output)]
    code, _, err = run([*command, "--decoding", "argmax"])  # argmax: the rule model's raw tags, lenient I- included
    assert code == 0 and "2 sentences" in err
    predicted, original = read_conll(output), read_conll(gold)
    assert [s.tokens for s in predicted.sentences] == [s.tokens for s in original.sentences]
    assert [s.extra for s in predicted.sentences] == [s.extra for s in original.sentences]
    assert predicted.has_docstart and predicted.n_documents == 2
    assert [s.tags for s in predicted.sentences] == [
        ["B-PER", "I-PER", "O", "B-PER", "O", "O", "O"],
        ["O", "O", "I-PER"],
    ]


def test_predict_conll_honours_the_threshold(run, rule_dir, tmp_path):
    """--threshold drops the same entities from CoNLL output as from JSONL output: their words are written O
    (the threshold used to be ignored for CoNLL, which wrote the raw tags)."""
    gold = tmp_path / "gold.conll"
    gold.write_text(GOLD, encoding="utf-8")
    sentences = [s.tokens for s in read_conll(gold).sentences]
    words = tmp_path / "words.jsonl"
    words.write_text("".join(json.dumps({"words": tokens}) + "\n" for tokens in sentences), encoding="utf-8")
    command = ["predict", "--model-dir", rule_dir, "--precision", "fp32", "--decoding", "argmax"]
    code, out, _ = run([*command, "--input", str(words)])
    scores = {e["text"]: e["score"] for row in map(json.loads, out.splitlines()) for e in row["entities"]}
    assert code == 0 and scores["Bob Carter"] < scores["Cole"]  # Cole ends its sentence: nothing can continue it
    between = str((scores["Bob Carter"] + scores["Cole"]) / 2)
    tags = {}
    for threshold in ("0", between):
        output = tmp_path / f"pred-{threshold}.conll"
        code, _, err = run([*command, "--input", str(gold), "--threshold", threshold, "-o", str(output)])
        assert code == 0, err
        tags[threshold] = [s.tags for s in read_conll(output).sentences]
    assert tags["0"] == [["B-PER", "I-PER", "O", "B-PER", "O", "O", "O"], ["O", "O", "I-PER"]]
    assert tags[between] == [["O"] * 7, ["O", "O", "I-PER"]]
    code, out, _ = run([*command, "--input", str(words), "--threshold", between])
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [row["tags"] for row in rows] == tags[between]
    assert [[e["text"] for e in row["entities"]] for row in rows] == [[], ["Cole"]]


def test_predict_words_only_conll(run, rule_dir, tmp_path):
    source = tmp_path / "words.txt"
    source.write_text("Bob\nsat\n\nCole\n", encoding="utf-8")
    code, out, _ = run(
        ["predict", "--model-dir", rule_dir, "--input", str(source), "--format", "conll", "--decoding", "argmax"]
    )
    assert code == 0
    assert out == "Bob B-PER\nsat O\n\nCole I-PER\n\n"


def test_predict_needs_exactly_one_input(run, rule_dir, tmp_path):
    code, _, err = run(["predict", "--model-dir", rule_dir])
    assert code == 2 and "exactly one of --text or --input" in err
    source = tmp_path / "in.txt"
    source.write_text("x\n")
    code, _, err = run(["predict", "--model-dir", rule_dir, "--input", str(source), "--output", str(source)])
    assert code == 2 and "refusing to overwrite" in err
    code, _, err = run(["predict", "--model-dir", str(tmp_path), "--text", "x"])
    assert code == 2 and "not an lsfa tagger folder" in err
    code, _, err = run(["predict", "--model-dir", rule_dir, "--text", "x", "-o", str(tmp_path / "no" / "out.json")])
    assert code == 2 and "cannot write the output" in err


def test_format_detection():
    assert detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.CONLL") == "conll" and detect_format("a.iob") == "conll"
    assert detect_format("a.txt") == "text" and detect_format("-") == "text"
    assert detect_format("a.txt", "conll") == "conll"


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "test.txt").write_text(GOLD, encoding="utf-8")
    return folder


def test_evaluate_model_dir_reports_like_gold_and_pred(run, rule_dir, corpus_dir, tmp_path):
    args = ["--corpus", str(corpus_dir), "--split", "test", "--precision", "fp32", "--json", "--decoding", "argmax"]
    code, out, err = run(["evaluate", "--model-dir", rule_dir, *args])
    assert "decoding: argmax" in err
    assert code == 0
    from_model = json.loads(out)

    predictions = tmp_path / "pred.conll"
    gold = corpus_dir / "test.txt"
    assert (
        run(
            [
                "predict",
                "--model-dir",
                rule_dir,
                "--input",
                str(gold),
                "--format",
                "conll",
                "-o",
                str(predictions),
                "--decoding",
                "argmax",
            ]
        )[0]
        == 0
    )
    code, out, _ = run(["evaluate", "--gold", str(gold), "--pred", str(predictions), "--json"])
    assert code == 0
    from_files = json.loads(out)
    assert from_model.keys() == from_files.keys()
    assert from_model == from_files
    # gold: Bob Carter, Bill, Paris (LOC), Cole; the rule finds the PERs, misses Paris, and "Cole" is I-PER
    # alone (ill-formed, dropped in strict mode).
    assert from_model["micro"]["support"] == 4 and from_model["micro"]["precision"] == 1.0


def test_evaluate_model_dir_tables_and_default_corpus(run, tiny_taggers, corpus_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_taggers["rule"], run_dir / "model")
    (run_dir / "config.yaml").write_text(f"corpus: {corpus_dir}\ndata_dir: null\n")
    code, out, err = run(["evaluate", "--model-dir", str(run_dir), "--precision", "fp32"])
    assert code == 0
    assert "micro (strict)" in out and "Errors" in out
    assert "decoding: viterbi" in err  # the tagger's default, as lsfa predict uses


def test_evaluate_model_dir_errors(run, rule_dir, corpus_dir):
    code, _, err = run(["evaluate", "--model-dir", rule_dir])
    assert code == 2 and "--corpus" in err
    code, _, err = run(["evaluate", "--model-dir", rule_dir, "--corpus", str(corpus_dir), "--split", "dev"])
    assert code == 2 and "dev" in err
    code, _, err = run(["evaluate", "--corpus", str(corpus_dir)])
    assert code == 2 and "--model-dir" in err


def test_a_new_inference_option_is_a_flag_of_predict_evaluate_and_serve(run, rule_dir, monkeypatch):
    """The run flags come from InferenceOptions' fields, as train's come from TrainConfig: a field added there is
    listed in --help and parsed through to the options the tagger is loaded with, with no CLI edit (issue #36)."""
    from pydantic import Field

    from lsfa.inference import options
    from lsfa.inference.tagger import Tagger

    class WithCap(options.InferenceOptions):
        max_entities: int | None = Field(None, ge=1, description="keep at most this many entities per text")

    loaded = []

    def load(folder, run_options=None, **_):
        loaded.append(run_options)
        raise LsfaError("stopped before the weights load")

    monkeypatch.setattr(options, "InferenceOptions", WithCap)
    monkeypatch.setattr(Tagger, "load", load)
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("predict", "evaluate", "serve"):
        code, out, _ = run([command, "--help"])
        assert code == 0 and "--max-entities" in out and "keep at most this many entities per text" in out
    code, out, _ = run(["bench", "--help"])
    assert code == 0 and "--max-batch-tokens" in out and "--max-entities" not in out  # only what bench varies
    for command in (["predict", "--text", "Bob"], ["serve"]):
        code, _, err = run([*command, "--model-dir", rule_dir, "--max-entities", "3", "--decoding", "argmax"])
        assert code == 2 and "stopped before the weights load" in err
        assert type(loaded[-1]) is WithCap and (loaded[-1].max_entities, loaded[-1].decoding) == (3, "argmax")
    assert loaded[-1].pack and loaded[-1].pad_to_multiple_of == 32  # serve: the fast path under the new flag
    code, _, err = run(["serve", "--model-dir", rule_dir, "--max-entities", "0"])
    assert code == 2 and "--max-entities: Input should be greater than or equal to 1" in err


def test_output_format_is_chosen_apart_from_the_input(run, rule_dir, tmp_path):
    """--output-format: CoNLL input can give JSONL entities (issue #37 item 8), text input CoNLL tags."""
    gold = tmp_path / "gold.conll"
    gold.write_text(GOLD, encoding="utf-8")
    command = ["predict", "--model-dir", rule_dir, "--decoding", "argmax"]
    code, out, err = run([*command, "--input", str(gold), "--output-format", "jsonl"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "2 sentences" in err
    assert [row["id"] for row in rows] == [3, 13] and rows[0]["words"][:2] == ["Bob", "Carter"]
    assert rows[0]["tags"] == ["B-PER", "I-PER", "O", "B-PER", "O", "O", "O"]
    assert [[e["text"] for e in row["entities"]] for row in rows] == [["Bob Carter", "Bill"], ["Cole"]]
    source = tmp_path / "docs.txt"
    source.write_text("Bob Carter sat.\n\nBill\n", encoding="utf-8")
    code, out, _ = run([*command, "--input", str(source), "--output-format", "conll"])
    assert code == 0 and out == "Bob B-PER\nCarter I-PER\nsat O\n. O\n\nBill B-PER\n\n"
    code, out, _ = run([*command, "--text", "Bob sat", "--output-format", "conll"])
    assert code == 0 and out == "Bob B-PER\nsat O\n\n"
    code, _, err = run([*command, "--text", "Bob", "--output-format", "xml"])
    assert code == 2 and "--output-format" in err


def test_threads_sets_torchs_cpu_threads(run, rule_dir):
    import torch

    before = torch.get_num_threads()
    try:
        code, _, _ = run(["predict", "--model-dir", rule_dir, "--text", "Bob", "--threads", "2"])
        assert code == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

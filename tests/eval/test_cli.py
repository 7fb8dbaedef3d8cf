"""``lsfa evaluate --gold --pred`` on small temporary CoNLL files."""

from __future__ import annotations

import json

import pytest

GOLD = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


@pytest.fixture
def gold_file(tmp_path):
    path = tmp_path / "gold.txt"
    path.write_text(GOLD, encoding="utf-8")
    return path


def write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_identical_files_score_one(run, gold_file):
    code, out, _ = run(["evaluate", "--gold", str(gold_file), "--pred", str(gold_file), "--json"])
    assert code == 0
    result = json.loads(out)
    assert result["micro"]["f1"] == 1.0 and result["micro"]["support"] == 3
    assert result["n_sentences"] == 2 and result["n_tokens"] == 6


def test_two_column_prediction_against_four_column_gold(run, gold_file, tmp_path):
    pred = write(
        tmp_path, "pred.txt", ["EU B-ORG", "rejects O", "German I-MISC", "call O", "", "Peter B-PER", "Blackburn O"]
    )
    code, out, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred), "--json"])
    assert code == 0
    result = json.loads(out)
    assert result["micro"]["precision"] == pytest.approx(1 / 2)  # strict IOB2 drops the lone I-MISC
    assert result["micro"]["recall"] == pytest.approx(1 / 3)
    assert "invalid IOB2 transition" in err
    code, out, _ = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred), "--json", "--mode", "conlleval"])
    assert json.loads(out)["micro"]["precision"] == pytest.approx(2 / 3)


def test_table_output(run, gold_file):
    code, out, _ = run(["evaluate", "--gold", str(gold_file), "--pred", str(gold_file)])
    assert code == 0
    assert "micro (strict)" in out and "100.00" in out and "exact matches" in out


def test_differing_token_names_both_lines(run, gold_file, tmp_path):
    pred = write(
        tmp_path,
        "pred.txt",
        ["EU B-ORG", "rejects O", "Germany B-MISC", "call O", "", "Peter B-PER", "Blackburn I-PER"],
    )
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred)])
    assert code == 2
    assert f"{gold_file}:5: token 'German' but {pred}:3 has token 'Germany'" in err
    assert "Traceback" not in err


def test_missing_word_names_the_sentence_end(run, gold_file, tmp_path):
    pred = write(tmp_path, "pred.txt", ["EU B-ORG", "rejects O", "German B-MISC", "call O", "", "Peter B-PER"])
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred)])
    assert code == 2
    assert f"{gold_file}:9: token 'Blackburn' but {pred}:7 has the end of a sentence" in err


def test_sentence_count_mismatch(run, gold_file, tmp_path):
    pred = write(tmp_path, "pred.txt", ["EU B-ORG", "rejects O", "German B-MISC", "call O"])
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred)])
    assert code == 2
    assert "has 2 sentences but" in err and f"starts at {gold_file}:8" in err


def test_tag_foreign_to_the_scheme_names_file_and_line(run, gold_file, tmp_path):
    pred = write(
        tmp_path, "pred.txt", ["EU S-ORG", "rejects O", "German B-MISC", "call O", "", "Peter B-PER", "Blackburn E-PER"]
    )
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred)])
    assert code == 2
    assert f"{pred}:1: tag 'S-ORG' is not allowed in strict IOB2" in err
    # the lenient mode reads every prefix, whatever the scheme, like seqeval's default mode
    code, out, _ = run(["evaluate", "--gold", str(gold_file), "--pred", str(pred), "--mode", "conlleval", "--json"])
    assert code == 0
    assert json.loads(out)["per_type"]["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-dir", "no/such/run"], "no such tagger folder"),
        (["--gold", "g.txt", "--model-dir", "runs/x"], "not both"),
        (["--gold", "g.txt"], "give both --gold and --pred"),
        (["--gold", "g.txt", "--pred", "g.txt", "--mode", "lenient"], "unknown evaluation mode"),
        (["--gold", "g.txt", "--pred", "g.txt", "--scheme", "IOE2"], "unknown tag scheme"),
    ],
)
def test_option_errors(run, args, message, monkeypatch, gold_file):
    monkeypatch.chdir(gold_file.parent)
    code, _, err = run(["evaluate", *args])
    assert code == 2 and message in err


def test_baseline_gives_a_paired_bootstrap(run, gold_file, tmp_path):
    worse = write(
        tmp_path, "worse.txt", ["EU O", "rejects O", "German B-MISC", "call O", "", "Peter B-PER", "Blackburn I-PER"]
    )
    args = ["evaluate", "--gold", str(gold_file), "--pred", str(gold_file), "--baseline", str(worse)]
    code, out, _ = run([*args, "--bootstrap", "300", "--json"])
    assert code == 0
    result = json.loads(out)
    assert result["f1_b"] == 1.0 and result["f1_a"] == pytest.approx(0.8)
    assert result["delta"] == pytest.approx(0.2) and result["by"] == "sentence"  # one -DOCSTART- document
    assert result["units"] == 2 and result["samples"] == 300
    code, out, _ = run(args)
    assert code == 0 and "difference +20.00 points" in out and "10,000 paired draws of 2 sentences" in out


def test_baseline_must_have_the_same_words(run, gold_file, tmp_path):
    other = write(tmp_path, "other.txt", ["EU B-ORG", "rejects O", "Germany B-MISC", "call O", "", "Peter B-PER"])
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(gold_file), "--baseline", str(other)])
    assert code == 2 and f"{other}:3 has token 'Germany'" in err and "Traceback" not in err


def test_baseline_with_a_tag_foreign_to_the_scheme_names_file_and_line(run, gold_file, tmp_path):
    other = write(
        tmp_path, "other.txt", ["EU S-ORG", "rejects O", "German B-MISC", "call O", "", "Peter B-PER", "Blackburn O"]
    )
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(gold_file), "--baseline", str(other)])
    assert code == 2 and f"{other}:1: tag 'S-ORG' is not allowed in strict IOB2" in err and "Traceback" not in err


def test_tags_only_predictions_are_laid_onto_the_gold_words(run, gold_file, tmp_path):
    """A published .tags file (tags alone, blank line between sentences) scores like the CoNLL file it came from."""
    tags = write(tmp_path, "pred.tags", ["B-ORG", "O", "O", "O", "", "B-PER", "I-PER", ""])
    conll = write(tmp_path, "pred.txt", ["EU B-ORG", "rejects O", "German O", "call O", "", "Peter B-PER",
                                         "Blackburn I-PER"])  # fmt: skip
    scores = [
        json.loads(run(["evaluate", "--gold", str(gold_file), "--pred", str(p), "--json"])[1]) for p in (tags, conll)
    ]
    assert scores[0]["micro"] == scores[1]["micro"] and scores[0]["micro"]["recall"] == pytest.approx(2 / 3)
    args = ["evaluate", "--gold", str(gold_file), "--pred", str(tags), "--baseline", str(conll), "--json"]
    code, out, _ = run([*args, "--bootstrap", "100"])
    assert code == 0 and json.loads(out)["delta"] == 0


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["B-ORG", "O", "O", "", "B-PER", "I-PER"], "pred.tags:1: 3 tags but the gold sentence at"),
        (["B-ORG", "O", "O", "O", "", "B-PER", "I-PER", "", "O"], "has 2 sentences but"),
        (["B-ORG", "O", "O", "O", "", "Peter B-PER", "I-PER"], "pred.tags:6: expected one tag per line"),
    ],
)
def test_a_tags_only_file_that_does_not_fit_the_gold_names_the_line(run, gold_file, tmp_path, lines, message):
    tags = write(tmp_path, "pred.tags", lines)
    code, _, err = run(["evaluate", "--gold", str(gold_file), "--pred", str(tags)])
    assert code != 0 and message in err and "Traceback" not in err

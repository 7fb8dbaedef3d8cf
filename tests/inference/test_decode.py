"""Decoding options of a loaded tagger: viterbi vs argmax, calibrated entity confidence, a threshold, and the
calibration report (``lsfa evaluate --calibration``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lsfa.data.schemes import validate
from lsfa.errors import LsfaError
from lsfa.inference.decode import decode_predictions, entity_confidences
from lsfa.inference.predictor import WordPredictions
from lsfa.inference.tagger import Tagger
from lsfa.models.saving import read_meta, update_meta
from tests.inference.tiny_taggers import LABELS
from tests.training.synthetic import write_synthetic_corpus

ILL_FORMED = torch.tensor([[4.0, 3.0, 3.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0, 0.0]])  # argmax: O I-PER


def predictions(*sentences: torch.Tensor) -> WordPredictions:
    return WordPredictions([["O"] * len(s) for s in sentences], [[1.0] * len(s) for s in sentences], 0, list(sentences))


def test_viterbi_repairs_what_argmax_leaves_ill_formed() -> None:
    argmax = decode_predictions(predictions(ILL_FORMED), LABELS, "argmax")
    viterbi = decode_predictions(predictions(ILL_FORMED), LABELS, "viterbi")
    assert argmax.tags == [["O", "I-PER"]] and validate(argmax.tags[0], "IOB2")
    assert viterbi.tags == [["B-PER", "I-PER"]] and not validate(viterbi.tags[0], "IOB2")
    probs = ILL_FORMED.softmax(-1)
    assert viterbi.scores[0] == pytest.approx([probs[0, 1].item(), probs[1, 2].item()])


def test_temperature_changes_confidence_not_argmax_tags() -> None:
    sharp = decode_predictions(predictions(ILL_FORMED), LABELS, "argmax", temperature=0.5)
    soft = decode_predictions(predictions(ILL_FORMED), LABELS, "argmax", temperature=2.0)
    assert sharp.tags == soft.tags
    assert sharp.scores[0][0] > soft.scores[0][0]


def test_entity_confidence_is_the_span_probability() -> None:
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0], [1.0, 0.0, 2.0, 0.0, 0.0], [2.0, 0.0, 1.0, 0.0, 0.0]])
    decoded = decode_predictions(predictions(logits), LABELS, "viterbi")
    assert decoded.tags == [["B-PER", "I-PER", "O"]]
    probs = logits.softmax(-1)
    expected = probs[0, 1] * probs[1, 2] * (1 - probs[2, 2])  # ... and the third word does not continue it
    assert entity_confidences(decoded, LABELS) == [[(0, 2, "PER", pytest.approx(expected.item()))]]


def test_tagger_threshold_and_decoding_are_validated_and_applied(tiny_taggers) -> None:
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(LsfaError, match="threshold"):
            Tagger.load(tiny_taggers["rule"], precision="fp32", threshold=bad)
    with pytest.raises(LsfaError, match="decoding: Input should be 'argmax' or 'viterbi'"):
        Tagger.load(tiny_taggers["rule"], precision="fp32", decoding="beam")
    text = "the dog said Bob Carter sat on the mat"
    everything = Tagger.load(tiny_taggers["rule"], precision="fp32", threshold=0.0)(text)
    assert [(e.text, e.label) for e in everything] == [("Bob Carter", "PER")]
    assert 0.0 < everything[0].score <= 1.0
    nothing = Tagger.load(tiny_taggers["rule"], precision="fp32", threshold=min(1.0, everything[0].score + 1e-6))
    assert nothing(text) == []


def test_viterbi_tagger_never_returns_ill_formed_tags(tiny_taggers) -> None:
    tagger = Tagger.load(tiny_taggers["random"], precision="fp32", decoding="viterbi")
    words = [["the", "dog", "Bob", "Carter", "sat"], ["Cole", "Carter", "said"], ["Berlin", "and", "Cole"]] * 3
    for tags in tagger.predict_words(words).tags:
        assert not validate(tags, "IOB2"), tags


def test_old_tagger_folders_load_with_temperature_one(tiny_taggers, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    import shutil

    shutil.copytree(tiny_taggers["rule"], folder)
    meta_file = folder / "lsfa.json"
    data = json.loads(meta_file.read_text())
    data.pop("temperature", None)  # written before calibration existed
    meta_file.write_text(json.dumps(data))
    assert Tagger.load(folder, precision="fp32").temperature == 1.0
    update_meta(folder, temperature=1.7)
    assert read_meta(folder).temperature == 1.7 and Tagger.load(folder, precision="fp32").temperature == 1.7


def test_calibration_report_writes_its_files(tiny_taggers, tmp_path: Path) -> None:
    from lsfa.inference.calibration import calibration_report

    corpus = write_synthetic_corpus(tmp_path / "corpus", train=4, dev=20, test=20)
    tagger = Tagger.load(tiny_taggers["random"], precision="fp32")
    report = calibration_report(tagger, str(corpus), tmp_path / "out", target_precision=0.5)
    assert {path.name for path in (tmp_path / "out").iterdir()} == {
        "calibration.json",
        "reliability.png",
        "thresholds.png",
    }
    for name in ("uncalibrated", "calibrated", "entity_calibrated"):
        assert 0.0 <= report[name]["ece"] <= 1.0
    assert report["entity_calibrated"]["temperature"] == report["temperature"]["fitted_on_dev_entities"]
    assert report["calibrated"]["temperature"] == report["temperature"]["used"]
    assert [row["threshold"] for row in report["thresholds_test"]][:3] == [0.0, 0.05, 0.1]
    assert report["timing"]["viterbi_ms_per_sentence"] >= 0 and "threshold_chosen_on_dev" in report["target_precision"]


def test_cli_threshold_and_decoding_errors_are_one_line(tiny_taggers, monkeypatch, capsys) -> None:
    from lsfa.cli import main

    for args, expected in [
        (["--threshold", "1.5"], "--threshold"),
        (["--decoding", "beam"], "--decoding: Input should be 'argmax' or 'viterbi' (got 'beam')"),
    ]:
        monkeypatch.setattr(
            sys, "argv", ["lsfa", "predict", "--model-dir", str(tiny_taggers["rule"]), "--text", "x", *args]
        )
        with pytest.raises(SystemExit) as exit_:
            main()
        error = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and expected in error and len(error.splitlines()) == 1


def test_evaluate_reads_jsonl_gold_with_the_span_options(tiny_taggers, tmp_path: Path, monkeypatch, capsys) -> None:
    """`lsfa evaluate --model-dir` on a JSONL corpus: a span off the word boundaries is a file:line error by
    default, and --misaligned snap / --overlaps longest read it as `lsfa train` would."""
    from lsfa.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "Angela Merkel visited Berlin ."
    records = [
        {"text": text, "entities": [[0, 13, "PER"]]},
        {"text": text, "entities": [[2, 13, "PER"]]},  # off the words: "gela Merkel"
        {"text": text, "entities": [[0, 13, "PER"], [7, 13, "PER"]]},  # overlapping
    ]
    (corpus / "test.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))

    def evaluate(*flags: str) -> tuple[int, str, str]:
        argv = ["lsfa", "evaluate", "--model-dir", str(tiny_taggers["rule"]), "--corpus", str(corpus), "--json"]
        monkeypatch.setattr(sys, "argv", [*argv, "--precision", "fp32", *flags])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, _, error = evaluate()
    assert code == 2 and "test.jsonl:2" in error and "does not fall" in error
    code, _, error = evaluate("--misaligned", "snap")
    assert code == 2 and "test.jsonl:3" in error and "overlap" in error
    code, out, error = evaluate("--misaligned", "snap", "--overlaps", "longest")
    assert code == 0 and "1 spans snapped" in error and "overlapping dropped" in error
    assert json.loads(out)["micro"]["f1"] >= 0.0
    code, _, error = evaluate("--misaligned", "trim")
    assert code == 2 and "--misaligned" in error and len(error.strip().splitlines()) == 1

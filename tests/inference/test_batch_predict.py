"""Streaming ``lsfa predict``: ``--resume`` after a cut output and ``--workers 2`` equal one uninterrupted process
byte for byte (issue #38 items 1-2); an interrupted output is not overwritten without ``--resume``."""

from __future__ import annotations

import json

from lsfa.inference import batch


def test_resume_and_workers_equal_one_process(tiny_taggers, tmp_path, run):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"Bob Carter sat {i} in Berlin"}) + "\n" for i in range(40)))
    model = str(tiny_taggers["random"])
    base = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", "4"]
    assert run([*base, "-o", str(tmp_path / "a.jsonl")])[0] == 0
    reference = (tmp_path / "a.jsonl").read_bytes()
    lines = reference.splitlines(keepends=True)
    # an interrupted run: 9 whole lines and a cut one, with the state file it wrote first
    (tmp_path / ".b.jsonl.partial").write_bytes(b"".join(lines[:9]) + lines[9][:10])
    surveyed = batch.survey(batch.Source(str(source), str(source), "jsonl", "jsonl", 4))
    (tmp_path / ".b.jsonl.partial.json").write_text(json.dumps(batch.run_state(surveyed, [(0, 40)])))
    assert run([*base, "-o", str(tmp_path / "b.jsonl")])[0] == 2  # refused without --resume
    assert run([*base, "-o", str(tmp_path / "b.jsonl"), "--resume"])[0] == 0
    assert (tmp_path / "b.jsonl").read_bytes() == reference
    assert run([*base, "-o", str(tmp_path / "c.jsonl"), "--workers", "2"])[0] == 0
    assert (tmp_path / "c.jsonl").read_bytes() == reference


def test_bad_last_line_fails_before_the_model_loads(tiny_taggers, tmp_path, monkeypatch, run):
    """The first pass checks every line, so a bad line at the end of a long file is reported (file and line)
    before any model work, and no output is started."""
    from lsfa.inference import tagger

    source = tmp_path / "in.jsonl"
    good = "".join(json.dumps({"text": f"Bob sat {i}"}) + "\n" for i in range(600))  # more than two chunks
    source.write_text(good + '{"txt": "misspelled key"}\n')

    def refuse_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad line was found")

    monkeypatch.setattr(tagger.Tagger, "load", classmethod(refuse_load))
    args = ["predict", "--model-dir", str(tiny_taggers["random"]), "-i", str(source), "-o", str(tmp_path / "o.jsonl")]
    code, _, err = run(args)
    assert code == 2
    assert f"{source}:601" in err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / ".o.jsonl.partial").exists()


def test_conll_output_sharded_equals_one_process(tiny_taggers, tmp_path, run):
    """CoNLL output (whole sentences, blank-line terminated) from --workers 2 equals one process byte for byte."""
    source = tmp_path / "in.txt"
    source.write_text("".join(f"Alice Smith went to Paris {i}\n" for i in range(30)))
    model = str(tiny_taggers["random"])
    base = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", "4"]
    conll = ["--output-format", "conll"]
    assert run([*base, *conll, "-o", str(tmp_path / "a.conll")])[0] == 0
    reference = (tmp_path / "a.conll").read_bytes()
    assert reference.count(b"\n\n") >= 29
    assert run([*base, *conll, "-o", str(tmp_path / "c.conll"), "--workers", "2"])[0] == 0
    assert (tmp_path / "c.conll").read_bytes() == reference

"""Streaming ``lsfa predict`` (issue #38 items 1-2): ``--resume`` after a cut output (JSONL and CoNLL) and after a
real kill -9, and ``--workers 2``, equal one uninterrupted process byte for byte; the reader holds one chunk, not
the file; an interrupted output is not overwritten without ``--resume`` nor continued with other settings; a
worker's error is one line."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch

from lsfa.cli import main
from lsfa.inference import batch, files

SLOW_PREDICT = Path(__file__).with_name("slow_predict.py")


class Interrupted(Exception):
    """Raised inside a run by :func:`interrupt_after`: the run stops part-way, as after Ctrl-C."""


def interrupt_after(monkeypatch, chunks: int) -> None:
    """Make the next run stop when it is about to tag chunk ``chunks + 1`` (its ``.partial`` output and state
    stay, as an interrupted run leaves them)."""
    original, calls = files.rendered_outputs, []

    def rendered_outputs(*args, **kwargs):
        calls.append(None)
        if len(calls) > chunks:
            raise Interrupted
        return original(*args, **kwargs)

    monkeypatch.setattr(files, "rendered_outputs", rendered_outputs)


def interrupted_state(run, monkeypatch, args: list[str], output: Path, chunks: int = 2) -> str:
    """The state file text of a run of ``args`` into ``output`` stopped after ``chunks`` chunks."""
    with monkeypatch.context() as patch:
        interrupt_after(patch, chunks)
        with pytest.raises(Interrupted):
            run([*args, "-o", str(output)])
    assert batch.partial_path(output).exists() and not output.exists()
    return batch.state_path(output).read_text()


def test_resume_and_workers_equal_one_process(tiny_taggers, tmp_path, run, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"Bob Carter sat {i} in Berlin"}) + "\n" for i in range(40)))
    model = str(tiny_taggers["random"])
    base = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", "4"]
    assert run([*base, "-o", str(tmp_path / "a.jsonl")])[0] == 0
    reference = (tmp_path / "a.jsonl").read_bytes()
    lines = reference.splitlines(keepends=True)
    # an interrupted run: its state file, then 9 whole lines and a cut one in its partial output
    interrupted_state(run, monkeypatch, base, tmp_path / "b.jsonl")
    (tmp_path / ".b.jsonl.partial").write_bytes(b"".join(lines[:9]) + lines[9][:10])
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


def conll_input(path: Path, documents: int = 3, sentences: int = 5) -> None:
    """A CoNLL file with ``-DOCSTART-`` documents, a POS column and tags, 4-7 words a sentence."""
    blocks = []
    for doc in range(documents):
        blocks.append("-DOCSTART- -X- O\n")
        for i in range(sentences):
            words = ["Bob", "Carter", "sat", "in", "Berlin", str(doc), str(i)][: 4 + (doc + i) % 4]
            blocks.append("".join(f"{word} NNP O\n" for word in words))
    path.write_text("\n".join(blocks) + "\n")


def test_conll_resume_equals_one_process(tiny_taggers, tmp_path, run, monkeypatch):
    """--resume of a CoNLL output cut mid-line, inside a sentence (no blank line yet) and right after a
    ``-DOCSTART-`` block: the cut-off part, document marker included, is written again, byte for byte."""
    source = tmp_path / "in.conll"
    conll_input(source)
    model = str(tiny_taggers["random"])
    base = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", "4"]
    assert run([*base, "-o", str(tmp_path / "a.conll")])[0] == 0
    reference = (tmp_path / "a.conll").read_bytes()
    assert reference.count(b"-DOCSTART-") == 3 and reference.count(b"\n\n") == 18  # 15 sentences, 3 markers
    state = interrupted_state(run, monkeypatch, base, tmp_path / "s.conll")
    second_doc = reference.index(b"-DOCSTART-", 1)
    cuts = {
        "mid-line": reference.index(b"\n", second_doc + 40) - 3,
        "no-blank-line": reference.index(b"\n\n", second_doc + 40) + 1,
        "after-docstart": second_doc + len(b"-DOCSTART- -X- O\n\n"),
    }
    for name, cut in cuts.items():
        target = tmp_path / f"{name}.conll"
        batch.partial_path(target).write_bytes(reference[:cut])
        batch.state_path(target).write_text(state)
        assert run([*base, "-o", str(target), "--resume"])[0] == 0, name
        assert target.read_bytes() == reference, name


def _input_position(path: Path) -> list[int]:
    """The file offsets of this process's open descriptors of ``path`` (Linux ``/proc/self/fdinfo``)."""
    positions = []
    for fd in os.listdir("/proc/self/fd"):
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()):
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
            positions.append(int(info.split("pos:")[1].split()[0]))
    return positions


def _record_ends(path: Path, conll: bool) -> list[int]:
    """``[0, byte offset after record 1, after record 2, ...]``: a record is a line, or a CoNLL sentence with its
    blank line."""
    ends, offset = [0], 0
    with path.open("rb") as stream:
        for line in stream:
            offset += len(line)
            if not conll or line == b"\n":
                ends.append(offset)
    return ends


READERS = {"text": "iter_text_records", "jsonl": "iter_jsonl_records", "conll": None}


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="reads file offsets from /proc (Linux)")
@pytest.mark.parametrize("input_format", ["text", "jsonl", "conll"])
def test_streaming_holds_one_chunk_reads_and_writes_as_it_goes(tiny_taggers, tmp_path, monkeypatch, run, input_format):
    """Bounded memory without timing anything. Each record the reader yields is watched through a weak reference;
    whenever a chunk is about to be tagged: at most that chunk (and the record that closed it) is alive, the
    input is open and read only a buffer beyond that chunk, and the output already holds every earlier chunk.
    Reading the input whole (a list of records, ``read_bytes``, another reader) or writing at the end fails it."""
    n, chunk, pad = 96, 8, "x" * 1500  # records of ~1.5 kB: the file is many io buffers long
    source = tmp_path / f"in.{'txt' if input_format == 'text' else input_format}"
    if input_format == "conll":
        source.write_text("".join(f"Bob {pad} O\nsat {i} O\n\n" for i in range(n)))
    elif input_format == "jsonl":
        source.write_text("".join(json.dumps({"text": f"Bob sat {i}", "pad": pad}) + "\n" for i in range(n)))
    else:
        source.write_text("".join(f"Bob sat {i} {pad}\n" for i in range(n)))
    ends = _record_ends(source, conll=input_format == "conll")
    watched_refs, seen, checks = [], [], []

    def watched(reader):
        def wrapper(*args, **kwargs):
            for item in reader(*args, **kwargs):
                watched_refs.append(weakref.ref(item))
                seen.append(None)
                yield item

        return wrapper

    if READERS[input_format]:
        monkeypatch.setattr(files, READERS[input_format], watched(getattr(files, READERS[input_format])))
    else:
        monkeypatch.setattr(files.ConllStream, "__iter__", watched(files.ConllStream.__iter__))
    original = files.rendered_outputs
    partial = tmp_path / ".o.jsonl.partial"

    def rendered_outputs(tagger, items, *rest):
        gc.collect()
        alive = sum(ref() is not None for ref in watched_refs)
        checks.append((alive, _input_position(source), partial.read_bytes().count(b"\n")))
        return original(tagger, items, *rest)

    monkeypatch.setattr(files, "rendered_outputs", rendered_outputs)
    model = str(tiny_taggers["random"])
    args = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", str(chunk)]
    assert run([*args, "--format", input_format, "--output-format", "jsonl", "-o", str(tmp_path / "o.jsonl")])[0] == 0
    assert len(seen) == 2 * n and len(checks) == n // chunk  # both passes went through the watched reader
    slack = 2 * io.DEFAULT_BUFFER_SIZE
    for k, (alive, positions, lines_written) in enumerate(checks):
        assert alive <= chunk + 1, f"chunk {k}: {alive} records alive"
        assert lines_written == k * chunk, f"chunk {k}: {lines_written} lines written before it"
        if k == len(checks) - 1:  # the reader has met the end of the file and closed it
            assert positions in ([], [ends[n]]), f"last chunk: {positions}"
            continue
        assert len(positions) == 1, f"chunk {k}: the input is open {len(positions)} times while tagging"
        assert positions[0] <= ends[(k + 1) * chunk + 1] + slack, f"chunk {k}: read ahead to {positions}"


def _complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_part_way_then_resume_equals_uninterrupted(tiny_taggers, tmp_path, run):
    """A real ``lsfa predict`` process is sent SIGKILL once its output holds 5 chunks (each chunk is slowed by
    tests/inference/slow_predict.py, so the kill lands part-way); ``--resume`` then completes it byte-identical to
    an uninterrupted run."""
    n, chunk = 200, 4
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"Bill Cole met {i} in Berlin"}) + "\n" for i in range(n)))
    model = str(tiny_taggers["random"])
    base = ["predict", "--model-dir", model, "--precision", "fp32", "-i", str(source), "--chunk", str(chunk)]
    assert run([*base, "-o", str(tmp_path / "a.jsonl")])[0] == 0
    target = tmp_path / "b.jsonl"
    command = [sys.executable, str(SLOW_PREDICT), "0.1", *base, "--threads", "1", "-o", str(target)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _complete_lines(batch.partial_path(target)) < 5 * chunk:
        assert process.poll() is None, f"lsfa predict ended before the kill: {process.stderr.read()}"
        assert time.monotonic() < deadline, "no output after 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    process.stderr.close()
    assert not target.exists() and batch.state_path(target).exists()
    assert 5 * chunk <= _complete_lines(batch.partial_path(target)) < n  # killed part-way, not at the end
    assert run([*base, "-o", str(target), "--resume"])[0] == 0
    assert target.read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert not batch.state_path(target).exists() and not batch.partial_path(target).exists()


def _main_fd(monkeypatch, capfd, args: list[str]) -> tuple[int, str]:
    """Run the entry point in this process; ``(exit code, stderr)`` captured at the file-descriptor level, so the
    stderr of spawned worker processes is in it too."""
    monkeypatch.setattr(sys, "argv", ["lsfa", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capfd.readouterr().err


def test_bad_line_met_by_a_worker_is_one_line_with_file_and_line(tiny_taggers, tmp_path, monkeypatch, capfd):
    """A worker that meets a bad line (the file changed after the first pass checked it) stops with file:line:
    the run exits 2 with that one line and no traceback, from the worker or the parent."""
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": f"Bob sat {i}"}) + "\n" for i in range(40)]
    source.write_text("".join(lines))
    original = batch.predict_with_workers

    def change_input_then_run(*args, **kwargs):  # after the parent's first pass, before the workers read
        source.write_text("".join(lines[:6]) + '{"txt": "misspelled key"}\n' + "".join(lines[7:]))
        return original(*args, **kwargs)

    monkeypatch.setattr(batch, "predict_with_workers", change_input_then_run)
    args = ["predict", "--model-dir", str(tiny_taggers["random"]), "-i", str(source), "--chunk", "4"]
    code, err = _main_fd(monkeypatch, capfd, [*args, "--workers", "2", "-o", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {source}:7: ") and "found neither" in err, err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU (to ask for a missing one)")
def test_worker_failing_to_load_is_one_line(tiny_taggers, tmp_path, monkeypatch, capfd):
    """Both workers fail at load (a GPU that is not there): one line, exit 2, no traceback."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"Bob sat {i}"}) + "\n" for i in range(20)))
    args = ["predict", "--model-dir", str(tiny_taggers["random"]), "-i", str(source), "--chunk", "4"]
    code, err = _main_fd(monkeypatch, capfd, [*args, "--device", "cuda", "--workers", "2", "-o", str(tmp_path / "o")])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "GPU" in err or "cuda" in err, err


def test_resume_with_other_settings_is_refused_in_one_line(tiny_taggers, tmp_path, run, monkeypatch):
    """An interrupted output continued with another tagger (or one saved again), other options, another chunk size,
    a changed input or another worker count would mix two runs' entities: each is refused in one line naming what
    differs, and the partial output is left as it was."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"Bob Carter sat {i}"}) + "\n" for i in range(40)))
    target = tmp_path / "o.jsonl"
    args = ["predict", "--precision", "fp32", "-i", str(source), "-o", str(target)]
    interrupted_state(run, monkeypatch, [*args, "--model-dir", str(tiny_taggers["random"]), "--chunk", "4"], target)
    partial = batch.partial_path(target).read_bytes()
    assert partial.count(b"\n") == 8
    same = ["--model-dir", str(tiny_taggers["random"]), "--chunk", "4"]
    cases = {
        "tagger": ["--model-dir", str(tiny_taggers["rule"]), "--chunk", "4"],
        "--decoding": [*same, "--decoding", "argmax"],
        "--threshold": [*same, "--threshold", "0.5"],
        "chunk": ["--model-dir", str(tiny_taggers["random"]), "--chunk", "8"],
        "worker(s)": [*same, "--workers", "2"],
    }
    for name, extra in cases.items():
        code, _, err = run([*args, *extra, "--resume"])
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert f"made with {name} " in err or f"by 1 {name}" in err, (name, err)
        assert batch.partial_path(target).read_bytes() == partial and not target.exists()
    meta = tiny_taggers["random"] / "lsfa.json"
    saved = meta.stat()
    try:  # the tagger saved again (retrained) in the same folder
        os.utime(meta, ns=(saved.st_atime_ns, saved.st_mtime_ns + 10**9))
        code, _, err = run([*args, *same, "--resume"])
        assert code == 2 and "was saved again" in err and len(err.strip().splitlines()) == 1, err
    finally:
        os.utime(meta, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    with source.open("a") as stream:  # the input grew since the interrupted run
        stream.write(json.dumps({"text": "Bob"}) + "\n")
    code, _, err = run([*args, *same, "--resume"])
    assert code == 2 and "input_bytes" in err, err

"""Peak memory against input size, and kill -9 + ``--resume``, for streaming ``lsfa predict`` (issue #38 item 4).

    .venv/bin/python scripts/batch_predict_scale.py memory OUT.json --sizes-mb 1,4,16 [--big-mb 1000] [--tagger DIR]
    .venv/bin/python scripts/batch_predict_scale.py resume OUT.json --docs 4000 [--tagger DIR]

``memory`` generates JSONL inputs of the given sizes under a temporary folder (never committed), tags each with
one ``lsfa predict`` process at one thread and records GNU time's peak resident set and the wall time. Flat peak
memory over sizes is what streaming promises; the slope (MB of RSS per MB of input) is in the result.

``resume`` tags one generated input three ways: uninterrupted; killed with SIGKILL when half the records are in
the ``.partial`` output; then ``--resume``. It checks the resumed output equals the uninterrupted one byte for
byte and records the time from the resume's start to its first new record and its total time.

Without ``--tagger`` both use a tiny random llama tagger (hidden size 32, 2 layers, the test suite's
``tests.inference.tiny_taggers.build_random``), so the cost is reading, tokenising and writing rather than the
model. ``--tagger smollm2-135m`` builds an untrained tagger on the real SmolLM2-135M (``lsfa models fetch``
cache): real load time and speed, arbitrary tags.

The inputs are sentences recombined at random from a fixed word list with a fixed seed: realistic lengths and
capitalisation, no corpus text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.inference.tiny_taggers (the tiny tagger the tests use)


def _words(text: str) -> list[str]:
    """A word list written as one string (shorter to read than a list literal)."""
    return text.split()


NAMES = _words("Peter Maria Ahmed Chen Olga Juan Fatima Hiroshi Anna Kwame Sofia Ivan Priya Lars Amara Diego")
SURNAMES = _words("Blackburn Schmidt Okafor Tanaka Rossi Kowalski Haddad Novak Silva Lindqvist Mensah Dubois")
PLACES = _words("Brussels Berlin Lagos Osaka Lima Toronto Cairo Oslo Hanoi Nairobi Quito Prague Madrid Perth")
ORGS = _words("Acme Corp. the European Commission Reuters Siemens the UN FIFA Toyota Oxfam the IMF Nokia")
WORDS = _words(
    "the a of to in and said on for with was by at from that his her their new after before during over "
    "government minister company team market report talks deal match season shares police court week year "
    "announced rejected met visited signed won lost rose fell called told expected would could has had "
    "percent million first second last two three local national foreign economic final early late "
    "officials leaders players prices talks plans results support growth trade security election"
)


def sentence(rng: random.Random) -> str:
    """One sentence of 6-40 words: mostly common words, with names, places and organisations mixed in."""
    words = []
    for _ in range(rng.randint(6, 40)):
        draw = rng.random()
        if draw < 0.06:
            words += [rng.choice(NAMES), rng.choice(SURNAMES)]
        elif draw < 0.12:
            words.append(rng.choice(PLACES))
        elif draw < 0.16:
            words.append(rng.choice(ORGS))
        elif draw < 0.19:
            words.append(str(rng.randint(1, 2030)))
        else:
            words.append(rng.choice(WORDS))
    words[0] = words[0][0].upper() + words[0][1:]
    return " ".join(words) + rng.choice([".", ".", ".", "?", "!"])


def generate(path: Path, megabytes: float, seed: int = 0) -> int:
    """A JSONL file of ``{"id", "text"}`` lines, about ``megabytes`` MB; return its records. Texts are drawn from a
    pool of 50,000 generated sentences (JSON-encoded once), so a gigabyte is written in seconds, not minutes."""
    rng, limit, records, size = random.Random(seed), int(megabytes * 1e6), 0, 0
    pool = [json.dumps(sentence(rng)) for _ in range(50_000)]
    with path.open("w", encoding="utf-8") as stream:
        while size < limit:
            line = f'{{"id": {records}, "text": {pool[rng.randrange(len(pool))]}}}\n'
            stream.write(line)
            size, records = size + len(line), records + 1
    return records


def build_tagger(kind: str, folder: Path) -> Path:
    """The tagger folder to run: an existing folder, the tiny random tagger, or an untrained SmolLM2-135M one."""
    if kind not in ("tiny", "smollm2-135m"):
        return Path(kind)
    from tests.inference.tiny_taggers import LABELS, build_random
    from tests.tiny import tiny_decoder_dir

    if kind == "tiny":
        return build_random(tiny_decoder_dir(folder / "base", "llama"), folder / "tagger")
    import torch

    from lsfa.models.classifier import build_token_classifier, load_tokenizer
    from lsfa.models.saving import TaggerMeta, save_tagger

    base = Path(os.environ.get("LSFA_HOME", Path.home() / ".cache/lsfa")) / "models" / kind
    torch.manual_seed(0)
    model = build_token_classifier(base, LABELS, "full")
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=LABELS, weights="full", max_length=128)
    return save_tagger(model.eval(), load_tokenizer(base), folder / "tagger", meta)


def predict_command(tagger: Path, source: Path, output: Path, *extra: str) -> list[str]:
    """One ``lsfa predict`` process at one thread, under GNU time (wall seconds, peak RSS in kB)."""
    lsfa = str(Path(sys.executable).parent / "lsfa")
    return [lsfa, "predict", "--model-dir", str(tagger), "-i", str(source), "-o", str(output), "--threads", "1", *extra]


def timed(command: list[str], work: Path, name: str) -> dict[str, float]:
    """Run ``command`` under /usr/bin/time; its wall seconds and peak resident set (MB)."""
    timing = work / f"{name}.time"
    subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(timing), *command], check=True, stderr=subprocess.DEVNULL)
    seconds, peak_kb = timing.read_text().split()[-2:]
    return {"seconds": float(seconds), "peak_rss_mb": round(int(peak_kb) / 1024, 1)}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return covariance / sum((x - mean_x) ** 2 for x, _ in points)


def memory(args, work: Path, tagger: Path) -> dict:
    """Peak RSS and time of one process per input size."""
    rows = []
    for megabytes in args.sizes_mb:
        source = work / f"in-{megabytes}mb.jsonl"
        records = generate(source, megabytes)
        row = {"input_mb": round(source.stat().st_size / 1e6, 2), "records": records}
        row |= timed(predict_command(tagger, source, work / "out.jsonl"), work, f"mem{megabytes}")
        row["docs_per_s"] = round(records / row["seconds"], 1)
        rows.append(row)
        source.unlink()
        print(json.dumps(row), flush=True)
    points = [(row["input_mb"], row["peak_rss_mb"]) for row in rows]
    result = {"runs": rows, "peak_rss_mb_per_input_mb": round(slope(points), 4) if len(points) > 1 else None}
    if args.big_mb:
        result["big_input_partly_tagged"] = big_input(args, work, tagger)
    return result


def big_input(args, work: Path, tagger: Path) -> dict:
    """The whole first pass over a ``--big-mb`` input, then ``--big-tag-seconds`` of tagging, then SIGKILL: the
    peak RSS (GNU time, kernel's maximum) of the part of the run that would grow if the input were held whole."""
    source = work / "big.jsonl"
    started = time.monotonic()
    records = generate(source, args.big_mb)
    row = {"input_mb": round(source.stat().st_size / 1e6, 1), "records": records,
           "generate_seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    target, timing = work / "big-out.jsonl", work / "big.time"
    partial = target.with_name(f".{target.name}.partial")
    start = time.monotonic()
    timer = subprocess.Popen(["/usr/bin/time", "-f", "%e %M", "-o", str(timing),
                              *predict_command(tagger, source, target)], stderr=subprocess.DEVNULL)  # fmt: skip
    while not partial.exists() and timer.poll() is None:  # the first pass, then the model load
        time.sleep(0.2)
    row["seconds_to_first_output"] = round(time.monotonic() - start, 1)
    time.sleep(args.big_tag_seconds)
    for child in psutil.Process(timer.pid).children():
        child.send_signal(signal.SIGKILL)
    timer.wait()
    row["records_tagged_before_kill"] = lines_in(partial)
    seconds, peak_kb = timing.read_text().split()[-2:]
    row["seconds"] = float(seconds)
    row["peak_rss_mb"] = round(int(peak_kb) / 1024, 1)
    source.unlink()
    print(json.dumps(row), flush=True)
    return row


def lines_in(path: Path) -> int:
    """Complete lines in a file (0 while it does not exist)."""
    try:
        with path.open("rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def kill_at(command: list[str], partial: Path, lines: int) -> dict:
    """Start ``command``, SIGKILL it once ``partial`` holds ``lines`` complete lines."""
    start = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    while lines_in(partial) < lines:
        if process.poll() is not None:
            raise SystemExit(f"lsfa predict finished (exit {process.returncode}) before it could be killed")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return {"killed_after_s": round(time.monotonic() - start, 2), "lines_at_kill": lines_in(partial)}


def resumed(command: list[str], partial: Path) -> dict:
    """Run ``command`` (a ``--resume``), timing its first new record and its end."""
    start, before = time.monotonic(), lines_in(partial)
    process, first_new = subprocess.Popen(command, stderr=subprocess.DEVNULL), None
    while process.poll() is None:
        if first_new is None and partial.exists() and lines_in(partial) > before:
            first_new = time.monotonic() - start
        time.sleep(0.05)
    if process.returncode != 0:
        raise SystemExit(f"lsfa predict --resume failed (exit {process.returncode})")
    total = time.monotonic() - start
    return {"seconds_to_first_new_record": round(first_new or total, 2), "seconds_total": round(total, 2)}


def resume(args, work: Path, tagger: Path) -> dict:
    """Uninterrupted, killed at half-way, resumed: the outputs compared byte for byte."""
    source = work / "in.jsonl"
    with source.open("w", encoding="utf-8") as stream:
        rng = random.Random(1)
        stream.writelines(json.dumps({"id": i, "text": sentence(rng)}) + "\n" for i in range(args.docs))
    reference = timed(predict_command(tagger, source, work / "a.jsonl"), work, "uninterrupted")
    target = work / "b.jsonl"
    partial = target.with_name(f".{target.name}.partial")
    killed = kill_at(predict_command(tagger, source, target), partial, args.docs // 2)
    killed["lines_at_kill"] = lines_in(partial)
    again = resumed([*predict_command(tagger, source, target), "--resume"], partial)
    identical = (work / "a.jsonl").read_bytes() == target.read_bytes()
    return {"records": args.docs, "uninterrupted": reference, "killed": killed, "resume": again,
            "identical_to_uninterrupted": identical}  # fmt: skip


def machine_and_commit() -> dict[str, str]:
    """Where and on what code the numbers were measured (the machine line of `lsfa env`)."""
    machine = subprocess.run([sys.executable, "-m", "lsfa.cli", "env"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    commit = os.environ.get("BENCH_COMMIT") or commit.stdout.strip()  # set when run from an exported tree
    return {"machine": machine.strip().splitlines()[-1], "commit": commit,
            "date": time.strftime("%Y-%m-%d", time.gmtime())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["memory", "resume"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes-mb", type=lambda text: [float(part) for part in text.split(",")], default=[4, 16])
    parser.add_argument("--big-mb", type=float, default=0, help="memory: also a first pass over this size")
    parser.add_argument("--big-tag-seconds", type=float, default=120, help="memory: tagging after the first pass")
    parser.add_argument("--docs", type=int, default=4000, help="resume: records in the input")
    parser.add_argument("--tagger", default="tiny", help="tiny, smollm2-135m or a tagger folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lsfa-scale-") as folder:
        work = Path(folder)
        tagger = build_tagger(args.tagger, work / "model")
        result = {"what": args.what, "tagger": args.tagger, "threads": 1, **machine_and_commit()}
        result |= (memory if args.what == "memory" else resume)(args, work, tagger)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

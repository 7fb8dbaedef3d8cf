"""Load test for ``lsfa serve``: many concurrent clients, mixed request sizes, every answer checked.

    python bench/load_test.py --model-dir runs/conll2003-lsfa-lora/model      # starts `lsfa serve` itself
    python bench/load_test.py --tiny                                          # a tiny random tagger (no model needed)
    python bench/load_test.py --url http://127.0.0.1:8000 [--api-key KEY]     # an already running server

Phases:

1. **Reference.** Every distinct text of the request pool is sent alone, one request at a time, so the
   server answers it in a batch of its own. This is the expected answer for that text.
2. **Load.** ``--requests`` requests (1-4 texts of mixed sizes each, from short sentences to texts that
   need several windows) from ``--concurrency`` clients on loopback. Each response must be a 200 and, text
   by text, have the reference entities (same offsets, labels and texts, and offsets that slice its own
   input to each entity's text); a difference means cross-talk between requests batched together, or a
   prediction that depends on the batch. Scores may drift a little (batch composition changes padding
   and packing, hence summation order, which bf16 makes visible): the largest drift is reported, and how
   many responses drift by more than ``--score-tolerance``, but drift alone does not make an answer wrong.
3. **Unbatched baseline** (``--baseline``, only when this script starts the server): the same load
   against a server started with ``--max-batch-texts 1 --batch-wait-ms 0``, to show what micro-batching buys.

Prints one JSON object: status counts, 5xx count, correctness, p50/p90/p99/max latency, requests/s and
texts/s, plus the machine and settings (also written to ``--output`` when given).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

SENTENCES = [
    "Peter Blackburn visited Brussels on Tuesday to meet officials of the European Commission .",
    "EU rejects German call to boycott British lamb .",
    "Germany 's representative to the European Union 's veterinary committee Werner Zwingmann said on Wednesday "
    "consumers should buy sheepmeat from countries other than Britain .",
    "Rare Hendrix song draft sells for almost $ 17,000 at Christie 's in London .",
    "China says Taiwan spoils atmosphere for talks with Beijing .",
    "Japan 's Toyota Motor Corp. reported higher profits , Reuters said in Tokyo .",
    "Dr. Anna Schmidt of the University of Zürich presented the results in São Paulo .",
    "Manchester United beat Arsenal 2-1 at Old Trafford on Saturday .",
    "The New York Stock Exchange closed early after a storm hit Manhattan .",
    "Prime Minister Benjamin Netanyahu met Palestinian President Yasser Arafat in Gaza .",
    "Microsoft and Intel shares fell on Nasdaq after the report from Goldman Sachs .",
    "Swiss tennis player Martina Hingis won the final in Melbourne .",
    "Zoë and José flew from Reykjavík to Kraków with Lufthansa 🙂 .",
    "Nobody said anything about the weather that morning .",
    "The committee will meet again next week to discuss the budget .",
    "Brazil 's Petrobras signed a deal with Shell to explore off the coast of Rio de Janeiro .",
]

MIXES = {
    "standard": [(1, 0.55), (3, 0.25), (10, 0.12), (40, 0.08)],
    "light": [(1, 0.70), (2, 0.20), (5, 0.07), (20, 0.03)],
}
"""Sentences per text and how often. ``standard``: mostly short texts, some long enough to need several
windows of 512 sub-tokens. ``light``: about 40 % of the characters, for real models on a small CPU."""


def build_pool(seed: int, distinct: int, mix: str = "standard") -> list[str]:
    """Distinct texts of mixed sizes (a numbered tag makes each text unique, so cross-talk is visible)."""
    rng = random.Random(seed)
    sizes, weights = zip(*MIXES[mix], strict=True)
    pool = []
    for index in range(distinct):
        count = rng.choices(sizes, weights)[0]
        pool.append(" ".join(rng.choice(SENTENCES) for _ in range(count)) + f" ( item {index} )")
    return pool


def build_requests(pool: list[str], count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed + 1)
    return [rng.sample(pool, rng.choices([1, 2, 4], [0.6, 0.25, 0.15])[0]) for _ in range(count)]


def key(entities: list[dict]) -> list[tuple]:
    return [(e["start"], e["end"], e["label"], e["text"]) for e in entities]


def check_answer(text: str, got: list[dict], want: list[dict]) -> float | None:
    """The largest score drift from the reference, or ``None`` if the entities themselves differ."""
    if key(got) != key(want) or any(text[e["start"] : e["end"]] != e["text"] for e in got):
        return None
    return max((abs(a["score"] - b["score"]) for a, b in zip(got, want, strict=True)), default=0.0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def reference_answers(url: str, headers: dict, pool: list[str]) -> dict[str, list[dict]]:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        answers = {}
        for text in pool:
            response = await client.post("/v1/ner", json={"texts": [text]})
            response.raise_for_status()
            answers[text] = response.json()["results"][0]["entities"]
        return answers


async def run_load(
    url: str, headers: dict, requests: list[list[str]], concurrency: int, expected: dict, tolerance: float
) -> dict:
    """Send all requests from ``concurrency`` clients; check and time every response."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for texts in requests:
        queue.put_nowait(texts)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    outcome = {"correct": 0, "incorrect": 0, "transport_errors": 0, "score_drift_over_tolerance": 0, "texts_changed": 0}
    drifts: list[float] = []
    examples: list[dict] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
            while not queue.empty():
                texts = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/ner", json={"texts": texts})
                except httpx.HTTPError as error:
                    outcome["transport_errors"] += 1
                    examples.append({"error": repr(error)})
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code != 200:
                    outcome["incorrect"] += 1
                    examples.append({"status": response.status_code, "body": response.text[:300]})
                    continue
                results = response.json()["results"]
                checks = [
                    check_answer(text, result["entities"], expected[text])
                    for text, result in zip(texts, results, strict=False)
                ]
                ok = len(results) == len(texts) and None not in checks
                outcome["texts_changed"] += checks.count(None) + max(0, len(texts) - len(results))
                outcome["correct" if ok else "incorrect"] += 1
                if ok:
                    drifts.append(max(checks))  # type: ignore[type-var]
                    outcome["score_drift_over_tolerance"] += max(checks) > tolerance  # type: ignore[operator]
                if not ok and len(examples) < 5:
                    want = [expected[text] for text in texts]
                    examples.append({"texts": [text[:80] for text in texts], "got": results, "want": want})

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    n_texts = sum(len(texts) for texts in requests)
    return {
        "requests": len(requests),
        "concurrency": concurrency,
        "texts": n_texts,
        "characters": sum(len(text) for texts in requests for text in texts),
        "statuses": statuses,
        "server_errors_5xx": sum(n for status, n in statuses.items() if status.startswith("5")),
        **outcome,
        "texts_changed_rate": round(outcome["texts_changed"] / max(n_texts, 1), 5),
        "max_score_drift": round(max(drifts, default=0.0), 4),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p90": round(percentile(latencies, 90) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
            "mean": round(sum(latencies) / len(latencies) * 1000, 1),
        },
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(requests) / wall, 2),
        "texts_per_s": round(n_texts / wall, 2),
        "mismatch_examples": examples[:5],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process in MB (Linux /proc), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


@contextmanager
def served(model_dir: Path, precision: str, threads: int | None, extra: list[str], log: Path):
    """Start `lsfa serve` in a subprocess on a free loopback port; yield its URL and pid; stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "lsfa.cli", "serve", "--model-dir", str(model_dir), "--port", str(port)]
    command += ["--precision", precision, *(["--threads", str(threads)] if threads else []), *extra]
    environment = {**os.environ, "LSFA_API_KEY": ""}
    with open(log, "a") as log_stream:
        process = subprocess.Popen(command, stdout=log_stream, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with status {process.returncode}; see {log}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start within 10 minutes; see {log}")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def build_tiny_tagger(folder: Path) -> Path:
    """A tiny random-weight tagger (from tests/tiny.py) for exercising the server without a real model."""
    sys.path.insert(0, str(REPO))
    from tests.tiny import tiny_decoder_dir

    from lsfa.models.classifier import build_token_classifier, load_tokenizer
    from lsfa.models.saving import TaggerMeta, save_tagger

    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    base = tiny_decoder_dir(folder / "base")
    model = build_token_classifier(base, labels, "full")
    meta = TaggerMeta(base_model="tiny-llama (random weights)", model_type="llama", labels=labels, max_length=128)
    return save_tagger(model, load_tokenizer(base), folder / "tagger", meta)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def sample_memory(pid: int | None, every_s: float, readings: list[tuple[float, float | None]]) -> None:
    """Append (seconds since start, resident MB) every ``every_s`` seconds until cancelled: growth or a plateau."""
    if pid is None or every_s <= 0:
        return
    started = time.perf_counter()
    while True:
        await asyncio.sleep(every_s)
        readings.append((round(time.perf_counter() - started, 1), rss_mb(pid)))


async def measure(
    url: str, headers: dict, args, pool: list[str], requests: list[list[str]], pid: int | None = None
) -> dict:
    """Reference answers, then the load; the server's resident memory (when this script started it) at each step."""
    memory = {"ready_mb": rss_mb(pid)}
    info = httpx.get(url + "/v1/model", headers=headers, timeout=30).json()
    print(f"reference answers for {len(pool)} distinct texts, one request at a time ...", file=sys.stderr)
    expected = await reference_answers(url, headers, pool)
    memory["after_reference_mb"] = rss_mb(pid)
    print(f"{len(requests)} requests from {args.concurrency} clients ...", file=sys.stderr)
    sampler = asyncio.create_task(sample_memory(pid, args.memory_every_s, memory.setdefault("during_load", [])))
    result = await run_load(url, headers, requests, args.concurrency, expected, args.score_tolerance)
    sampler.cancel()
    memory["after_load_mb"] = rss_mb(pid)
    await asyncio.sleep(args.idle_seconds)
    memory[f"after_{args.idle_seconds:g}s_idle_mb"] = rss_mb(pid)
    return {"model": info.get("model"), "attention": info.get("attention"), **result, "server_memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", type=Path, help="Tagger or run folder: start `lsfa serve` on it.")
    target.add_argument("--tiny", action="store_true", help="Start `lsfa serve` on a tiny random tagger.")
    target.add_argument("--url", help="Test an already running server.")
    parser.add_argument("--api-key", default=os.environ.get("LSFA_API_KEY"), help="Bearer key for --url.")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mix", choices=sorted(MIXES), default="standard", help="Text sizes (see MIXES).")
    parser.add_argument("--distinct", type=int, default=120, help="Distinct texts in the request pool.")
    parser.add_argument("--precision", default="auto", help="Server precision when this script starts it.")
    parser.add_argument("--threads", type=int, help="Server torch threads (lsfa serve --threads).")
    parser.add_argument("--score-tolerance", type=float, default=0.02)
    parser.add_argument("--baseline", action="store_true", help="Also run against an unbatched server.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="Idle wait before the last memory reading.")
    parser.add_argument("--memory-every-s", type=float, default=60.0, help="Server memory reading interval under load.")
    parser.add_argument(
        "--max-changed-rate", type=float, default=0.001,
        help="Share of texts whose entities may differ from their answer alone before the run fails (0.1%%).",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="Also write the JSON report here.")
    args = parser.parse_args()

    pool = build_pool(args.seed, args.distinct, args.mix)
    requests = build_requests(pool, args.requests, args.seed)
    report: dict = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"},
    }
    if args.url:
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        report["batched"] = asyncio.run(measure(args.url.rstrip("/"), headers, args, pool, requests))
    else:
        with tempfile.TemporaryDirectory(prefix="lsfa-load-") as scratch:
            model_dir = build_tiny_tagger(Path(scratch)) if args.tiny else args.model_dir
            log = Path(tempfile.gettempdir()) / "lsfa-load-test-server.log"
            runs = {"batched": []}
            if args.baseline:
                runs["unbatched"] = ["--max-batch-texts", "1", "--batch-wait-ms", "0"]
            for name, extra in runs.items():
                print(f"== {name} server", file=sys.stderr)
                with served(model_dir, args.precision, args.threads, extra, log) as (url, pid):
                    report[name] = asyncio.run(measure(url, {}, args, pool, requests, pid))
                    report[name]["server_flags"] = extra
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    batched = report["batched"]
    changed_too_often = batched["texts_changed_rate"] > args.max_changed_rate
    if batched["server_errors_5xx"] or batched["transport_errors"] or changed_too_often:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Attacks on ``lsfa serve`` from outside (issue #33, defects 1-4), each with what a fixed server must do.

    python bench/abuse_test.py --model-dir runs/main-fa/model --threads 1 --output docs/results/server-abuse.json
    python bench/abuse_test.py --tiny                # a tiny random tagger (mechanics only, no real timings)

Starts `lsfa serve` itself (as bench/load_test.py does) and runs, against its loopback port:

1. **Work the counts missed**: ``{"texts": ["=" * 20000]}`` (every ``=`` is a word for the model) must get 413
   before any model work (the answer's time is reported, and ``/healthz``'s ``texts`` must not move).
2. **Silent sockets**: 300 TCP connections that send nothing; ``/healthz`` and a small request must still be
   answered within 1 s, and the server must close the silent sockets after ``--header-timeout-s``.
3. **A queued request whose client leaves**: behind a maximal request (``max_tokens_per_request`` sub-tokens), a
   second request is sent on a raw socket that then closes; it must do no model work (``/healthz``: its texts
   are never tagged, ``dropped_jobs`` counts it).
4. **Head-of-line blocking**: a small request sent one second into a maximal one; its latency is reported beside
   the maximal request's and the time of one forward pass of the server's token budget (the stated bound:
   a small request waits for at most about one pass of each run ahead of it, plus its own).

Prints one JSON report (also written to ``--output``); exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import build_tiny_tagger, machine, served

UNIT = "Peter Blackburn visited Brussels on Tuesday to meet officials of the European Commission . "


def health(url: str) -> dict:
    return httpx.get(url + "/healthz", timeout=30).json()


def timed_post(client: httpx.Client, texts: list[str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    response = client.post("/v1/ner", json={"texts": texts})
    return response.status_code, time.perf_counter() - start, response.text[:300]


def maximal_texts(url: str, per_text: int, per_request: int) -> list[str]:
    """Texts that together come just under the per-request sub-token limit, each under the per-text one, found
    from the counts in the server's own 413 answers (refused requests cost no model work)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        probe = client.post("/v1/ner", json={"texts": [UNIT * 2000]})  # far over the per-text limit
        count = int(re.search(r"is ([\d,]+) sub-tokens", probe.json()["detail"]).group(1).replace(",", ""))
    repeats = int(2000 * 0.97 * per_text / count)
    texts_per_request = max(1, per_request // per_text)
    return [f"{UNIT * repeats}{k}" for k in range(texts_per_request)]


def check_equals(url: str) -> dict:
    before = health(url)["texts"]
    with httpx.Client(base_url=url, timeout=120) as client:
        status, seconds, detail = timed_post(client, ["=" * 20000])
    after = health(url)["texts"]
    return {"status": status, "seconds": round(seconds, 3), "detail": detail, "texts_tagged": after - before,
            "ok": status == 413 and after == before}  # fmt: skip


def check_silent_sockets(url: str, count: int, header_timeout_s: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]
    try:
        probes = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(5):
                start = time.perf_counter()
                healthz = client.get("/healthz").status_code
                probes.append(("healthz", healthz, time.perf_counter() - start))
                status, seconds, _ = timed_post(client, ["Peter Blackburn visited Brussels ."])
                probes.append(("ner", status, seconds))
        time.sleep(header_timeout_s + 2)
        closed = sum(_closed(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    worst = max(seconds for _, _, seconds in probes)
    ok = all(status == 200 for _, status, _ in probes) and worst < 1.0 and closed == count
    return {"silent_sockets": count, "probes": [{"path": p, "status": s, "seconds": round(t, 3)} for p, s, t in probes],
            "worst_seconds": round(worst, 3), "closed_by_server": closed, "ok": ok}  # fmt: skip


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _raw_post(url: str, texts: list[str]) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"texts": texts}).encode()
    head = f"POST /v1/ner HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode() + b"\r\n\r\n" + body)
    return sock


def check_disconnect(url: str, big: list[str]) -> dict:
    before = health(url)
    leaving = [f"{UNIT * 3}gone {k}" for k in range(3)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool, httpx.Client(base_url=url, timeout=600) as client:
        first = pool.submit(timed_post, client, big)
        while health(url)["queued_jobs"] < 1:
            time.sleep(0.05)
        sock = _raw_post(url, leaving)
        time.sleep(0.2)  # received and queued behind the maximal request; then the client goes away
        sock.close()
        status, seconds, _ = first.result()
    time.sleep(1.0)
    after = health(url)
    tagged = after["texts"] - before["texts"]
    dropped = after["dropped_jobs"] - before["dropped_jobs"]
    return {"maximal_status": status, "maximal_seconds": round(seconds, 2), "texts_tagged": tagged,
            "texts_of_the_maximal_request": len(big), "dropped_jobs": dropped,
            "ok": status == 200 and tagged == len(big)}  # fmt: skip


def check_head_of_line(url: str, big: list[str], pass_seconds: float) -> dict:
    small = ["Peter Blackburn visited Brussels ."]
    with concurrent.futures.ThreadPoolExecutor(2) as pool, httpx.Client(base_url=url, timeout=600) as client:
        first = pool.submit(timed_post, client, big)
        time.sleep(1.0)
        second = pool.submit(timed_post, client, small)
        small_status, small_seconds, _ = second.result()
        big_status, big_seconds, _ = first.result()
    bound = 2 * pass_seconds + 1.0
    return {"maximal_seconds": round(big_seconds, 2), "small_seconds": round(small_seconds, 2),
            "one_pass_seconds": round(pass_seconds, 2), "stated_bound_seconds": round(bound, 2),
            "ok": big_status == small_status == 200 and small_seconds <= bound}  # fmt: skip


def one_pass_seconds(url: str, per_pass_tokens: int, per_text: int, big: list[str]) -> float:
    """Time of one forward pass at the server's token budget, from one maximal text alone (its passes)."""
    with httpx.Client(base_url=url, timeout=600) as client:
        _, seconds, _ = timed_post(client, big[:1])
    return seconds * per_pass_tokens / per_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", type=Path, help="Tagger or run folder: start `lsfa serve` on it.")
    target.add_argument("--tiny", action="store_true", help="A tiny random tagger (mechanics only).")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--silent-sockets", type=int, default=300)
    parser.add_argument("--header-timeout-s", type=float, default=5.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    from lsfa.inference.server import SERVER_BATCH_TOKENS, ServerSettings

    settings = ServerSettings(api_key=None)
    report: dict = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
                    "settings": {"precision": args.precision, "threads": args.threads,
                                 "header_timeout_s": args.header_timeout_s, "max_chars_per_text": 400000}}  # fmt: skip
    # A higher character limit only lets the calibration probe (far over the sub-token limit) be counted; every
    # other limit is the default.
    extra = ["--header-timeout-s", str(args.header_timeout_s), "--max-chars-per-text", "400000"]
    with tempfile.TemporaryDirectory(prefix="lsfa-abuse-") as scratch:
        model_dir = build_tiny_tagger(Path(scratch)) if args.tiny else args.model_dir
        log = Path(tempfile.gettempdir()) / "lsfa-abuse-test-server.log"
        with served(model_dir, args.precision, args.threads, extra, log) as (url, _pid):
            big = maximal_texts(url, settings.max_tokens_per_text, settings.max_tokens_per_request)
            report["1_equals_signs"] = check_equals(url)
            report["2_silent_sockets"] = check_silent_sockets(url, args.silent_sockets, args.header_timeout_s)
            pass_seconds = one_pass_seconds(url, SERVER_BATCH_TOKENS, settings.max_tokens_per_text, big)
            report["3_disconnected_queued_request"] = check_disconnect(url, big)
            report["4_head_of_line"] = check_head_of_line(url, big, pass_seconds)
    report["ok"] = all(report[key]["ok"] for key in report if key[0].isdigit())
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()

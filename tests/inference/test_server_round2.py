"""The server's second hardening round (issue #33), each defect tried as a client would: real sockets against a
real uvicorn where the defect lives in the connection, the test client where it lives in the app."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass

import pytest

from lsfa.inference import server
from lsfa.inference.server import MicroBatcher, ServerSettings, create_app
from lsfa.inference.tagger import Tagger
from tests.inference.test_server import running_server
from tests.inference.tiny_taggers import local_client

SETTINGS = {"api_key": None, "batch_wait_ms": 1.0}


@pytest.fixture(scope="module")
def tagger(tiny_taggers) -> Tagger:
    return Tagger.load(tiny_taggers["rule"], precision="fp32")


# --- a fake tagger whose forward passes the test controls -------------------------------------------------------
@dataclass
class _Item:
    text: str
    subtokens: int = 1


class _SteppedTagger:
    """Prepares each text as one item; a run takes ``passes`` forward passes (``slow`` texts take ``slow_passes``),
    each ``pass_seconds`` long, and records which texts each pass ran."""

    def __init__(self, tagger: Tagger, pass_seconds: float = 0.0, slow_passes: int = 1) -> None:
        self.meta, self.labels, self.model_name, self.attention = tagger.meta, tagger.labels, "fake", "full"
        self.pass_seconds, self.slow_passes = pass_seconds, slow_passes
        self.passes: list[list[str]] = []
        self.prepared_on: list[str] = []

    def prepare(self, texts):
        self.prepared_on.append(threading.current_thread().name)
        return [_Item(text) for text in texts]

    def tag_steps(self, items):
        texts = [item.text for item in items]
        for _ in range(self.slow_passes if any(text.startswith("slow") for text in texts) else 1):
            self.passes.append(texts)
            time.sleep(self.pass_seconds)
            yield
        return [[] for _ in texts]


# --- raw sockets -------------------------------------------------------------------------------------------------
def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(url: str, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(_address(url), timeout=timeout)


def _exchange(url: str, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send ``raw`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with _connect(url, timeout) as sock:
        sock.sendall(raw)
        return _read_until_closed(sock, timeout)


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (a read returns end of file or a reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _post(body: str, *extra_headers: str) -> bytes:
    headers = ["POST /v1/ner HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *extra_headers]
    if not any(header.lower().startswith(("content-length", "transfer-encoding")) for header in extra_headers):
        headers.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


# --- defect 1: the limits count what the model computes ------------------------------------------------------------
def test_punctuation_runs_are_counted_as_the_model_sees_them(tagger):
    """``"=" * N`` is N words for the model, each with its own sub-token(s) and windows; a count of the raw string
    saw a handful of sub-tokens. The limit must refuse it before any model work."""
    text = "=" * 2000
    raw_count = len(tagger.tokenizer(text, add_special_tokens=False)["input_ids"])
    model_count = tagger.prepare([text])[0].subtokens
    assert model_count > 2 * raw_count  # what the old count (of the raw string) missed
    calls = []
    original = tagger.tag_steps
    tagger.tag_steps = lambda items: calls.append(len(items)) or original(items)
    try:
        limits = SETTINGS | {"max_tokens_per_text": (raw_count + model_count) // 2}
        with local_client(create_app(tagger, ServerSettings(**limits))) as client:
            response = client.post("/v1/ner", json={"texts": [text]})
            assert response.status_code == 413, response.text
            assert f"texts[0] is {model_count:,} sub-tokens" in response.json()["detail"]
            assert client.post("/v1/ner", json={"texts": ["Bob Carter"]}).status_code == 200
    finally:
        del tagger.tag_steps
    assert calls == [1]  # only the small request reached the model


def test_the_server_answers_what_the_tagger_answers_from_the_same_rows(tagger):
    texts = ["Bob Carter met Bill in Berlin .", "the dog sat", "Cole " * 40]
    expected = [[entity.to_dict() for entity in entities] for entities in tagger.pipe(texts)]
    with local_client(create_app(tagger, ServerSettings(**SETTINGS))) as client:
        results = client.post("/v1/ner", json={"texts": texts}).json()["results"]
    for got, want in zip(results, expected, strict=True):
        assert [(e["start"], e["end"], e["label"]) for e in got["entities"]] == [
            (e["start"], e["end"], e["label"]) for e in want
        ]


# --- defect 2: silent and slow connections -------------------------------------------------------------------------
def test_hundreds_of_silent_sockets_do_not_deny_service(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS, header_timeout_s=2.0))
    with running_server(app) as url:
        silent = [_connect(url) for _ in range(300)]
        try:
            health = _exchange(url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200"), health[:200]
            answer = _exchange(url, _post('{"texts": ["Bob Carter"]}', "Connection: close"))
            assert answer.startswith(b"HTTP/1.1 200") and b'"label":"PER"' in answer, answer[:300]
            assert all(_closed_by_server(sock, within=10) for sock in silent[:5])  # the header deadline
        finally:
            for sock in silent:
                sock.close()


def test_a_header_sent_byte_by_byte_is_cut_off_at_the_deadline(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS, header_timeout_s=0.5))
    with running_server(app) as url, _connect(url) as sock:
        header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        closed = False
        for byte in header:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.02)  # 200 bytes at 50 bytes/s: 4 s, far over the 0.5 s deadline
        assert closed or _closed_by_server(sock, within=5)


def test_a_body_trickling_after_the_answer_is_cut_off(tagger):
    """A body the app never reads (a GET with a body here) must not keep the connection open byte by byte."""
    app = create_app(tagger, ServerSettings(**SETTINGS, header_timeout_s=0.5))
    with running_server(app) as url, _connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nx")
        closed = False
        for _ in range(200):
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.02)
        assert closed or _closed_by_server(sock, within=5)


def test_a_trickled_body_gets_408_at_the_whole_body_deadline(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS, body_timeout_s=0.5))
    body = '{"texts": ["Bob Carter"]}'
    with running_server(app) as url, _connect(url) as sock:
        sock.sendall(_post(body)[: -len(body)])
        answer = b""
        for char in body.encode():  # each byte within the old per-part timeout, the whole far over the deadline
            try:
                sock.sendall(bytes([char]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        answer = _read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_requests_in_flight_are_bounded_with_a_json_503(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS, max_requests_in_flight=1))
    guard = app.build_middleware_stack()
    guard.in_flight = 1  # one request already being answered
    with local_client(app) as client:
        app.middleware_stack = guard
        busy = client.post("/v1/ner", json={"texts": ["Bob"]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2" and "in progress" in busy.text
        assert busy.headers["x-content-type-options"] == "nosniff"
        assert client.get("/healthz").status_code == 200  # probes are not counted


# --- defect 3: a queued job whose client left does no model work -----------------------------------------------------
def test_a_queued_request_whose_client_disconnects_never_reaches_the_model(tagger):
    fake = _SteppedTagger(tagger, pass_seconds=0.4, slow_passes=4)
    app = create_app(fake, ServerSettings(**SETTINGS))
    with running_server(app) as url:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(_exchange, url, _post('{"texts": ["slow one"]}', "Connection: close"), 30)
            while not fake.passes:
                time.sleep(0.01)
            with _connect(url) as leaving:
                leaving.sendall(_post('{"texts": ["gone"]}'))
                time.sleep(0.6)  # queued behind the slow run; then the client goes away
            assert slow.result(30).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        health = json.loads(_exchange(url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                            .split(b"\r\n\r\n", 1)[1])  # fmt: skip
    assert all("gone" not in texts for texts in fake.passes), fake.passes
    assert health["dropped_jobs"] == 1 and health["texts"] == 1


def test_a_running_job_whose_client_left_stops_before_its_next_pass():
    passes, gate = [], threading.Semaphore(0)

    def run(items):
        for step in range(10):
            gate.acquire(timeout=10)
            passes.append(step)
            yield
        return items

    batcher = MicroBatcher(run, 0.0, 8)
    job = batcher.submit(["long"])
    gate.release()
    while not passes:
        time.sleep(0.01)
    job.abandon()
    for _ in range(10):
        gate.release()
    deadline = time.monotonic() + 10
    while batcher.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.pending == 0 and batcher.dropped == 1 and batcher.texts == 0
    assert len(passes) <= 2  # the pass under way when the client left, at most one more: not all ten
    batcher.stop()


# --- defect 4: head-of-line blocking ---------------------------------------------------------------------------------
def test_a_small_job_runs_between_the_passes_of_a_large_one():
    events: list[str] = []
    big_may_continue = threading.Event()

    def run(items):
        if items == ["big"]:
            for step in range(5):
                events.append(f"big {step}")
                big_may_continue.wait(10)
                yield
            return ["BIG"]
        events.append("small")
        yield
        return ["SMALL"]

    batcher = MicroBatcher(run, 0.0, 8)
    big = batcher.submit(["big"])
    while not events:
        time.sleep(0.01)
    small = batcher.submit(["small"])
    big_may_continue.set()
    assert small.result(10) == ["SMALL"] and big.result(10) == ["BIG"]
    assert events.index("small") <= 2  # after at most two passes of the big job, not after all five
    batcher.stop()


# --- defect 5: Content-Length with chunked ---------------------------------------------------------------------------
def test_content_length_with_chunked_is_refused_and_the_connection_closed(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS))
    body = '{"texts": ["Bob"]}'
    chunked = f"{len(body):x}\r\n{body}\r\n0\r\n\r\n"
    smuggled = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw = _post(chunked + smuggled, "Content-Length: 4", "Transfer-Encoding: chunked")
    with running_server(app) as url:
        answer = _exchange(url, raw, timeout=5)
    assert answer.startswith(b"HTTP/1.1 400") and b"not both" in answer
    assert answer.count(b"HTTP/1.1") == 1  # nothing after the body was answered as a second request


# --- defect 6: every response carries the hardening headers ----------------------------------------------------------
def test_hardening_headers_on_every_refusal(tagger):
    app = create_app(tagger, ServerSettings(**SETTINGS))
    with local_client(app) as client:
        foreign = client.post("/v1/ner", json={"texts": ["Bob"]}, headers={"host": "evil.example"})
        unsupported = client.post("/v1/ner", content=b"{}", headers={"content-type": "text/plain"})
        for response in (foreign, unsupported):
            assert response.status_code in (400, 415)
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY" and "frame-ancestors" in response.headers[
                "content-security-policy"] and response.headers["referrer-policy"] == "no-referrer"  # fmt: skip
    with running_server(app) as url:
        malformed = _exchange(url, b"NOT HTTP AT ALL\r\n\r\n")
    assert malformed.startswith(b"HTTP/1.1 400") and b"x-content-type-options: nosniff" in malformed.lower()


# --- defect 7: duplicates are refused -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [["Authorization: Bearer a", "Authorization: Bearer b"], ["Content-Type: application/json"]],
)
def test_duplicated_headers_are_400(tagger, headers):
    app = create_app(tagger, ServerSettings(**SETTINGS))
    with running_server(app) as url:
        answer = _exchange(url, _post('{"texts": ["Bob"]}', *headers, "Connection: close"))
    assert answer.startswith(b"HTTP/1.1 400") and b"appears 2 times" in answer, answer[:300]


DUPLICATED_KEYS = [
    '{"texts": ["a"], "texts": ["b"]}',
    '{"texts": ["a"], "threshold": 0.1, "threshold": 1}',
    '{"documents": [{"id": 1, "id": 2, "text": "Bob"}]}',
]


@pytest.mark.parametrize("body", DUPLICATED_KEYS)
def test_duplicate_json_keys_are_400(tagger, body):
    with local_client(create_app(tagger, ServerSettings(**SETTINGS))) as client:
        response = client.post("/v1/ner", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "appears twice" in response.json()["detail"]


# --- defect 8: no test-only host name -------------------------------------------------------------------------------
def test_the_test_client_host_name_is_refused(tagger):
    from fastapi.testclient import TestClient

    with TestClient(create_app(tagger, ServerSettings(**SETTINGS))) as client:  # Host: testserver
        assert client.get("/healthz").status_code == 400
    assert "testserver" not in server.LOOPBACK_HOSTS


# --- defect 9: refused requests cost the event loop nothing -----------------------------------------------------------
def test_bodies_are_checked_off_the_event_loop_and_limits_before_scans(tagger, monkeypatch):
    fake = _SteppedTagger(tagger)
    scanned = []
    monkeypatch.setattr(server, "_invisible", lambda char: scanned.append(char) or False)
    with local_client(create_app(fake, ServerSettings(**SETTINGS, max_chars_per_text=100))) as client:
        refused = client.post("/v1/ner", json={"texts": ["\u200b" * 50 + "x", "y" * 101]})
        assert refused.status_code == 413 and "texts[1]" in refused.text
        assert scanned == []  # the limit was checked for every text before any character scan
        assert client.post("/v1/ner", json={"texts": ["Bob"]}).status_code == 200
    assert fake.prepared_on == ["lsfa-prepare_0"]  # rows were built on the preparing thread, not on the loop


# --- defect 11: ids are bounded --------------------------------------------------------------------------------------
@pytest.mark.parametrize("document_id", ["x" * 257, 10**20, -(2**63)])
def test_oversized_ids_are_422(tagger, document_id):
    with local_client(create_app(tagger, ServerSettings(**SETTINGS))) as client:
        response = client.post("/v1/ner", json={"documents": [{"id": document_id, "text": "Bob"}]})
        assert response.status_code == 422 and "documents[0].id" in response.text
        assert len(response.content) < 1_000
        fine = client.post(
            "/v1/ner", json={"documents": [{"id": "x" * 256, "text": "Bob"}, {"id": 2**62, "text": "a"}]}
        )
        assert fine.status_code == 200

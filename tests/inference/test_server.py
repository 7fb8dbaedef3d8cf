"""The HTTP server: endpoints, auth, limits, bad input, offsets under random Unicode, concurrency, browser.

Two tiny real taggers (saved and loaded with :meth:`lsfa.inference.tagger.Tagger.load`, so the whole path
from folder to HTTP is exercised): ``random`` has an untrained head (varied labels and multi-word
entities, for the offset property), ``forced`` has a head whose bias makes every word ``B-PER`` (output
known in advance: one ``PER`` entity per word of :func:`lsfa.data.text.split_words`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import random
import shutil
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsfa.data.schemes import entity_types
from lsfa.data.text import split_words
from lsfa.inference.server import MicroBatcher, ServerSettings, create_app
from lsfa.inference.tagger import Tagger
from lsfa.models.classifier import build_token_classifier, load_tokenizer
from lsfa.models.saving import TaggerMeta, save_tagger
from tests.inference.tiny_taggers import local_client
from tests.tiny import tiny_decoder_dir

torch.set_num_threads(1)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
MAX_LENGTH = 32  # sub-tokens per window: small, so ordinary test texts are windowed
TEST_SETTINGS = {
    "api_key": None,
    "batch_wait_ms": 2.0,
    "max_tokens_per_text": 100_000,
    "max_tokens_per_request": 200_000,
}


# --- fixtures ----------------------------------------------------------------------------------------------
def _save_tiny_tagger(root: Path, name: str, forced_label: str | None) -> Path:
    base = root / "base"
    if not base.exists():
        tiny_decoder_dir(base)
    model = build_token_classifier(base, LABELS, "full")
    if forced_label is not None:
        with torch.no_grad():
            model.score.weight.zero_()
            model.score.bias.zero_()
            model.score.bias[LABELS.index(forced_label)] = 8.0
    meta = TaggerMeta(
        base_model="tiny-llama", model_type="llama", labels=LABELS, attention="full", max_length=MAX_LENGTH
    )
    return save_tagger(model, load_tokenizer(base), root / name, meta)


@pytest.fixture(scope="module")
def tagger_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("taggers")
    return {"random": _save_tiny_tagger(root, "random", None), "forced": _save_tiny_tagger(root, "forced", "B-PER")}


@pytest.fixture(scope="module")
def forced_tagger(tagger_dirs) -> Tagger:
    return Tagger.load(tagger_dirs["forced"], precision="fp32", batch_size=8)


@pytest.fixture(scope="module")
def random_tagger(tagger_dirs) -> Tagger:
    return Tagger.load(tagger_dirs["random"], precision="fp32", batch_size=8)


@pytest.fixture(scope="module")
def client(forced_tagger) -> Iterator[TestClient]:
    with local_client(create_app(forced_tagger, ServerSettings(**TEST_SETTINGS))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def random_client(random_tagger) -> Iterator[TestClient]:
    with local_client(create_app(random_tagger, ServerSettings(**TEST_SETTINGS))) as test_client:
        yield test_client


def _client_with(tagger, **overrides) -> TestClient:
    return local_client(create_app(tagger, ServerSettings(**(TEST_SETTINGS | overrides))))


def _words(text: str) -> list[str]:
    return [word.text for word in split_words(text)]


def _assert_forced_output(text: str, result: dict) -> None:
    """The forced tagger's known answer: one PER entity per word, offsets slicing the text."""
    entities = result["entities"]
    assert [entity["text"] for entity in entities] == _words(text)
    assert {entity["label"] for entity in entities} <= {"PER"}
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]


def _assert_same_entities(got: list[dict], want: list[dict]) -> None:
    """Same spans, labels and texts; scores equal up to float noise (batch composition changes padding)."""
    assert [(e["start"], e["end"], e["label"], e["text"]) for e in got] == [
        (e["start"], e["end"], e["label"], e["text"]) for e in want
    ]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-3)


def _assert_serving(client: TestClient) -> None:
    response = client.post("/v1/ner", json={"texts": ["Peter ."]})  # small enough for every limit tested
    assert response.status_code == 200, response.text
    _assert_forced_output("Peter .", response.json()["results"][0])


# --- endpoints ---------------------------------------------------------------------------------------------
def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_model_info_describes_the_tagger(client):
    info = client.get("/v1/model").json()
    assert info["labels"] == LABELS
    assert info["entity_types"] == ["PER", "LOC"]
    assert info["attention"] == "full"
    assert info["base_model"] == info["model"] == "tiny-llama"
    assert info["lsfa_version"]
    assert info["limits"]["max_texts"] == 64


def test_openapi_schema_documents_the_request_body(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/ner", "/v1/model", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/ner"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NerRequest"}
    components = schema["components"]["schemas"]
    assert {"texts", "documents"} <= set(components["NerRequest"]["properties"])
    assert "Document" in components


def test_texts_get_entities_with_model_and_attention(client):
    texts = ["Peter Blackburn visited Brussels .", "EU rejects German call"]
    response = client.post("/v1/ner", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["attention"]) == ("tiny-llama", "full")
    assert len(body["results"]) == 2
    for text, result in zip(texts, body["results"], strict=True):
        assert "id" not in result
        _assert_forced_output(text, result)
    assert set(body["results"][0]["entities"][0]) == {"start", "end", "label", "text", "score"}


def test_documents_echo_their_ids(client):
    documents = [{"id": "a-1", "text": "Zoë lives in Paris"}, {"id": 7, "text": "Bob"}]
    results = client.post("/v1/ner", json={"documents": documents}).json()["results"]
    assert [result["id"] for result in results] == ["a-1", 7]
    for document, result in zip(documents, results, strict=True):
        _assert_forced_output(document["text"], result)


def test_server_output_equals_the_tagger_called_directly(random_client, random_tagger):
    texts = ["Peter Blackburn visited Brussels on 1996-08-22 .", "The quick brown fox , said Dr. Smith of Acme Corp."]
    expected = [[entity.to_dict() for entity in entities] for entities in random_tagger.pipe(texts)]
    results = random_client.post("/v1/ner", json={"texts": texts}).json()["results"]
    for want, got in zip(expected, results, strict=True):
        _assert_same_entities(got["entities"], want)


def test_long_text_is_windowed_not_truncated(client):
    text = " ".join(f"Name{i}" for i in range(1500))  # ~10,000 characters, far beyond MAX_LENGTH sub-tokens
    response = client.post("/v1/ner", json={"texts": [text]})
    assert response.status_code == 200
    entities = response.json()["results"][0]["entities"]
    assert len(entities) == 1500
    assert entities[-1]["end"] == len(text)
    _assert_forced_output(text, response.json()["results"][0])


def test_index_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<textarea" in page and "legend" in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline


def test_entity_types_strip_tag_prefixes():
    assert entity_types(["O", "B-PER", "I-PER", "S-LOC", "E-LOC", "B-Chemical"]) == ["PER", "LOC", "Chemical"]


# --- API key -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic c2VjcmV0"}, 401),
        ({"Authorization": "Bearer s3cret"}, 200),
    ],
)
def test_api_key_is_required_when_set(forced_tagger, headers, status):
    with _client_with(forced_tagger, api_key="s3cret") as client:
        assert client.post("/v1/ner", json={"texts": ["Peter"]}, headers=headers).status_code == status
        assert client.get("/v1/model", headers=headers).status_code == status
        assert client.get("/healthz").status_code == 200  # liveness probes need no key
        if status == 401:
            response = client.post("/v1/ner", json={"texts": ["Peter"]}, headers=headers)
            assert "API key" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"


def test_api_key_comes_from_the_environment(forced_tagger, monkeypatch):
    monkeypatch.setenv("LSFA_API_KEY", "from-env")
    with local_client(create_app(forced_tagger, ServerSettings(batch_wait_ms=1))) as client:
        assert client.get("/v1/model").status_code == 401
        assert client.get("/v1/model", headers={"Authorization": "Bearer from-env"}).status_code == 200
    monkeypatch.delenv("LSFA_API_KEY")
    assert ServerSettings().api_key is None


# --- limits ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "payload", "status", "limit_name"),
    [
        ({"max_texts": 3}, {"texts": ["a", "b", "c", "d"]}, 413, "max_texts=3"),
        ({"max_texts": 1}, {"documents": [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]}, 413, "max_texts=1"),
        ({"max_chars_per_text": 10}, {"texts": ["short", "much longer than ten"]}, 413, "max_chars_per_text=10"),
        ({"max_request_bytes": 100}, {"texts": ["x" * 200]}, 413, "max_request_bytes=100"),
    ],
)
def test_limits_are_named_in_the_error(forced_tagger, limits, payload, status, limit_name):
    with _client_with(forced_tagger, **limits) as client:
        response = client.post("/v1/ner", json=payload)
        assert response.status_code == status
        assert limit_name in response.json()["detail"]
        _assert_serving(client)


def test_limit_message_points_at_the_offending_text(forced_tagger):
    with _client_with(forced_tagger, max_chars_per_text=10) as client:
        response = client.post("/v1/ner", json={"documents": [{"id": 1, "text": "ok"}, {"id": 2, "text": "y" * 11}]})
        assert response.json()["detail"].startswith("documents[1].text has 11 characters")


def test_request_size_is_enforced_without_content_length(forced_tagger):
    """A chunked body (no Content-Length header) is cut off as soon as it passes the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"]}'

    with _client_with(forced_tagger, max_request_bytes=10_000) as client:
        response = client.post("/v1/ner", content=chunks(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert "max_request_bytes=10,000" in response.json()["detail"]
        _assert_serving(client)


# --- bad input ---------------------------------------------------------------------------------------------
def _json(value) -> bytes:
    return json.dumps(value).encode()


BAD_INPUTS = [
    ("empty body", b"", 400, "empty"),
    ("invalid JSON", b'{"texts": ["a",]}', 400, "not valid JSON"),
    ("truncated JSON", b'{"texts": ["a"', 400, "not valid JSON"),
    ("deeply nested JSON", b"[" * 100_000, 400, "not valid JSON"),
    ("invalid UTF-8 bytes", b'{"texts": ["caf\xe9 \xff"]}', 400, "not valid UTF-8"),
    ("body is an array", _json(["Peter"]), 422, "JSON object"),
    ("body is a string", _json("Peter"), 422, "JSON object"),
    ("texts is a string", _json({"texts": "Peter"}), 422, "texts: Input should be a valid list"),
    ("text is a number", _json({"texts": ["ok", 3]}), 422, "texts[1]: Input should be a valid string"),
    ("text is null", _json({"texts": [None]}), 422, "texts[0]"),
    ("text is an object", _json({"texts": [{"text": "a"}]}), 422, "texts[0]"),
    ("id is a float", _json({"documents": [{"id": 1.5, "text": "a"}]}), 422, "documents[0].id"),
    ("id is a boolean", _json({"documents": [{"id": True, "text": "a"}]}), 422, "documents[0].id"),
    ("missing fields", _json({}), 422, "neither texts nor documents"),
    ("misspelt field", _json({"text": ["Peter"]}), 422, "'text'"),
    ("both fields", _json({"texts": ["a"], "documents": [{"id": 1, "text": "b"}]}), 422, "not both"),
    ("unknown extra field", _json({"texts": ["a"], "lang": "en"}), 422, "lang"),
    ("document without text", _json({"documents": [{"id": 1}]}), 422, "documents[0].text: Field required"),
    ("document without id", _json({"documents": [{"text": "a"}]}), 422, "documents[0].id: Field required"),
    ("no texts", _json({"texts": []}), 422, "texts"),
    ("empty string", _json({"texts": ["ok", ""]}), 422, "texts[1] is empty"),
    ("only whitespace", _json({"texts": [" \t\n\u3000\u00a0 "]}), 422, "texts[0] contains only whitespace"),
    ("NUL character", _json({"texts": ["Peter\x00Smith"]}), 422, "control character U+0000 at offset 5"),
    ("bell and escape", _json({"texts": ["ding\x07 \x1b[31m"]}), 422, "control character U+0007"),
    ("C1 control", _json({"texts": ["a\x85b"]}), 422, "control character U+0085"),
    ("lone surrogate", b'{"texts": ["a\\ud800b"]}', 422, "lone surrogate U+D800"),
    ("1 MB of text", _json({"texts": ["word " * 200_000]}), 413, "max_request_bytes"),
]


@pytest.mark.parametrize(
    ("body", "status", "fragment"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, body, status, fragment):
    response = client.post("/v1/ner", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]
    _assert_serving(client)


def test_1_mb_text_under_a_raised_byte_limit_hits_the_character_limit(forced_tagger):
    with _client_with(forced_tagger, max_request_bytes=2_000_000) as client:
        response = client.post("/v1/ner", json={"texts": ["word " * 200_000]})
        assert response.status_code == 413
        assert "texts[0] has 1,000,000 characters, over max_chars_per_text=20,000" in response.json()["detail"]


VALID_ODD_TEXTS = {
    "arabic (right-to-left)": "ذهب محمد إلى القاهرة يوم الثلاثاء",
    "hebrew with RLM marks": "\u200fשלום\u200f עולם, David",
    "combining characters": "Zoe\u0301 and Jose\u0301 met in Sa\u0303o Paulo",
    "emoji": "Peter 🙂 met 👩‍🔬 in 🇯🇵 with 👍🏽 and 👨‍👩‍👧",
    "CJK": "東京で山田太郎に会った",
    "one 5,000-character word": "x" * 5000,
    "tabs and newlines": "Peter\tSmith\r\nvisited\n\nParis",
    "zero-width and BOM": "Peter\u200bSmith\ufeffParis",
}


@pytest.mark.parametrize("text", VALID_ODD_TEXTS.values(), ids=VALID_ODD_TEXTS.keys())
def test_valid_unusual_text_is_tagged_with_exact_offsets(client, text):
    response = client.post("/v1/ner", json={"texts": [text]})
    assert response.status_code == 200, response.text
    _assert_forced_output(text, response.json()["results"][0])


# --- random Unicode ------------------------------------------------------------------------------------------
def _taggable(text: str) -> bool:
    """The test's own oracle (independent of the server's regex): not blank, no control characters."""
    forbidden = any(
        (unicodedata.category(char) == "Cc" and char not in "\t\n\x0b\x0c\r") or unicodedata.category(char) == "Cs"
        for char in text
    )
    visible = any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)  # not zero-width only
    return visible and not forbidden


TRICKY_PIECES = ["Peter", "Zoë", "🙂", "\u0301", " ", ".", "'s", "東", "\u200d", "-", "שלום", "\u200f", "🇯🇵"]
unicode_text = st.one_of(
    st.text(max_size=80),  # anything, control characters and blanks included
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=80),
    st.lists(st.sampled_from(TRICKY_PIECES), max_size=30).map("".join),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(unicode_text, min_size=1, max_size=3))
def test_random_unicode_offsets_slice_the_input(random_client, texts):
    response = random_client.post("/v1/ner", json={"texts": texts})
    if not all(_taggable(text) for text in texts):
        assert response.status_code == 422, response.text
        return
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(texts)
    for text, result in zip(texts, results, strict=True):
        for entity in result["entities"]:
            assert 0 <= entity["start"] < entity["end"] <= len(text)
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] in ("PER", "LOC")


# --- micro-batching ------------------------------------------------------------------------------------------
class _GatedModel:
    """Records each batch; the first call blocks until released, so later jobs pile up deterministically."""

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.first_call_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        self.first_call_started.set()
        self.release.wait(10)
        if self.fail_on in texts:
            raise ValueError(f"cannot tag {self.fail_on!r}")
        return [text.upper() for text in texts]


def _blocked_batcher(model: _GatedModel, max_batch_texts: int = 64) -> tuple[MicroBatcher, concurrent.futures.Future]:
    batcher = MicroBatcher(model, wait_seconds=0.0, max_batch_texts=max_batch_texts)
    first = batcher.submit(["first"])
    assert model.first_call_started.wait(10)
    return batcher, first


def test_batcher_gathers_queued_jobs_into_one_call():
    model = _GatedModel()
    batcher, first = _blocked_batcher(model)
    later = [batcher.submit([f"a{i}", f"b{i}"]) for i in range(5)]
    model.release.set()
    assert first.result(10) == ["FIRST"]
    assert [future.result(10) for future in later] == [[f"A{i}", f"B{i}"] for i in range(5)]
    assert [len(batch) for batch in model.batches] == [1, 10]
    batcher.stop()


def test_batcher_respects_max_batch_texts_without_splitting_jobs():
    model = _GatedModel()
    batcher, _ = _blocked_batcher(model, max_batch_texts=4)
    later = [batcher.submit(["x", "y"]) for _ in range(3)] + [batcher.submit(["big"] * 6)]
    model.release.set()
    assert [future.result(10) for future in later] == [["X", "Y"]] * 3 + [["BIG"] * 6]
    assert [len(batch) for batch in model.batches] == [1, 4, 2, 6]
    batcher.stop()


def test_batcher_isolates_a_failing_job():
    model = _GatedModel(fail_on="boom")
    batcher, _ = _blocked_batcher(model)
    good, bad, also_good = batcher.submit(["ok"]), batcher.submit(["boom"]), batcher.submit(["fine"])
    model.release.set()
    assert good.result(10) == ["OK"] and also_good.result(10) == ["FINE"]
    with pytest.raises(ValueError, match="boom"):
        bad.result(10)
    batcher.stop()


def test_batcher_skips_cancelled_jobs():
    model = _GatedModel()
    batcher, _ = _blocked_batcher(model)
    cancelled = batcher.submit(["gone"])
    assert cancelled.cancel()
    kept = batcher.submit(["kept"])
    model.release.set()
    assert kept.result(10) == ["KEPT"]
    assert ["gone"] not in model.batches and all("gone" not in batch for batch in model.batches)
    batcher.stop()


# --- a real server: concurrency and the browser -------------------------------------------------------------
@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` as `lsfa serve` does (:func:`lsfa.inference.server.uvicorn_config`) on a free loopback port in
    a background thread; yield its base URL."""
    import uvicorn

    from lsfa.inference.server import uvicorn_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0, app.state.settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_concurrent_clients_each_get_their_own_answer(forced_tagger):
    """200 requests from 32 concurrent clients: no 5xx, and each response is the one for its own input."""
    import httpx

    rng = random.Random(7)
    vocabulary = ["Peter", "Blackburn", "visited", "Brussels", "Zoë", "🙂", "東京", "U.S.", "1996-08-22", "Smith's"]
    pool = [" ".join(rng.choices(vocabulary, k=rng.choice([1, 3, 8, 40, 150]))) + f" n{i}" for i in range(60)]
    expected = {
        text: [e.to_dict() for e in entities] for text, entities in zip(pool, forced_tagger.pipe(pool), strict=True)
    }
    requests = [rng.sample(pool, rng.randint(1, 4)) for _ in range(200)]
    app = create_app(forced_tagger, ServerSettings(api_key=None, batch_wait_ms=5.0))

    def send(client: httpx.Client, texts: list[str]) -> tuple[int, list[str], dict]:
        response = client.post("/v1/ner", json={"texts": texts})
        return response.status_code, texts, response.json()

    with running_server(app) as url:
        local = threading.local()

        def worker(texts: list[str]):
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=url, timeout=60)
            return send(local.client, texts)

        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool_executor:
            outcomes = list(pool_executor.map(worker, requests))
    assert [status for status, _, _ in outcomes] == [200] * len(requests)
    for _, texts, body in outcomes:
        for text, result in zip(texts, body["results"], strict=True):
            _assert_same_entities(result["entities"], expected[text])
    assert app.state.batcher.texts == sum(len(texts) for texts in requests)


def test_load_test_script_against_a_running_server(forced_tagger):
    """bench/load_test.py (the full 2,000-request run is a script) works; here with a small count."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "bench" / "load_test.py"
    app = create_app(forced_tagger, ServerSettings(**TEST_SETTINGS))
    with running_server(app) as url:
        command = [sys.executable, str(script), "--url", url, "--requests", "40", "--concurrency", "8"]
        command += ["--distinct", "8", "--idle-seconds", "0"]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout)["batched"]
    assert report["statuses"] == {"200": 40}
    assert (report["server_errors_5xx"], report["correct"], report["incorrect"]) == (0, 40, 0)
    assert (report["texts_changed"], report["texts_changed_rate"]) == (0, 0.0)
    assert report["server_memory"]["ready_mb"] is None  # a server this script did not start: no pid to read
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_page_in_a_headless_browser_highlights_entities(forced_tagger, tmp_path):
    """Load the page from a real uvicorn, type text, submit, and find the highlighted entities."""
    binaries = _chromium()
    if binaries is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1000,900", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    app = create_app(forced_tagger, ServerSettings(**TEST_SETTINGS))
    with running_server(app) as url:
        driver = webdriver.Chrome(service=Service(binaries[1]), options=options)
        try:
            driver.get(url + "/")
            wait = WebDriverWait(driver, 90)  # generous: CI machines can be busy
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#legend .chip"))
            legend = [chip.text for chip in driver.find_elements(By.CSS_SELECTOR, "#legend .chip")]
            assert legend == ["PER", "LOC"]

            box = driver.find_element(By.ID, "text")
            box.clear()
            box.send_keys("Peter visited Zoë in Paris")  # typed for real, key by key
            driver.find_element(By.ID, "submit").click()
            marks = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result mark.entity"))
            assert [_mark_text(driver, mark) for mark in marks] == ["Peter", "visited", "Zoë", "in", "Paris"]
            assert {mark.get_attribute("data-label") for mark in marks} == {"PER"}
            assert marks[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
            assert '"label": "PER"' in driver.find_element(By.ID, "json").text

            # Astral characters: offsets are code points, the page must not slice UTF-16 halves.
            text = "🙂 Peter 👩‍🔬 met Zoë"
            driver.execute_script("document.getElementById('text').value = arguments[0];", text)
            driver.find_element(By.ID, "submit").click()
            wait.until(lambda d: "🙂" in d.find_element(By.ID, "json").text)
            marks = driver.find_elements(By.CSS_SELECTOR, "#result mark.entity")
            assert [_mark_text(driver, mark) for mark in marks] == _words(text)

            # A shareable link: /?text=... opens the page with that text already tagged.
            driver.get(url + "/?text=" + quote("Anna met José"))
            wait.until(lambda d: "José" in d.find_element(By.ID, "json").text)
            marks = driver.find_elements(By.CSS_SELECTOR, "#result mark.entity")
            assert [_mark_text(driver, mark) for mark in marks] == ["Anna", "met", "José"]
        finally:
            driver.quit()


def _mark_text(driver, mark) -> str:
    """The entity's own text (the mark's first text node, without its label badge).

    Fetched as code points: a half-sliced emoji (a lone UTF-16 surrogate) then shows up as a wrong string
    instead of failing to cross the WebDriver boundary.
    """
    script = "return Array.from(arguments[0].firstChild.textContent).map((c) => c.codePointAt(0));"
    return "".join(map(chr, driver.execute_script(script, mark)))


# --- command line ----------------------------------------------------------------------------------------------
def test_serve_flags_default_to_the_server_settings():
    import typer.main

    from lsfa.cli import app

    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    defaults = {param.name: param.default for param in command.params}
    for name, field in ServerSettings.model_fields.items():
        if name not in ("api_key", "loopback_only"):  # loopback_only follows --host
            assert defaults[name] == field.default, name
    assert (defaults["host"], defaults["port"]) == ("127.0.0.1", 8000)


def test_serve_with_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    from lsfa.cli import main

    with pytest.raises(SystemExit) as exit_info, _argv(["lsfa", "serve", "--model-dir", str(tmp_path / "none")]):
        main()
    assert exit_info.value.code == 2
    assert "no such tagger folder" in capsys.readouterr().err


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    import sys

    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def test_a_request_threshold_is_checked_as_the_options_check_it():
    """One Threshold type (lsfa.inference.options): the body answers 422 for exactly what InferenceOptions refuses."""
    from pydantic import ValidationError

    from lsfa.errors import LsfaError
    from lsfa.inference.options import InferenceOptions
    from lsfa.inference.server import NerRequest

    def accepted(check, value) -> bool:
        try:
            check(value)
        except (LsfaError, ValidationError):
            return False
        return True

    values = (0, 1, 0.25, None, 1.5, -0.1, "0.5", True, float("nan"), float("inf"), [0.5])
    by_options = [accepted(lambda v: InferenceOptions.of(threshold=v), value) for value in values]
    by_request = [
        accepted(lambda v: NerRequest.model_validate({"texts": ["a"], "threshold": v}), value) for value in values
    ]
    assert by_options == by_request == [True] * 4 + [False] * 7


def test_threshold_per_request_is_validated_and_filters_entities(client):
    everything = client.post("/v1/ner", json={"texts": ["Bob went home"], "threshold": 0})
    assert everything.status_code == 200, everything.text
    entities = everything.json()["results"][0]["entities"]
    assert entities and all(0 < entity["score"] < 1 for entity in entities)
    strict = client.post("/v1/ner", json={"texts": ["Bob went home"], "threshold": 1})
    assert strict.status_code == 200 and strict.json()["results"][0]["entities"] == []
    for bad in (1.5, -0.1, "0.5", True, [0.5]):
        response = client.post("/v1/ner", json={"texts": ["Bob went home"], "threshold": bad})
        assert response.status_code == 422 and "threshold" in response.text, (bad, response.text)

"""Serve a tagger over HTTP: a JSON API, a page to try it, limits, an API key and micro-batching.

``create_app(tagger, settings)`` builds a FastAPI app around any object with ``.pipe(texts)`` (yielding
one list of entities per text, each with ``start, end, label, text, score`` in character offsets),
``.labels`` and ``.meta`` (:class:`lsfa.models.saving.TaggerMeta`) - normally a
:class:`lsfa.inference.tagger.Tagger`.

Why a micro-batcher: a model call on 32 texts costs far less than 32 calls on one text, so requests
arriving within a few milliseconds of each other are gathered into one ``pipe`` call. A single worker
thread owns the model (no concurrent use of one model, no locks in the request path); requests hand it
a job and await a future, and each job gets back exactly the slice of results for its own texts.

Why the body is parsed by hand rather than by FastAPI: every way a client can get the request wrong
(too large, not UTF-8, not JSON, wrong shape, empty or control-character text) must get a 4xx whose
message says what is wrong and which limit or field it concerns - never a 500, never a stack trace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import math
import os
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from starlette.requests import ClientDisconnect

from lsfa.data.schemes import entity_types
from lsfa.version import __version__

LOG = logging.getLogger("lsfa.serve")

API_KEY_ENV = "LSFA_API_KEY"
"""Environment variable holding the API key when it is not given on the command line."""

_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0/C1 control characters (tab, newlines, vertical tab and form feed are allowed) and lone surrogates,
which JSON can smuggle in as ``\\ud800`` escapes and which no tokenizer can encode."""

_TAG_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")


# --- settings ---------------------------------------------------------------------------------------
def _api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


class ServerSettings(BaseModel):
    """Limits, batching and authentication of one server; every field is also a ``lsfa serve`` flag."""

    model_config = ConfigDict(extra="forbid")

    max_request_bytes: int = Field(1_000_000, gt=0, description="Largest accepted request body, in bytes.")
    max_texts: int = Field(64, gt=0, description="Most texts (or documents) in one request.")
    max_chars_per_text: int = Field(20_000, gt=0, description="Most characters in one text.")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long the batcher waits to gather more requests.")
    max_batch_texts: int = Field(64, gt=0, description="Most texts gathered into one model call.")
    max_tokens_per_text: int = Field(4_096, gt=0, description="Most sub-tokens in one text (counted before the model).")
    max_tokens_per_request: int = Field(16_384, gt=0, description="Most sub-tokens in one request.")
    max_queued_requests: int = Field(64, gt=0, description="Requests waiting for the model before 503 + Retry-After.")
    body_timeout_s: float = Field(10.0, gt=0, description="Longest wait for the next part of a request body (408).")
    max_connections: int = Field(256, gt=0, description="Open connections before new ones get 503.")
    loopback_only: bool = Field(True, description="Answer only Host headers of this machine (set off for --host).")
    api_key: str | None = Field(
        default_factory=_api_key_from_env,
        description=f"Bearer token required on /v1/* when set (default: ${API_KEY_ENV}).",
        repr=False,
    )

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty API key would turn authentication off; give a real key or none")
        return value


# --- request and response bodies ---------------------------------------------------------------------
class Document(BaseModel):
    """A text with a caller-chosen id, echoed back with its entities."""

    model_config = ConfigDict(extra="forbid")

    id: str | int
    text: StrictStr

    @field_validator("id", mode="before")
    @classmethod
    def _string_or_integer(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise PydanticCustomError("document_id", "must be a string or an integer")


class NerRequest(BaseModel):
    """Either plain ``texts`` or ``documents`` with ids - exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, min_length=1, examples=[["Peter Blackburn visited Brussels ."]])
    documents: list[Document] | None = Field(None, min_length=1)
    threshold: float | None = Field(
        None, ge=0, le=1, strict=True, allow_inf_nan=False,
        description="Drop entities whose confidence (calibrated span probability) is below this number in [0, 1].",
    )  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("texts" in data) != ("documents" in data):
            kind = "texts" if "texts" in data else "documents"
            if data[kind] is None:
                raise PydanticCustomError("request_shape", f"{kind} must be a non-empty list, not null")
            if isinstance(data.get("threshold"), int) and not isinstance(data["threshold"], bool):
                data = {**data, "threshold": float(data["threshold"])}  # 0 and 1 are numbers in [0, 1] too
            return data
        if not isinstance(data, dict):
            problem = f"the body must be a JSON object, not {_json_type(data)}"
        elif "texts" in data:
            problem = "give texts or documents, not both"
        else:
            problem = f"found neither texts nor documents (got {', '.join(map(repr, data)) or 'an empty object'})"
        example = '{"texts": ["..."]} or {"documents": [{"id": "...", "text": "..."}]}'
        raise PydanticCustomError("request_shape", f"{problem}; send {example}")  # no context: braces stay as is

    def inputs(self) -> tuple[list[str], list[str | int | None], list[str]]:
        """Texts, their ids (``None`` for plain texts) and the field path naming each in error messages."""
        if self.texts is not None:
            return list(self.texts), [None] * len(self.texts), [f"texts[{i}]" for i in range(len(self.texts))]
        documents = self.documents or []
        paths = [f"documents[{i}].text" for i in range(len(documents))]
        return [doc.text for doc in documents], [doc.id for doc in documents], paths


class EntityOut(BaseModel):
    """An entity in character offsets (Unicode code points) of the input: ``text == input[start:end]``."""

    start: int
    end: int
    label: str
    text: str
    score: float


class NerResult(BaseModel):
    id: str | int | None = None
    entities: list[EntityOut]


class NerResponse(BaseModel):
    model: str
    attention: str
    results: list[NerResult]


class ModelInfo(BaseModel):
    model: str
    base_model: str
    attention: str
    labels: list[str]
    entity_types: list[str]
    max_length: int | None = None
    lsfa_version: str
    trained_with_lsfa: str | None = None
    limits: dict[str, int]


class RequestRejected(Exception):
    """A client error answered as ``{"detail": message, "errors": [...]}`` with ``status``."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None, retry_after: int | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after


HARDENING_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
"""Sent with every response: no MIME sniffing, no framing, nothing loaded from other hosts."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "testserver"})
"""Host headers a loopback-bound server answers (anything else is DNS rebinding); ``testserver``: test clients."""
RETRY_AFTER_S = 2
DISCONNECT_POLL_S = 0.25


# --- micro-batching ------------------------------------------------------------------------------------
@dataclass
class _Job:
    texts: list[str]
    future: concurrent.futures.Future


class QueueFull(Exception):
    """The batcher already holds as many waiting jobs as it may."""


class MicroBatcher:
    """Gathers jobs for up to ``wait_seconds`` (or ``max_batch_texts``) and runs them as one model call.

    The worker thread is the only user of ``run_batch``. A job is never split across batches, so a job
    larger than ``max_batch_texts`` runs alone. If a gathered batch fails, each job is retried on its own
    so one bad job cannot fail the others.
    """

    def __init__(self, run_batch: Callable[[list[str]], Sequence[Any]], wait_seconds: float, max_batch_texts: int):
        self._run_batch = run_batch
        self._wait = wait_seconds
        self._max_texts = max_batch_texts
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.texts = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        with self._lock:
            if not self.alive:
                self._thread = threading.Thread(target=self._work, name="lsfa-batcher", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout)
                self._thread = None

    def submit(self, texts: list[str], max_pending: int | None = None) -> concurrent.futures.Future:
        """Queue ``texts``; the future resolves to one result per text, in order. With ``max_pending``, a full
        queue refuses the job (:class:`QueueFull`) instead of letting waits grow without bound."""
        if max_pending is not None and self._queue.qsize() >= max_pending:
            raise QueueFull(self._queue.qsize())
        self.start()  # started lazily too, so an app used without its lifespan still works
        job = _Job(texts, concurrent.futures.Future())
        self._queue.put(job)
        return job.future

    def _work(self) -> None:
        carried: _Job | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            if first is None:
                return
            jobs, carried, stopping = self._gather(first)
            self._execute([job for job in jobs if job.future.set_running_or_notify_cancel()])
            if stopping:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None, bool]:
        """Collect jobs after ``first`` until the wait ends or the batch is full; return the overflow job."""
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self._wait
        while size < self._max_texts:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, None, True
            if size + len(job.texts) > self._max_texts:
                return jobs, job, False
            jobs.append(job)
            size += len(job.texts)
        return jobs, None, False

    def _execute(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        try:
            results = self._call([text for job in jobs for text in job.texts])
        except Exception as error:
            if len(jobs) == 1:
                jobs[0].future.set_exception(error)
                return
            for job in jobs:  # isolate the failing job
                try:
                    job.future.set_result(self._call(job.texts))
                except Exception as job_error:
                    job.future.set_exception(job_error)
            return
        offset = 0
        for job in jobs:
            job.future.set_result(results[offset : offset + len(job.texts)])
            offset += len(job.texts)

    def _call(self, texts: list[str]) -> list[Any]:
        results = list(self._run_batch(texts))
        if len(results) != len(texts):
            raise RuntimeError(f"the tagger returned {len(results)} results for {len(texts)} texts")
        self.batches += 1
        self.texts += len(texts)
        return results


# --- request checking --------------------------------------------------------------------------------
async def read_body(request: Request, limit: int, timeout: float = 10.0) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and with 408 when
    its next part does not arrive within ``timeout`` seconds (a client that stopped sending, or a
    ``Content-Length`` larger than the body). A client that goes away costs one log line, not a traceback."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, f"request body of {int(declared):,} bytes exceeds max_request_bytes={limit:,}")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise RequestRejected(408, f"request body not received within {timeout:g} s") from None
        except ClientDisconnect:
            LOG.info("client went away during its upload (%d bytes received)", size)
            raise RequestRejected(400, "client disconnected") from None
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, f"request body exceeds max_request_bytes={limit:,}")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes) -> NerRequest:
    """Decode, parse and validate a ``/v1/ner`` body, naming the field or byte at fault."""
    if not body.strip():
        raise RequestRejected(400, 'request body is empty; send JSON such as {"texts": ["Peter lives in Paris."]}')
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = body[error.start : error.start + 1].hex()
        raise RequestRejected(400, f"request body is not valid UTF-8 (byte 0x{bad} at offset {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestRejected(
            400, f"request body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:
        raise RequestRejected(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer of more than 4,300 digits (Python's int conversion limit)
        raise RequestRejected(400, "request body holds a number too long to read (over 4,300 digits)") from None
    try:
        return NerRequest.model_validate(data)
    except ValidationError as error:
        errors = [
            {"field": _excerpt(_field_path(e["loc"])), "message": _excerpt(e["msg"])}
            for e in error.errors(include_url=False)[:MAX_REPORTED_ERRORS]
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        raise RequestRejected(422, f"invalid request: {detail}", errors) from None


MAX_REPORTED_ERRORS = 5
EXCERPT_CHARS = 80


def _excerpt(text: str) -> str:
    """A client's own input is echoed back at most this short (an unknown 900 KB key must not come back)."""
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "\u2026"


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _field_path(location: Iterable[Any]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def check_texts(texts: Sequence[str], paths: Sequence[str], settings: ServerSettings) -> None:
    """Refuse texts over the limits (413) or that are not taggable text (422), naming the culprit."""
    if len(texts) > settings.max_texts:
        raise RequestRejected(413, f"{len(texts)} texts in one request exceeds max_texts={settings.max_texts}")
    for text, path in zip(texts, paths, strict=True):
        if len(text) > settings.max_chars_per_text:
            raise RequestRejected(
                413,
                f"{path} has {len(text):,} characters, over max_chars_per_text={settings.max_chars_per_text:,}; "
                "split it into several texts",
            )
        if not text:
            raise RequestRejected(422, f"{path} is empty")
        if not text.strip():
            raise RequestRejected(422, f"{path} contains only whitespace")
        if all(char.isspace() or _invisible(char) for char in text):
            raise RequestRejected(422, f"{path} contains only invisible characters (zero-width or format)")
        bad = _FORBIDDEN_CHARACTERS.search(text)
        if bad:
            kind = "a lone surrogate" if "\ud800" <= bad.group() <= "\udfff" else "a control character"
            raise RequestRejected(
                422, f"{path} contains {kind} U+{ord(bad.group()):04X} at offset {bad.start()}; remove it"
            )


def _invisible(char: str) -> bool:
    """Zero-width and other format characters (Unicode category Cf): nothing a tagger could tag."""
    return unicodedata.category(char) == "Cf"


def check_tokens(counts: Sequence[int], paths: Sequence[str], settings: ServerSettings) -> None:
    """Refuse work over the sub-token limits (413), measured with the tagger's tokenizer before the model runs."""
    for count, path in zip(counts, paths, strict=True):
        if count > settings.max_tokens_per_text:
            raise RequestRejected(
                413, f"{path} is {count:,} sub-tokens, over max_tokens_per_text={settings.max_tokens_per_text:,}"
            )
    total, limit = sum(counts), settings.max_tokens_per_request
    if total > limit:
        raise RequestRejected(413, f"the request is {total:,} sub-tokens, over max_tokens_per_request={limit:,}")


# --- the app -----------------------------------------------------------------------------------------
def _entity_out(entity: Any) -> EntityOut:
    score = float(entity.score)
    return EntityOut(
        start=int(entity.start),
        end=int(entity.end),
        label=str(entity.label),
        text=str(entity.text),
        score=round(score, 4) if math.isfinite(score) else 0.0,
    )


def _request_schema_openapi(app: FastAPI) -> None:
    """Put :class:`NerRequest` in the OpenAPI components (the body is parsed by hand, not by FastAPI)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()  # also caches it in app.openapi_schema
            request = NerRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request.pop("$defs", {}))
            components["NerRequest"] = request
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(tagger: Any, settings: ServerSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``tagger`` (see the module docstring for what ``tagger`` must offer)."""
    settings = settings or ServerSettings()
    meta = tagger.meta
    tokenizer = getattr(tagger, "tokenizer", None)
    allowed_hosts = LOOPBACK_HOSTS if settings.loopback_only else None
    model_name = str(getattr(tagger, "model_name", None) or meta.base_model)
    attention = str(getattr(tagger, "attention", None) or meta.attention)
    labels = list(getattr(tagger, "labels", None) or meta.labels)
    batcher = MicroBatcher(
        lambda texts: list(tagger.pipe(texts)), settings.batch_wait_ms / 1000, settings.max_batch_texts
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.stop)

    app = FastAPI(
        title="lsfa NER",
        version=__version__,
        description=f"Named entities from `{model_name}` (attention: {attention}).",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: the schema is at /openapi.json instead
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher = batcher
    app.state.tagger = tagger
    app.state.settings = settings
    bearer = HTTPBearer(auto_error=False, description="Required when the server was started with an API key.")

    def require_api_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            reason = "wrong API key" if credentials is not None else "missing API key"
            raise RequestRejected(401, f"{reason}: send the header 'Authorization: Bearer <key>'")

    @app.exception_handler(RequestRejected)
    async def _rejected(_: Request, error: RequestRejected) -> JSONResponse:
        body: dict[str, Any] = {"detail": error.detail}
        if error.errors:
            body["errors"] = error.errors
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        return JSONResponse(body, status_code=error.status, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        LOG.error("internal error: %s: %s", type(error).__name__, error)  # the log has it; the client does not
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    @app.middleware("http")
    async def _hygiene(request: Request, call_next):
        host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"detail": "unexpected Host header"}, status_code=400)
        if request.url.path.startswith("/v1/") and request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return JSONResponse({"detail": "send the body as Content-Type: application/json"}, status_code=415)
        response = await call_next(request)
        response.headers.update(HARDENING_HEADERS)
        return response

    info = ModelInfo(
        model=model_name,
        base_model=meta.base_model,
        attention=attention,
        labels=labels,
        entity_types=entity_types(labels),
        max_length=getattr(meta, "max_length", None),
        lsfa_version=__version__,
        trained_with_lsfa=getattr(meta, "lsfa_version", None),
        limits={
            "max_request_bytes": settings.max_request_bytes,
            "max_texts": settings.max_texts,
            "max_chars_per_text": settings.max_chars_per_text,
        },
    )

    @app.get("/healthz", summary="Liveness: 200 while the model worker runs")
    async def healthz() -> JSONResponse:
        ok = batcher.alive or batcher.pending == 0
        body = {"status": "ok" if ok else "worker stopped", "queued_jobs": batcher.pending, "batches": batcher.batches}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/model", response_model=ModelInfo, dependencies=[Depends(require_api_key)])
    async def model_info() -> ModelInfo:
        """Labels, attention, base model and versions of the served tagger, and the request limits."""
        return info

    @app.post(
        "/v1/ner",
        response_model=NerResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(require_api_key)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NerRequest"}}},
            }
        },
        responses={
            400: {"description": "Empty body, invalid UTF-8 or invalid JSON"},
            401: {"description": "Missing or wrong API key"},
            413: {"description": "Over max_request_bytes, max_texts or max_chars_per_text"},
            422: {"description": "Wrong shape or types, empty or whitespace-only text, control characters"},
        },
    )
    async def ner(request: Request) -> NerResponse:
        """Entities of each text, in character offsets of that text; long texts are windowed, not cut."""
        payload = parse_request(await read_body(request, settings.max_request_bytes, settings.body_timeout_s))
        texts, ids, paths = payload.inputs()
        check_texts(texts, paths, settings)
        if tokenizer is not None:
            check_tokens(
                [len(ids_) for ids_ in tokenizer(texts, add_special_tokens=False)["input_ids"]], paths, settings
            )
        try:
            job = batcher.submit(texts, settings.max_queued_requests)
        except QueueFull:
            raise RequestRejected(503, "the model is busy; try again shortly", retry_after=RETRY_AFTER_S) from None
        per_text = await _result_unless_gone(request, job)
        floor = payload.threshold if payload.threshold is not None else -1.0
        results = [
            NerResult(id=text_id, entities=[_entity_out(entity) for entity in entities if entity.score >= floor])
            for text_id, entities in zip(ids, per_text, strict=True)
        ]
        return NerResponse(model=model_name, attention=attention, results=results)

    page = resources.files("lsfa.inference").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_api_key)])
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    _request_schema_openapi(app)
    return app


async def _result_unless_gone(request: Request, job: concurrent.futures.Future) -> list[Any]:
    """Wait for a job's results; if the client disconnects first, cancel the job when it has not started."""
    waiting = asyncio.wrap_future(job)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            job.cancel()  # a queued job is dropped; one already running finishes and is discarded
            LOG.info("client went away; its queued work was cancelled")
            raise RequestRejected(499, "client closed the request")

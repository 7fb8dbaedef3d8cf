"""Serve a tagger over HTTP: a JSON API, a page to try it, limits, an API key and micro-batching.

``create_app(tagger, settings)`` builds a FastAPI app around a :class:`lsfa.inference.tagger.Tagger`, or any
object with ``.pipe(texts)`` (yielding one list of entities per text, each with ``start, end, label, text,
score`` in character offsets), ``.labels`` and ``.meta`` (:class:`lsfa.models.saving.TaggerMeta`). A request's
``threshold`` is passed on as ``pipe(texts, threshold=...)`` / ``prepare(texts, threshold=...)``, the tagger's
per-call override; the server does not filter entities itself.
``run_server`` serves it behind :mod:`lsfa.inference.http_guard` (what `lsfa serve` does).

Why the work is counted on prepared rows: a text's cost is the sub-tokens of the model rows built from its
words (``Tagger.prepare``), which can be 60 times what a tokenization of the raw string counts (every ``=`` of
``"=" * 20000`` is a word). The rows are built off the event loop, checked against the sub-token limits (413
before any model work), and then run as they are.

Why a micro-batcher that interleaves: a model call on 32 texts costs far less than 32 calls on one text, so
requests arriving within a few milliseconds of each other are merged into one run; and runs in progress take
turns one forward pass each (``Tagger.tag_steps``), so a small request is not stuck behind the whole of a large
one. A single worker thread owns the model (no concurrent use of one model, no locks in the request path);
requests hand it a job and await a future, and each job gets back exactly the slice of results for its own
texts. A client that goes away abandons its job: dropped before its next forward pass.

Why the body is parsed by hand rather than by FastAPI: every way a client can get the request wrong
(too large, not UTF-8, not JSON, wrong shape, a key given twice, empty or control-character text) must get a
4xx whose message says what is wrong and which limit or field it concerns - never a 500, never a stack trace.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import inspect
import itertools
import json
import logging
import math
import os
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Generator, Iterable, Sequence
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
from lsfa.inference.http_guard import (
    LOOPBACK_HOSTS,
    MAX_HEADER_BYTES,
    RETRY_AFTER_S,
    Guard,
    guarded_protocol,
)
from lsfa.inference.options import InferenceOptions, Threshold
from lsfa.version import __version__

LOG = logging.getLogger("lsfa.serve")

API_KEY_ENV = "LSFA_API_KEY"
"""Environment variable holding the API key when it is not given on the command line."""

_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0/C1 control characters (tab, newlines, vertical tab and form feed are allowed) and lone surrogates,
which JSON can smuggle in as ``\\ud800`` escapes and which no tokenizer can encode."""


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
    body_timeout_s: float = Field(10.0, gt=0, description="Longest time to receive a whole request body (408).")
    header_timeout_s: float = Field(
        5.0, gt=0, description="Longest time to send a complete request header; the connection is closed after."
    )
    max_requests_in_flight: int = Field(
        128, gt=0, description="Requests being received or answered at once (idle connections do not count) before 503."
    )
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
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            raise PydanticCustomError("document_id", f"must be at most {MAX_ID_CHARS} characters")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise PydanticCustomError("document_id", "must be an integer of at most 64 bits")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise PydanticCustomError("document_id", "must be a string or an integer")


MAX_ID_CHARS = 256
"""Longest document id echoed back (an id is a name, not a payload)."""


class NerRequest(BaseModel):
    """Either plain ``texts`` or ``documents`` with ids - exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, min_length=1, examples=[["Peter Blackburn visited Brussels ."]])
    documents: list[Document] | None = Field(None, min_length=1)
    threshold: Threshold = Field(
        None, description="Drop entities whose confidence (calibrated span probability) is below this number in [0, 1]."
    )

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("texts" in data) != ("documents" in data):
            kind = "texts" if "texts" in data else "documents"
            if data[kind] is None:
                raise PydanticCustomError("request_shape", f"{kind} must be a non-empty list, not null")
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


DISCONNECT_POLL_S = 0.25


# --- scheduling ------------------------------------------------------------------------------------------
class JobFuture(concurrent.futures.Future):
    """A job's result; :meth:`abandon` (the client went away) drops the job's remaining work, started or not."""

    def __init__(self) -> None:
        super().__init__()
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True
        self.cancel()  # not started yet: it never will be


@dataclass(eq=False)
class _Job:
    items: list[Any]
    future: JobFuture


@dataclass(eq=False)
class _Group:
    """Jobs merged into one model run, and that run's step generator (one ``next`` = one forward pass)."""

    jobs: list[_Job]
    steps: Generator[None, None, Sequence[Any]] | None = None


class QueueFull(Exception):
    """The batcher already holds as many waiting jobs as it may."""


class MicroBatcher:
    """Merges jobs that arrive together into one model run, and interleaves the forward passes of runs.

    ``run(items)`` returns the results for a list of items (texts, or prepared texts), either directly or as a
    step generator that yields after each forward pass and returns the results (``Tagger.tag_steps``). Jobs
    waiting when the worker is free, or arriving within ``wait_seconds`` of the first, are merged into one run
    of up to ``max_batch_texts`` items (a job is never split, so a larger job runs alone). Runs in progress take
    turns, one forward pass each: a small request waits for at most one pass of each run ahead of it, not for
    the whole of a large request (head-of-line blocking). A job whose future is abandoned is dropped before its
    next pass; a run whose jobs are all abandoned stops. If a merged run fails, each of its jobs is run alone,
    so one bad job cannot fail the others. The worker thread is the only caller of ``run``.
    """

    def __init__(self, run: Callable[[list[Any]], Any], wait_seconds: float, max_batch_texts: int):
        self._run = run
        self._wait = wait_seconds
        self._max_texts = max_batch_texts
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._active: collections.deque[_Group] = collections.deque()
        self._running: _Group | None = None  # the group whose forward pass is under way (out of the deque)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.texts = 0
        self.dropped = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        running = self._running
        queued = self._queue.qsize() + sum(len(group.jobs) for group in list(self._active))
        return queued + (len(running.jobs) if running is not None else 0)

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

    def submit(self, items: list[Any], max_pending: int | None = None) -> JobFuture:
        """Queue ``items``; the future resolves to one result per item, in order. With ``max_pending``, a full
        queue refuses the job (:class:`QueueFull`) instead of letting waits grow without bound."""
        if max_pending is not None and self.pending >= max_pending:
            raise QueueFull(self.pending)
        self.start()  # started lazily too, so an app used without its lifespan still works
        job = _Job(list(items), JobFuture())
        self._queue.put(job)
        return job.future

    def _work(self) -> None:
        carried: _Job | None = None
        while True:
            if carried is not None:
                first, carried = carried, None
            else:
                try:
                    first = self._queue.get(block=not self._active)  # runs in progress: only look
                except queue.Empty:
                    first = _NOTHING
            if first is None:
                self._shut_down()
                return
            if first is not _NOTHING:
                jobs, carried, stopping = self._gather(first, 0.0 if self._active else self._wait)
                self._admit(jobs)
                if stopping:
                    self._shut_down()
                    return
            if self._active:
                self._running = self._active.popleft()
                try:
                    self._turn(self._running)
                finally:
                    self._running = None

    def _gather(self, first: _Job, wait: float) -> tuple[list[_Job], _Job | None, bool]:
        """Collect jobs after ``first`` until the wait ends or the batch is full; return the overflow job."""
        jobs, size = [first], len(first.items)
        deadline = time.monotonic() + wait
        while size < self._max_texts:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, None, True
            if size + len(job.items) > self._max_texts:
                return jobs, job, False
            jobs.append(job)
            size += len(job.items)
        return jobs, None, False

    def _admit(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if not job.future.abandoned and job.future.set_running_or_notify_cancel()]
        if len(live) < len(jobs):
            self.dropped += len(jobs) - len(live)
            LOG.info("client went away; its queued work (%d jobs) was dropped unrun", len(jobs) - len(live))
        if live:
            self._active.append(_Group(live))

    def _turn(self, group: _Group) -> None:
        """One forward pass of ``group`` (its first call starts the run); back in line unless it finished."""
        live = [job for job in group.jobs if not job.future.abandoned]
        if not live:
            if group.steps is not None:
                group.steps.close()
            self.dropped += len(group.jobs)
            texts = sum(len(job.items) for job in group.jobs)
            LOG.info("client went away; the rest of its run (%d texts) was dropped", texts)
            return
        try:
            if group.steps is None:
                started = self._run([item for job in group.jobs for item in job.items])
                if not inspect.isgenerator(started):
                    self._finish(group, started)
                    return
                group.steps = started
            next(group.steps)
        except StopIteration as finished:
            self._finish(group, finished.value)
            return
        except Exception as error:
            self._failed(group, error)
            return
        self._active.append(group)

    def _finish(self, group: _Group, results: Sequence[Any]) -> None:
        results = list(results)
        expected = sum(len(job.items) for job in group.jobs)
        if len(results) != expected:
            self._failed(group, RuntimeError(f"the tagger returned {len(results)} results for {expected} texts"))
            return
        self.batches += 1
        self.texts += expected
        offset = 0
        for job in group.jobs:
            job.future.set_result(results[offset : offset + len(job.items)])
            offset += len(job.items)

    def _failed(self, group: _Group, error: Exception) -> None:
        if len(group.jobs) == 1:
            group.jobs[0].future.set_exception(error)
            return
        for job in reversed(group.jobs):  # isolate the failing job: each runs alone, next in line
            self._active.appendleft(_Group([job]))

    def _shut_down(self) -> None:
        stopped = RuntimeError("the server is shutting down")
        for group in self._active:
            if group.steps is not None:
                group.steps.close()
            for job in group.jobs:
                if not job.future.done():
                    job.future.set_exception(stopped)
        self._active.clear()


_NOTHING: Any = object()
"""What the worker finds when it only looks at the queue and nothing waits."""


# --- request checking --------------------------------------------------------------------------------
async def read_body(request: Request, limit: int, timeout: float = 10.0) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and with 408 when
    the whole of it has not arrived within ``timeout`` seconds of the handler starting to read (a client that
    stopped sending, one that trickles a byte every few seconds, or a ``Content-Length`` larger than the body).
    A client that goes away costs one log line, not a traceback."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, f"request body of {int(declared):,} bytes exceeds max_request_bytes={limit:,}")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - time.monotonic()))
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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's keys, refusing a key given twice (which one should count would be a guess)."""
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise RequestRejected(400, f"request body is not valid JSON for this API: the key {_excerpt(key)!r} "
                                       "appears twice in one object")  # fmt: skip
        mapping[key] = value
    return mapping


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
        data = json.loads(text, object_pairs_hook=_unique_keys)
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
    """Refuse texts over the limits (413) or that are not taggable text (422), naming the culprit. The limits
    are checked for every text before any text's characters are scanned: a request over a limit costs
    almost nothing."""
    if len(texts) > settings.max_texts:
        raise RequestRejected(413, f"{len(texts)} texts in one request exceeds max_texts={settings.max_texts}")
    for text, path in zip(texts, paths, strict=True):
        if len(text) > settings.max_chars_per_text:
            raise RequestRejected(
                413,
                f"{path} has {len(text):,} characters, over max_chars_per_text={settings.max_chars_per_text:,}; "
                "split it into several texts",
            )
    for text, path in zip(texts, paths, strict=True):
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
    """Refuse work over the sub-token limits (413). ``counts`` are what the model will compute for each text:
    the sub-tokens of the rows the tagger built for it (words as split for the model, windows and their
    overlap included), not a tokenization of the raw string, which can count 60 times fewer."""
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


@dataclass
class PreparedRequest:
    """A checked request: what the worker runs (texts prepared with the request's threshold, or
    :class:`PlainText` for a tagger without ``prepare``) and the ids to echo."""

    items: list[Any]
    ids: list[str | int | None]


@dataclass(frozen=True)
class PlainText:
    """A text for a tagger without ``prepare``, with the request's threshold for its ``pipe`` call."""

    text: str
    threshold: float | None = None


def prepare_request(body: bytes, tagger: Any, settings: ServerSettings) -> PreparedRequest:
    """Parse, validate and check a body, and build the model rows of its texts, refusing whatever is over a
    limit before any model work. Runs off the event loop (it is CPU work on up to ``max_request_bytes``)."""
    payload = parse_request(body)
    texts, ids, paths = payload.inputs()
    check_texts(texts, paths, settings)
    per_call = {} if payload.threshold is None else {"threshold": payload.threshold}  # else the tagger's own
    items: list[Any] = [PlainText(text, payload.threshold) for text in texts]
    if _runs_in_steps(tagger):
        items = tagger.prepare(texts, **per_call)
        check_tokens([item.subtokens for item in items], paths, settings)
    return PreparedRequest(items, ids)


def _runs_in_steps(tagger: Any) -> bool:
    """Whether the tagger builds rows up front and runs them one forward pass at a time (a :class:`Tagger` does);
    other objects offering only ``pipe`` are run whole and their texts are not counted in sub-tokens."""
    return callable(getattr(tagger, "prepare", None)) and callable(getattr(tagger, "tag_steps", None))


def _runner(tagger: Any) -> Callable[[list[Any]], Any]:
    """What the batcher calls on merged items: the tagger's step generator when it has one, else ``pipe``, once
    per run of texts that share a threshold (merged requests may have asked for different ones)."""
    if _runs_in_steps(tagger):
        return tagger.tag_steps

    def run(items: list[PlainText]) -> list[Any]:
        results: list[Any] = []
        for threshold, group in itertools.groupby(items, key=lambda item: item.threshold):
            texts = [item.text for item in group]
            results += tagger.pipe(texts) if threshold is None else tagger.pipe(texts, threshold=threshold)
        return results

    return run


class _GuardedApp(FastAPI):
    """FastAPI with :class:`~lsfa.inference.http_guard.Guard` outside everything, Starlette's error middleware
    included, so every response (a 500 too) passes the header rules, the in-flight bound and the headers."""

    guard_hosts: frozenset[str] | None = None
    guard_in_flight: int = 128

    def build_middleware_stack(self):  # type: ignore[override]
        return Guard(super().build_middleware_stack(), self.guard_hosts, self.guard_in_flight)


def create_app(tagger: Any, settings: ServerSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``tagger`` (see the module docstring for what ``tagger`` must offer)."""
    settings = settings or ServerSettings()
    meta = tagger.meta
    model_name = str(getattr(tagger, "model_name", None) or meta.base_model)
    attention = str(getattr(tagger, "attention", None) or meta.attention)
    labels = list(getattr(tagger, "labels", None) or meta.labels)
    batcher = MicroBatcher(_runner(tagger), settings.batch_wait_ms / 1000, settings.max_batch_texts)
    preparing = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lsfa-prepare")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.stop)
        preparing.shutdown(wait=False, cancel_futures=True)

    app = _GuardedApp(
        title="lsfa NER",
        version=__version__,
        description=f"Named entities from `{model_name}` (attention: {attention}).",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: the schema is at /openapi.json instead
        redoc_url=None,
        openapi_url=None,
    )
    app.guard_hosts = LOOPBACK_HOSTS if settings.loopback_only else None
    app.guard_in_flight = settings.max_requests_in_flight
    app.state.batcher = batcher
    app.state.tagger = tagger
    app.state.settings = settings
    _error_handlers(app)
    require_api_key = _api_key_check(settings)
    info = _model_info(tagger, settings, model_name, attention, labels)

    @app.get("/healthz", summary="Liveness: 200 while the model worker runs")
    async def healthz() -> JSONResponse:
        ok = batcher.alive or batcher.pending == 0
        body = {"status": "ok" if ok else "worker stopped", "queued_jobs": batcher.pending, "batches": batcher.batches,
                "texts": batcher.texts, "dropped_jobs": batcher.dropped}  # fmt: skip
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
            400: {"description": "Empty body, invalid UTF-8 or JSON, a key given twice, a duplicated header"},
            401: {"description": "Missing or wrong API key"},
            408: {"description": "The body did not arrive within body_timeout_s"},
            413: {"description": "Over max_request_bytes, max_texts, max_chars_per_text or a sub-token limit"},
            422: {"description": "Wrong shape or types, empty or whitespace-only text, control characters"},
            503: {"description": "Queue or in-flight bound full (with Retry-After)"},
        },
    )
    async def ner(request: Request) -> NerResponse:
        """Entities of each text, in character offsets of that text; long texts are windowed, not cut."""
        body = await read_body(request, settings.max_request_bytes, settings.body_timeout_s)
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(preparing, prepare_request, body, tagger, settings)
        try:
            job = batcher.submit(prepared.items, settings.max_queued_requests)
        except QueueFull:
            raise RequestRejected(503, "the model is busy; try again shortly", retry_after=RETRY_AFTER_S) from None
        per_text = await _result_unless_gone(request, job)
        results = [
            NerResult(id=text_id, entities=[_entity_out(entity) for entity in entities])
            for text_id, entities in zip(prepared.ids, per_text, strict=True)
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


def _error_handlers(app: FastAPI) -> None:
    """Client errors as ``{"detail", "errors"}`` with their status; anything else a 500 that reveals nothing."""

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


def _api_key_check(settings: ServerSettings) -> Callable[..., None]:
    """The dependency that requires the bearer key on ``/v1/*`` when the server has one."""
    bearer = HTTPBearer(auto_error=False, description="Required when the server was started with an API key.")

    def require_api_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            reason = "wrong API key" if credentials is not None else "missing API key"
            raise RequestRejected(401, f"{reason}: send the header 'Authorization: Bearer <key>'")

    return require_api_key


def _model_info(tagger: Any, settings: ServerSettings, model_name: str, attention: str, labels: list[str]) -> ModelInfo:
    meta = tagger.meta
    limits = ("max_request_bytes", "max_texts", "max_chars_per_text", "max_tokens_per_text", "max_tokens_per_request")
    return ModelInfo(
        model=model_name,
        base_model=meta.base_model,
        attention=attention,
        labels=labels,
        entity_types=entity_types(labels),
        max_length=getattr(meta, "max_length", None),
        lsfa_version=__version__,
        trained_with_lsfa=getattr(meta, "lsfa_version", None),
        limits={name: getattr(settings, name) for name in limits},
    )


async def _result_unless_gone(request: Request, job: JobFuture) -> list[Any]:
    """Wait for a job's results; if the client disconnects first, abandon the job: dropped before the model runs
    it when still queued, or before its next forward pass when running."""
    waiting = asyncio.wrap_future(job)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            job.abandon()
            raise RequestRejected(499, "client closed the request")


SERVER_PAD_MULTIPLE = 32
"""Batch widths of `lsfa serve` are rounded up to this: under bf16, oneDNN keeps a compiled kernel per distinct
shape, and a server that saw every width grew by 400 MB in 150 batches; with widths in steps of 32 it stayed flat
(docs/server.md, "Memory")."""

SERVER_BATCH_TOKENS = 2048
"""Tokens per forward pass of `lsfa serve` (packed rows). One pass is the longest a small request waits for each run
ahead of it (the batcher interleaves passes), so it is the smallest budget that costs no throughput: in one run
(smollm2-135m, bf16, one thread, AMD EPYC; docs/server.md) two 2,891-sub-token texts took 7.25 s at 2,048, 7.65 s
at 4,096 and 8.7 s at 1,024."""


SERVER_FAST_PATH: dict[str, Any] = {
    "pack": True, "max_batch_tokens": SERVER_BATCH_TOKENS, "pad_to_multiple_of": SERVER_PAD_MULTIPLE,
}  # fmt: skip
"""The :class:`InferenceOptions` defaults of a served tagger where they differ from a library one's: lsfa's fast
path (packed rows, a token budget per pass, widths in steps of :data:`SERVER_PAD_MULTIPLE`). `lsfa serve` shows
them as its flags' defaults; a flag given on the command line wins."""


def server_inference_options(**values: Any) -> InferenceOptions:
    """The tagger options `lsfa serve` loads with: :data:`SERVER_FAST_PATH` with ``values`` (precision, decoding,
    ...) on top."""
    return InferenceOptions.of(None, flags=True, **(SERVER_FAST_PATH | values))


def run_server(app: FastAPI, host: str, port: int, settings: ServerSettings) -> None:
    """Serve ``app`` with uvicorn behind the connection guard (:func:`uvicorn_config`) until interrupted."""
    import uvicorn

    _raise_open_file_limit()
    _log_to_stderr()
    uvicorn.Server(uvicorn_config(app, host, port, settings)).run()


def uvicorn_config(app: FastAPI, host: str, port: int, settings: ServerSettings):
    """uvicorn's settings for a served app: the guarded h11 protocol (a deadline on every request header,
    :mod:`lsfa.inference.http_guard`), no cap on idle sockets (the bound is on requests in flight, in the app),
    headers of at most :data:`MAX_HEADER_BYTES`, no ``server`` banner, idle keep-alive closed after 5 s."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, http=guarded_protocol(settings.header_timeout_s), log_level="warning",
        server_header=False, limit_concurrency=None, timeout_keep_alive=5, lifespan="on",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )  # fmt: skip


def _raise_open_file_limit() -> None:
    """Open files up to the hard limit: an idle connection costs one descriptor until its header deadline."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = max(soft, 65536) if hard == resource.RLIM_INFINITY else hard
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: the default limit stays
        pass


def _log_to_stderr() -> None:
    """The server's own log lines (dropped work, closed connections, internal errors) on stderr at INFO."""
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s lsfa.serve %(levelname)s: %(message)s"))
        LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)

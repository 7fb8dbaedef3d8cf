"""What stands between the network and the server's app: connection deadlines, header rules, a bound on work.

Why this is not left to uvicorn's defaults (each measured from outside, issue #33):

- uvicorn's ``limit_concurrency`` counts *open connections*, so a few hundred sockets that send nothing made
  every request, ``/healthz`` included, get a 503 for as long as they stayed open; and nothing closes a
  connection that never completes its request header (1 byte a second was accepted). Here a connection must
  complete each request header within ``header_timeout_s`` of opening (or of its previous response) or it is
  closed, and the limit counts *requests in flight* (:class:`Guard`), not idle sockets.
- A request holding both ``Content-Length`` and ``Transfer-Encoding`` is answered 400 and the connection
  closed (RFC 9112 section 6.1: behind a proxy that honours the other header, the rest would be a smuggled
  second request).
- Duplicate ``Host``, ``Authorization``, ``Content-Type``, ``Content-Length`` or ``Transfer-Encoding`` headers
  are a 400 rather than "the first one wins".
- Every response carries the hardening headers, uvicorn's own 400 for malformed HTTP included.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger("lsfa.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HARDENING_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
"""Sent with every response: no MIME sniffing, no framing, nothing loaded from other hosts."""
_HARDENING_RAW = [(name.lower().encode(), value.encode()) for name, value in HARDENING_HEADERS.items()]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host headers a loopback-bound server answers (anything else is DNS rebinding)."""

SINGLE_HEADERS = (b"host", b"authorization", b"content-type", b"content-length", b"transfer-encoding")
"""Headers a request may carry at most once: two values would leave open which one counts."""

MAX_HEADER_BYTES = 16 * 1024
"""Largest request line plus headers (uvicorn answers 400 above it)."""

RETRY_AFTER_S = 2
"""What a 503 tells the client to wait before trying again."""


def _json_start(status: int, extra: list[tuple[bytes, bytes]], length: int) -> Message:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode()), *extra]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_json(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON error response ``{"detail": ...}`` through an ASGI ``send``."""
    body = json.dumps({"detail": detail}).encode()
    await send(_json_start(status, extra or [], len(body)))
    await send({"type": "http.response.body", "body": body})


def with_hardening_headers(send: Send) -> Send:
    """``send`` with the hardening headers added to the response start (unless the app set them itself)."""

    async def hardened(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in _HARDENING_RAW if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return hardened


def header_problem(scope: Scope, allowed_hosts: frozenset[str] | None) -> tuple[int, str, bool] | None:
    """Why a request is refused before the app sees it, as ``(status, detail, close connection)``, or None."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    names = [name.lower() for name, _ in headers]
    for name in SINGLE_HEADERS:
        if names.count(name) > 1:
            return 400, f"the {name.decode().title()} header appears {names.count(name)} times; send it once", True
    if b"content-length" in names and b"transfer-encoding" in names:
        return 400, "send Content-Length or Transfer-Encoding, not both (RFC 9112 section 6.1)", True
    values = dict(headers)
    host = values.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]").lower()
    if allowed_hosts is not None and host not in allowed_hosts:
        return 400, "unexpected Host header", False
    if scope["method"] == "POST" and scope["path"].startswith("/v1/"):
        content_type = values.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 415, "send the body as Content-Type: application/json", False
    return None


class Guard:
    """ASGI middleware around the whole app: header rules, the in-flight bound and hardening headers.

    It wraps the app outside Starlette's own error middleware, so even a 500 gets the hardening headers.
    ``/healthz`` is not counted against ``max_in_flight``: a probe must see a busy server as alive.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None, max_in_flight: int) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_hardening_headers(send)
        problem = header_problem(scope, self.allowed_hosts)
        if problem is not None:
            status, detail, close = problem
            await send_json(send, status, detail, [(b"connection", b"close")] if close else None)
            return
        counted = scope["path"] != "/healthz"
        if counted and self.in_flight >= self.max_in_flight:
            retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            await send_json(send, 503, f"{self.in_flight} requests in progress; try again shortly", retry)
            return
        self.in_flight += counted
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= counted


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request header and a hardened 400.

    A connection must complete a request header within ``header_timeout_s`` of opening, and each further one
    within ``header_timeout_s`` of its previous response; otherwise it is closed. This also ends a body that
    keeps trickling in after the app has answered without reading it. Subclass with
    :func:`guarded_protocol` to set the deadline.
    """

    header_timeout_s: float = 5.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline, cycle)

    def _header_deadline(self, cycle_when_armed: Any) -> None:
        """Close the connection unless a new request header arrived, or the request armed for still runs."""
        self._header_timer = None
        waiting = cycle_when_armed is None or cycle_when_armed.response_complete
        if self.cycle is cycle_when_armed and waiting and not self.transport.is_closing():
            LOG.info("closed a connection that sent no complete request header within %g s", self.header_timeout_s)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to malformed HTTP, as JSON and with the hardening headers."""
        import h11

        body = json.dumps({"detail": "invalid HTTP request"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"), *_HARDENING_RAW]
        headers.append((b"content-length", str(len(body)).encode()))
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):  # fmt: skip
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had already started: nothing more can be said
            pass
        self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn should use (``http=``) for this header deadline."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})

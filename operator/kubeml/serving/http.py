"""HTTP/1.1 on asyncio with httptools' parser: the server's native transport.

Measured against uvicorn (httptools + uvloop) running the same app through ASGI
(bench/serving/RESULTS.md), this protocol costs a fraction of the per-request
Python work: no ASGI scope dicts, no task per request, responses written from the
batcher's callback directly. What it implements of HTTP/1.1: keep-alive,
pipelining (responses in request order), chunked request bodies (httptools
de-chunks), ``Expect: 100-continue``, Content-Length limits checked before the
body is read, and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import httptools

from .app import ModelServer, Response
from .encode import error_body

log = logging.getLogger("kubeml.serve")

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STATUS = {code: f"HTTP/1.1 {code} {text}\r\n".encode() for code, text in REASONS.items()}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Pipelined requests a connection may have outstanding before we stop reading it.
MAX_PIPELINE = 64


def status_line(code: int) -> bytes:
    line = _STATUS.get(code)
    return line if line is not None else f"HTTP/1.1 {code} Status\r\n".encode()


def encode_response(resp: Response, close: bool, keep_alive_header: bool = False) -> bytes:
    head = b"%scontent-type: %s\r\ncontent-length: %d\r\n" % (
        status_line(resp.status),
        resp.content_type.encode(),
        len(resp.body),
    )
    if close:
        head += b"connection: close\r\n"
    elif keep_alive_header:
        head += b"connection: keep-alive\r\n"
    return head + b"\r\n" + resp.body


class ReturnTracker:
    """Keep-alive connections answered within the last ``window`` seconds that have
    not started their next request: clients likely to be back within moments, which
    the batcher may wait for (see batcher.py)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._recent: deque[tuple[float, HttpProtocol]] = deque()

    def answered(self, conn: HttpProtocol) -> None:
        now = time.monotonic()
        conn.answered_at = now
        self._recent.append((now, conn))
        self._expire(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        recent = self._recent
        # an entry is stale once too old, or once its connection moved on
        while recent and (recent[0][0] < horizon or recent[0][1].answered_at != recent[0][0]):
            recent.popleft()

    def count(self) -> int:
        self._expire(time.monotonic())
        return sum(1 for t, conn in self._recent if conn.answered_at == t)


class _Slot:
    """One request's place in the connection's response order."""

    __slots__ = ("close", "data", "http10")

    def __init__(self, close: bool, http10: bool) -> None:
        self.close = close
        self.http10 = http10
        self.data: bytes | None = None


class HttpProtocol(asyncio.Protocol):
    def __init__(
        self, server: ModelServer, connections: set[HttpProtocol], tracker: ReturnTracker
    ) -> None:
        self.app = server
        self.tracker = tracker
        self.answered_at: float | None = None
        self.connections = connections
        self.max_body = server.cfg.max_request_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Slot] = deque()
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.length: int | None = None
        self.expect_continue = False
        self.receiving = False
        self.rejected = False
        self.closing = False
        self.paused = False

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, only alike
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.answered_at = None
        self.closing = True
        self._not_receiving()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as err:
            self._reject(400, f"malformed HTTP request: {err}")

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.answered_at = None  # back: no longer expected
        self.url = b""
        self.body = []
        self.size = 0
        self.length = None
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                self.length = None
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.rejected:
            return
        if self.length is not None and self.length > self.max_body:
            self._reject(413, self._too_large())
            return
        if self.length:
            self.receiving = True
            self.app.arriving += 1
        if self.expect_continue and self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.rejected:
            return
        self.size += len(body)
        if self.size > self.max_body:
            self._reject(413, self._too_large())
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._not_receiving()
        if self.rejected:
            return
        method = self.parser.get_method().decode("ascii", "replace")
        http10 = self.parser.get_http_version() == "1.0"
        slot = _Slot(not self.parser.should_keep_alive(), http10)
        self.queue.append(slot)
        if len(self.queue) > MAX_PIPELINE and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        url = self.url.decode("latin-1")
        try:
            self.app.handle(method, url, body, lambda resp: self._respond(slot, resp))
        except Exception:  # the app answers its own errors; this is a bug: still answer
            log.exception("unhandled error for %s %s", method, url)
            self._respond(slot, Response(500, error_body("internal error")))

    # -- responses ----------------------------------------------------------------------

    def _respond(self, slot: _Slot, resp: Response) -> None:
        slot.data = encode_response(resp, slot.close, slot.http10 and not slot.close)
        transport = self.transport
        queue = self.queue
        while queue and queue[0].data is not None:
            done = queue.popleft()
            if transport is None or self.closing:
                continue
            transport.write(done.data)  # type: ignore[arg-type]
            if done.close:
                self.closing = True
                transport.close()
            elif not queue:
                self.tracker.answered(self)
        if self.paused and len(queue) < MAX_PIPELINE // 2 and transport is not None:
            self.paused = False
            transport.resume_reading()

    def _reject(self, status: int, message: str) -> None:
        """Answer after the responses already owed, then close: the stream's framing
        can no longer be trusted (or its body is not worth reading)."""
        if self.rejected:
            return
        self.rejected = True
        self._not_receiving()
        slot = _Slot(True, False)
        self.queue.append(slot)
        self._respond(slot, Response(status, error_body(message)))

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.max_body} bytes"

    def _not_receiving(self) -> None:
        if self.receiving:
            self.receiving = False
            self.app.arriving -= 1

    def close_if_idle(self) -> bool:
        """Close a keep-alive connection that owes no response (used when draining)."""
        if not self.queue and not self.receiving and self.transport is not None:
            self.closing = True
            self.transport.close()
            return True
        return False


async def start(
    server: ModelServer, host: str, port: int, **kw: Any
) -> tuple[asyncio.Server, set[HttpProtocol]]:
    loop = asyncio.get_running_loop()
    connections: set[HttpProtocol] = set()
    tracker = ReturnTracker(server.cfg.max_batch_delay_ms / 1000.0)
    server.returning = tracker.count
    srv = await loop.create_server(
        lambda: HttpProtocol(server, connections, tracker),
        host,
        port,
        reuse_address=True,
        backlog=2048,
        **kw,
    )
    return srv, connections

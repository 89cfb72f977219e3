"""HTTP/1.1 on asyncio with httptools' parser: the server's native transport.

Measured against uvicorn (httptools + uvloop) running the same app through ASGI
(bench/serving/RESULTS.md), this protocol costs a fraction of the per-request
Python work: no ASGI scope dicts, no task per request, responses written from the
batcher's callback directly. What it implements of HTTP/1.1: keep-alive,
pipelining (responses in request order), chunked request bodies (httptools
de-chunks), ``Expect: 100-continue``, Content-Length limits checked before the
body is read, and ``Connection: close``.

What a client can make it hold is bounded (``Limits``): the request line (414)
and the header block (431) by size, the header block, each pause in a body, and
an idle keep-alive connection by time (408 or a quiet close), bodies by size
(413, also summed over all connections: 503) and connections by count (an idle
one is closed to make room, else the newcomer gets 503). A 413 is answered while
the rest of the body is read and dropped ("lingering"), so that a client still
sending reads the answer instead of a broken pipe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httptools

from .app import ModelServer, RequestMeta, Response
from .encode import error_body

log = logging.getLogger("kubeml.serve")

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STATUS = {code: f"HTTP/1.1 {code} {text}\r\n".encode() for code, text in REASONS.items()}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Pipelined requests a connection may have outstanding before we stop reading it.
MAX_PIPELINE = 64
SWEEP_INTERVAL_S = 1.0
# Longest a rejected request's remaining body is read (and dropped) before closing.
LINGER_S = 30.0

# Connection states, for the deadlines the sweeper enforces.
IDLE, HEAD, BODY, WAITING = range(4)


@dataclass(frozen=True)
class Limits:
    max_url: int = 8 << 10
    max_head: int = 64 << 10
    max_body: int = 8 << 20
    # All bodies being received at once, across connections.
    max_buffered: int = 64 << 20
    max_connections: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0

    @classmethod
    def of(cls, server: ModelServer) -> Limits:
        c = server.cfg
        return cls(
            max_url=c.max_url_bytes,
            max_head=c.max_header_bytes,
            max_body=c.max_request_bytes,
            max_buffered=max(64 << 20, 4 * c.max_request_bytes),
            max_connections=c.max_connections,
            header_timeout=c.header_timeout_s,
            body_timeout=c.body_timeout_s,
            keepalive_timeout=c.keepalive_timeout_s,
        )


def status_line(code: int) -> bytes:
    line = _STATUS.get(code)
    return line if line is not None else f"HTTP/1.1 {code} Status\r\n".encode()


def encode_response(resp: Response, close: bool, keep_alive_header: bool = False) -> bytes:
    head = b"%scontent-type: %s\r\ncontent-length: %d\r\n" % (
        status_line(resp.status),
        resp.content_type.encode(),
        len(resp.body),
    )
    for name, value in resp.headers:
        head += b"%s: %s\r\n" % (name.encode(), value.encode())
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


class Shared:
    """What all connections of one listener share: the set, the limits, the body budget."""

    def __init__(self, server: ModelServer, limits: Limits, tracker: ReturnTracker) -> None:
        self.server = server
        self.limits = limits
        self.tracker = tracker
        self.connections: set[HttpProtocol] = set()
        self.buffered = 0  # body bytes held by requests being received

    def sweep(self, now: float) -> None:
        for conn in list(self.connections):
            conn.check_deadline(now)

    def make_room(self) -> bool:
        """At the connection cap: close the longest-idle connection, if any is idle."""
        idle = [c for c in self.connections if c.is_idle()]
        if not idle:
            return False
        min(idle, key=lambda c: c.since).close_quietly()
        return True


class _Slot:
    """One request's place in the connection's response order."""

    __slots__ = ("close", "data", "http10")

    def __init__(self, close: bool, http10: bool) -> None:
        self.close = close
        self.http10 = http10
        self.data: bytes | None = None


class HttpProtocol(asyncio.Protocol):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.app = shared.server
        self.limits = shared.limits
        self.tracker = shared.tracker
        self.answered_at: float | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Slot] = deque()
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.reserved = 0  # bytes of the shared body budget this request holds
        self.length: int | None = None
        self.content_type: bytes | None = None
        self.header_length: bytes | None = None
        self.content_encoding: bytes | None = None
        self.request_id: bytes | None = None
        self.head_bytes = 0  # bytes read while the head was incomplete
        self.head_fields = 0  # size of the header fields parsed so far
        self.expect_continue = False
        self.receiving = False
        self.rejected = False
        self.draining = False  # reading and dropping a rejected request's body
        self.linger_until = 0.0  # ... but not past this time, however the client sends
        self.closing = False
        self.paused = False
        self.state = IDLE
        self.since = time.monotonic()  # when the current state began (or data last came)

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, only alike
        self.transport = transport  # type: ignore[assignment]
        shared = self.shared
        if len(shared.connections) >= self.limits.max_connections and not shared.make_room():
            self.rejected = True
            self.closing = True
            msg = f"too many connections (limit {self.limits.max_connections}); retry later"
            transport.write(encode_response(Response(503, error_body(msg)), close=True))  # type: ignore[attr-defined]
            transport.close()
            return
        shared.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.connections.discard(self)
        self.answered_at = None
        self.closing = True
        self._not_receiving()
        self.body = []
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.rejected and not self.draining:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as err:
            if self.draining:  # the dropped body's framing broke: nothing more to read
                self.close_quietly()
            else:
                self._reject(400, f"malformed HTTP request: {err}")
            return
        if self.state == HEAD and not self.rejected:
            # A header still arriving is not counted by on_header yet: count the bytes
            # (after feeding, since a chunk may also hold the end of the head and a body).
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head:
                self._reject(431, f"request header block larger than {self.limits.max_head} bytes")

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.answered_at = None  # back: no longer expected
        self.state = HEAD
        self.since = time.monotonic()
        self.head_bytes = self.head_fields = 0
        self.url = b""
        self.body = []
        self.size = 0
        self.length = None
        self.content_type = self.header_length = self.content_encoding = None
        self.request_id = None
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        if self.rejected:
            return
        self.url += url
        if len(self.url) > self.limits.max_url:
            self.url = b""
            self._reject(414, f"request target longer than {self.limits.max_url} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.rejected:
            return
        # Also counted here: a head that ends within one large read never stays in
        # the HEAD state long enough for data_received's count to see it.
        self.head_fields += len(name) + len(value) + 4
        if self.head_fields > self.limits.max_head:
            self._reject(431, f"request header block larger than {self.limits.max_head} bytes")
            return
        lname = name.lower()
        if lname == b"content-length":
            # llhttp has already refused anything but digits (400)
            self.length = int(value)
        elif lname == b"content-type":
            self.content_type = value
        elif lname == b"inference-header-content-length":
            self.header_length = value
        elif lname == b"content-encoding":
            self.content_encoding = value
        elif lname == b"x-request-id":
            self.request_id = value
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.state = BODY
        self.since = time.monotonic()
        if self.rejected:
            return
        if self.length is not None and self.length > self.limits.max_body:
            self._reject(413, self._too_large(), linger=not self.expect_continue)
            return
        if self.length:
            if not self._reserve(self.length):
                return
            self.receiving = True
            self.app.arriving += 1
        if self.expect_continue and self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.since = time.monotonic()
        if self.rejected:
            return
        self.size += len(body)
        if self.size > self.limits.max_body:
            self._reject(413, self._too_large(), linger=True)
            return
        # Chunked bodies have no declared length: reserve as they arrive.
        if self.size > self.reserved and not self._reserve(self.size - self.reserved):
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._not_receiving()
        if self.draining:
            self.close_quietly()
            return
        if self.rejected:
            return
        self.state = WAITING
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
        meta = RequestMeta(
            self.content_type, self.header_length, self.content_encoding, self.request_id
        )
        try:
            self.app.handle(method, url, body, lambda resp: self._respond(slot, resp), meta)
        except Exception:  # the app answers its own errors; this is a bug: still answer
            log.exception("unhandled error for %s %s", method, url)
            self._respond(slot, Response(500, error_body("internal error")))

    # -- limits ---------------------------------------------------------------------------

    def _reserve(self, n: int) -> bool:
        shared = self.shared
        if shared.buffered + n > self.limits.max_buffered:
            self._reject(
                503,
                "the server is receiving too many request bodies at once; retry later",
                linger=True,
            )
            return False
        shared.buffered += n
        self.reserved += n
        return True

    def is_idle(self) -> bool:
        return self.state == IDLE and not self.queue and not self.closing

    def check_deadline(self, now: float) -> None:
        if self.closing or self.transport is None:
            return
        lim = self.limits
        if self.draining:
            if now > self.linger_until or now - self.since > lim.body_timeout:
                self.close_quietly()
        elif self.state == HEAD:
            if now - self.since > lim.header_timeout:
                self._reject(408, f"request headers not received within {lim.header_timeout:g}s")
        elif self.state == BODY:
            if now - self.since > lim.body_timeout:
                self._reject(408, f"request body stalled for {lim.body_timeout:g}s")
        elif self.is_idle() and now - self.since > lim.keepalive_timeout:
            self.close_quietly()

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
                if self.draining:
                    continue  # closed once the dropped body has been read
                self.closing = True
                transport.close()
            elif not queue:
                if self.state == WAITING:
                    self.state = IDLE
                    self.since = time.monotonic()
                self.tracker.answered(self)
        if self.paused and len(queue) < MAX_PIPELINE // 2 and transport is not None:
            self.paused = False
            transport.resume_reading()

    def _reject(self, status: int, message: str, linger: bool = False) -> None:
        """Answer after the responses already owed, then close: the stream's framing
        can no longer be trusted (or its body is not worth reading). With ``linger``
        the framing is intact: the rest of the body is read and dropped first."""
        if self.rejected:
            return
        self.rejected = True
        self.draining = linger
        self.since = time.monotonic()
        self.linger_until = self.since + LINGER_S
        self._not_receiving()
        self.body = []
        slot = _Slot(True, False)
        self.queue.append(slot)
        self._respond(slot, Response(status, error_body(message)))

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.limits.max_body} bytes"

    def _not_receiving(self) -> None:
        if self.receiving:
            self.receiving = False
            self.app.arriving -= 1
        if self.reserved:
            self.shared.buffered -= self.reserved
            self.reserved = 0

    def close_quietly(self) -> None:
        self.closing = True
        self.draining = False
        if self.transport is not None:
            self.transport.close()

    def close_if_idle(self) -> bool:
        """Close a keep-alive connection that owes no response (used when draining)."""
        if not self.queue and not self.receiving and self.transport is not None:
            self.close_quietly()
            return True
        return False


async def start(
    server: ModelServer, host: str, port: int, **kw: Any
) -> tuple[asyncio.Server, set[HttpProtocol]]:
    loop = asyncio.get_running_loop()
    tracker = ReturnTracker(server.cfg.max_batch_delay_ms / 1000.0)
    server.returning = tracker.count
    shared = Shared(server, Limits.of(server), tracker)
    srv = await loop.create_server(
        lambda: HttpProtocol(shared),
        host,
        port,
        reuse_address=True,
        backlog=2048,
        **kw,
    )

    def sweep() -> None:
        if not srv.is_serving() and not shared.connections:
            return
        shared.sweep(time.monotonic())
        loop.call_later(SWEEP_INTERVAL_S, sweep)

    loop.call_later(SWEEP_INTERVAL_S, sweep)
    return srv, shared.connections

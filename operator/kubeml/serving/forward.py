"""Exact traffic shares without a mesh: the stable server forwards a share of requests.

A Service spreads connections over pods, so a replica ratio only approximates a
share (one stable and one canary pod give the canary half the traffic whatever the
percent). Instead the Service selects the stable pods only, and each stable server
sends exactly ``percent`` of every 100 inference requests it accepts to the canary
version's own Service (:class:`Split`), relaying the answer. Over any window of 100
requests per pod the share is exact.

The forwarder is a small HTTP/1.1 client on the server's own loop (httptools' response
parser, pooled keep-alive connections), bounded like the server: at most
``max_connections`` requests to the canary at once, a deadline for each, and a cap on
the size of an answer. A canary that cannot answer (refused, reset, timed out, an answer
too large, or not 2xx for a request the stable server already validated) never
becomes the client's failure: the request is answered by the stable model instead,
and counted as a fallback in the stable server's metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

log = logging.getLogger("kubeml.serve")

# Request headers that travel with a forwarded body (the server acts on these).
FORWARDED_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
# Response headers relayed back to the client.
RELAYED_HEADERS = frozenset({b"inference-header-content-length", b"kubeml-model-version"})
# Marks a forwarded request: a server never forwards one again.
FORWARDED_MARK = "kubeml-forwarded"


class Split:
    """Deterministic share: of every 100 calls to ``take``, exactly ``percent`` say yes,
    spread evenly (an accumulator, not a random draw, so short windows are exact too)."""

    def __init__(self, percent: int) -> None:
        self.percent = max(0, min(100, percent))
        self._acc = 0

    def take(self) -> bool:
        self._acc += self.percent
        if self._acc >= 100:
            self._acc -= 100
            return True
        return False


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]


class ForwardError(Exception):
    """The canary gave no usable answer; the reason names what went wrong."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection to the canary carrying one request at a time."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.future: asyncio.Future[Answer] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.reusable = True
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(f"connection to the canary lost: {exc or 'closed by peer'}")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(f"malformed answer from the canary: {err}")

    def on_message_begin(self) -> None:
        self.status, self.headers, self.body, self.size = 0, [], [], 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(f"answer from the canary larger than {self.max_body} bytes")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        fut = self.future
        self.future = None
        self.reusable = self.parser.should_keep_alive()
        if fut is None or fut.done():
            return
        ctype = "application/json"
        relayed: list[tuple[str, str]] = []
        for name, value in self.headers:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name in RELAYED_HEADERS:
                relayed.append((name.decode("latin-1"), value.decode("latin-1")))
        fut.set_result(Answer(self.status, b"".join(self.body), ctype, tuple(relayed)))

    def _fail(self, reason: str) -> None:
        self.reusable = False
        fut, self.future = self.future, None
        if fut is not None and not fut.done():
            fut.set_exception(ForwardError(reason))
        if self.transport is not None and not self.lost:
            self.transport.close()


class Forwarder:
    """Sends requests to one upstream (the canary's Service), bounded in connections,
    time and answer size."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        timeout_s: float = 10.0,
        max_body: int = 64 << 20,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"canary URL {url!r} is not http://host[:port]")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.authority = f"{self.host}:{self.port}".encode()
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.max_body = max_body
        self.busy = 0
        self._idle: deque[_Conn] = deque()

    def saturated(self) -> bool:
        return self.busy >= self.max_connections

    def forward(
        self,
        path: str,
        body: bytes,
        headers: list[tuple[str, bytes]],
        done: Callable[[Answer | ForwardError], None],
    ) -> None:
        """POST ``body`` to ``path`` upstream; ``done`` gets the answer or the error,
        on the loop thread. The caller checks ``saturated()`` first."""
        self.busy += 1
        task = asyncio.ensure_future(self._send(path, body, headers))

        def finished(t: asyncio.Future[Answer]) -> None:
            self.busy -= 1
            if t.cancelled():
                done(ForwardError("forwarding cancelled"))
                return
            err = t.exception()
            if err is None:
                done(t.result())
            elif isinstance(err, ForwardError):
                done(err)
            else:
                done(ForwardError(f"{type(err).__name__}: {err}"))

        task.add_done_callback(finished)

    async def _send(self, path: str, body: bytes, headers: list[tuple[str, bytes]]) -> Answer:
        async with asyncio.timeout(self.timeout_s):
            while self._idle:
                # A pooled connection the canary closed while idle fails before any
                # answer: try the next one, then a new one.
                conn = self._idle.pop()
                if conn.lost or conn.transport is None or conn.transport.is_closing():
                    continue
                try:
                    return await self._exchange(conn, path, body, headers)
                except ForwardError:
                    if conn.status:
                        raise
            loop = asyncio.get_running_loop()
            try:
                _, conn = await loop.create_connection(
                    lambda: _Conn(self.max_body), self.host, self.port
                )
            except OSError as err:
                raise ForwardError(f"cannot connect to the canary: {err}") from err
            return await self._exchange(conn, path, body, headers)

    async def _exchange(
        self, conn: _Conn, path: str, body: bytes, headers: list[tuple[str, bytes]]
    ) -> Answer:
        head = [b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (path.encode(), self.authority)]
        for name, value in headers:
            head.append(b"%s: %s\r\n" % (name.encode(), value))
        head.append(b"%s: 1\r\ncontent-length: %d\r\n\r\n" % (FORWARDED_MARK.encode(), len(body)))
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        conn.future, conn.status = fut, 0
        assert conn.transport is not None
        conn.transport.write(b"".join(head) + body)
        try:
            answer = await fut
        except BaseException:
            conn.reusable = False
            if conn.transport is not None:
                conn.transport.close()
            raise
        if conn.reusable and not conn.lost and len(self._idle) < self.max_connections:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return answer

    def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.transport.close()


def forward_headers(meta: Any) -> list[tuple[str, bytes]]:
    """The request headers a forwarded body needs, from the server's RequestMeta."""
    out: list[tuple[str, bytes]] = []
    for name, value in zip(
        FORWARDED_HEADERS,
        (meta.content_type, meta.header_length, meta.content_encoding),
        strict=True,
    ):
        if value is not None:
            out.append((name, value))
    return out

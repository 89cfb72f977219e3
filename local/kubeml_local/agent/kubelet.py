"""The node's kubelet API, as far as ``kubectl logs`` needs it: TLS on the node's InternalIP.

The apiserver dials ``https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>`` with its
kubelet client certificate and checks ours against the cluster CA. We ask every client for a
certificate of that CA and serve only the apiserver's (401 without one, 403 for any other
identity). What a client can make us hold is bounded: connections, request line and header
sizes, the TLS handshake, and idle or slow connections (aiohttp closes a connection that
has not sent a whole request within the keep-alive timeout). Connections count from
accept, TLS handshakes included; beyond the limit new ones are closed at once.

``GET /containerLogs/{namespace}/{pod}/{container}`` answers with the container's current
log file, or with the previous run's (``previous``), the last ``tailLines`` lines, at most
``limitBytes`` bytes, and with ``follow`` keeps streaming until that run of the container
ends (its file is rotated away or it is no longer running) or the client goes away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from kubeml_local.agent.logquery import (
    LogOptions,
    QueryError,
    authorize,
    parse_path,
    parse_query,
    since_verdict,
    tail_offset,
)

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_LINE_SIZE = 4096
MAX_FIELD_SIZE = 4096
MAX_HEADERS = 32
IDLE_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
FOLLOW_POLL_S = 0.2
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Serving:
    """Where the kubelet API listens and with which certificates."""

    host: str
    port: int
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class ContainerLog:
    """What the agent knows of one container's logs."""

    current: Path
    previous: Path
    # Whether the run writing ``current`` is still going (read while following).
    running: Callable[[], bool]
    run_started: dt.datetime | None
    waiting_reason: str = ""


class LogSource(Protocol):
    def container_log(self, namespace: str, pod: str, container: str) -> ContainerLog | None:
        """None when no pod of that name runs here (or it has no such container)."""


def server_context(serving: Serving) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(serving.client_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(serving.cert), str(serving.key))
    # Optional, so a client without one gets a 401 rather than a failed handshake; a
    # certificate that does not chain to the CA still fails the handshake.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class _Server(web.Server):
    """aiohttp's low-level server, telling us when a connection it served is gone."""

    def __init__(self, on_lost: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._on_lost()


class _Handshaking(asyncio.Protocol):
    """An accepted TCP connection while its TLS handshake runs. Connections are counted
    from here, so that clients stuck in the handshake count against the limit too."""

    def __init__(self, owner: KubeletServer) -> None:
        self.owner = owner
        self.target: asyncio.Protocol | None = None
        self.early: list[bytes] = []
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.owner.accepted(transport, self)

    # Application data can arrive in the same read that completes the handshake, before
    # the HTTP handler takes over the TLS transport: it is kept and handed over.
    def data_received(self, data: bytes) -> None:
        if self.target is not None:
            self.target.data_received(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # Only reached when the connection ends before the HTTP handler takes over.
        self.lost = True


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


class KubeletServer:
    def __init__(self, serving: Serving, logs: LogSource) -> None:
        self.serving = serving
        self.logs = logs
        self._server: _Server | None = None
        self._listener: asyncio.Server | None = None
        self._tls = server_context(serving)
        self._open = 0
        self._handshakes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = _Server(
            self._released,
            self.handle,
            handler_cancellation=True,  # a follow ends when its client goes away
            keepalive_timeout=IDLE_TIMEOUT_S,
            max_line_size=MAX_LINE_SIZE,
            max_field_size=MAX_FIELD_SIZE,
            max_headers=MAX_HEADERS,
            access_log=None,
        )
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Handshaking(self),
            self.serving.host,
            self.serving.port,
            backlog=MAX_CONNECTIONS,
            reuse_address=True,
        )
        log.info("kubelet API on https://%s:%d", self.serving.host, self.serving.port)

    # -- connections: counted from accept until closed ----------------------------------
    def accepted(self, transport: asyncio.Transport, guard: _Handshaking) -> None:
        if self._open >= MAX_CONNECTIONS:
            log.warning("kubelet API: %d connections open, refusing one", self._open)
            transport.abort()
            return
        self._open += 1
        task = asyncio.get_running_loop().create_task(self._upgrade(transport, guard))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _released(self) -> None:
        self._open -= 1

    @property
    def open_connections(self) -> int:
        return self._open

    async def _upgrade(self, transport: asyncio.Transport, guard: _Handshaking) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                guard,
                self._tls,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            )
        except asyncio.CancelledError:  # shutdown
            transport.abort()
            self._released()
            raise
        except Exception as err:  # a failed or timed-out handshake, the peer gone
            log.debug("kubelet API: TLS handshake failed: %s", err)
            transport.abort()
            self._released()
            return
        if tls is None or self._server is None or guard.lost or tls.is_closing():
            transport.abort()
            self._released()
            return
        handler = self._server()
        tls.set_protocol(handler)
        guard.target = handler
        handler.connection_made(tls)  # from here aiohttp's connection_lost releases it
        for data in guard.early:
            handler.data_received(data)
        if guard.eof:
            handler.eof_received()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for task in list(self._handshakes):
            task.cancel()
        if self._server is not None:
            self._server.pre_shutdown()
            await self._server.shutdown(2.0)
        if self._listener is not None:
            await self._listener.wait_closed()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        verdict = authorize(_peer_cert(request))
        if verdict.status != 200:
            return _text(verdict.status, verdict.reason)
        if request.method not in ("GET", "HEAD"):
            return _text(405, f"method {request.method} not allowed")
        target = parse_path(request.path)
        if target is None:
            return _text(404, f"404 page not found: {request.path}")
        try:
            options = parse_query(request.query, dt.datetime.now(dt.UTC))
        except QueryError as err:
            return _text(400, str(err))
        namespace, pod, container = target
        found = self.logs.container_log(namespace, pod, container)
        if found is None:
            return _text(404, f"pod {namespace}/{pod} has no container {container} on this node")
        # Worded as the kubelet words them.
        what = f'container "{container}" in pod "{pod}"'
        return await self._serve(request, found, options, what)

    async def _serve(
        self, request: web.BaseRequest, found: ContainerLog, options: LogOptions, what: str
    ) -> web.StreamResponse:
        path = found.previous if options.previous else found.current
        try:
            f: BinaryIO = path.open("rb")
        except FileNotFoundError:
            if options.previous:
                return _text(400, f"previous terminated {what} not found")
            reason = found.waiting_reason or "ContainerCreating"
            return _text(400, f"{what} is waiting to start: {reason}")
        with f:
            stat = os.fstat(f.fileno())
            start = 0
            skip_old = False
            if options.since is not None:
                written = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
                started = None if options.previous else found.run_started
                try:
                    skip_old = since_verdict(options.since, started, written) == "none"
                except QueryError as err:
                    return _text(400, str(err))
            if skip_old:
                start = f.seek(0, os.SEEK_END)
            elif options.tail_lines is not None:
                start = tail_offset(f, options.tail_lines)
            f.seek(start)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            follow = options.follow and not options.previous
            await _copy(f, resp, options.limit_bytes, follow, path, stat.st_ino, found.running)
            await resp.write_eof()
            return resp


async def _copy(
    f: BinaryIO,
    resp: web.StreamResponse,
    limit: int | None,
    follow: bool,
    path: Path,
    inode: int,
    running: Callable[[], bool],
) -> None:
    left = limit if limit is not None else -1
    while left != 0:
        chunk = f.read(CHUNK if left < 0 else min(CHUNK, left))
        if chunk:
            await resp.write(chunk)
            if left > 0:
                left -= len(chunk)
            continue
        if not follow:
            return
        # At the end: this run may still write more, unless it has ended.
        if not running() or _rotated(path, inode):
            follow = False  # one last read catches what was written meanwhile
            continue
        await asyncio.sleep(FOLLOW_POLL_S)


def _rotated(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino != inode
    except FileNotFoundError:
        return True


def _peer_cert(request: web.BaseRequest) -> dict[str, Any] | None:
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    return cert if isinstance(cert, dict) and cert else None

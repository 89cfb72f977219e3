"""The node agent's kubelet API on its own (no cluster): real TLS on loopback, real files.

What the end-to-end tests cannot easily force: a follow that ends when its run's file is
rotated away, and the bounds on what a client can make the server hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubeml_local.agent import kubelet
from kubeml_local.agent.kubelet import ContainerLog, KubeletServer, Serving
from kubeml_local.config import free_ports
from kubeml_local.pki import Pki, ensure_pki
from kubeml_local.readiness import poll

pytestmark = pytest.mark.integration


@dataclass
class Files:
    """A LogSource over real files: one pod ``p`` in ``ns`` with container ``c``."""

    dir: Path
    running: bool = True
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def current(self) -> Path:
        return self.dir / "c.log"

    def container_log(self, namespace: str, pod: str, container: str) -> ContainerLog | None:
        if (namespace, pod, container) != ("ns", "p", "c"):
            return None
        return ContainerLog(self.current, self.dir / "c.log.1", lambda: self.running, self.started)


@dataclass
class Running:
    url: str
    pki: Pki
    files: Files
    server: KubeletServer

    def context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        cert = cert or self.pki.apiserver_kubelet_client
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.url + path, context=self.context(), timeout=timeout
            ) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    pki = ensure_pki(tmp_path / "pki", node_name="n", service_ip="127.96.0.1")
    (port,) = free_ports(1)
    files = Files(tmp_path)
    files.current.write_bytes(b"one\ntwo\n")
    serving = Serving("127.0.0.1", port, pki.kubelet_cert, pki.kubelet_key, pki.ca_cert)
    loop = asyncio.new_event_loop()
    srv = KubeletServer(serving, files)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield Running(f"https://127.0.0.1:{port}", pki, files, srv)
    finally:
        asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_plain_reads(server: Running) -> None:
    assert server.get("/containerLogs/ns/p/c") == (200, b"one\ntwo\n")
    assert server.get("/containerLogs/ns/p/c?tailLines=1") == (200, b"two\n")
    assert server.get("/containerLogs/ns/p/c?limitBytes=5") == (200, b"one\nt")
    assert server.get("/containerLogs/ns/p/other")[0] == 404
    assert server.get("/containerLogs/ns/p/c?tailLines=-3")[0] == 400
    status, body = server.get("/containerLogs/ns/p/c?previous=true")
    assert status == 400 and b"previous terminated container" in body
    (server.files.dir / "c.log.1").write_bytes(b"before\n")
    assert server.get("/containerLogs/ns/p/c?previous=true") == (200, b"before\n")
    assert server.get("/pods")[0] == 404


def _follow(server: Running, path: str) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with urllib.request.urlopen(server.url + path, context=server.context(), timeout=30) as r:
            while chunk := r.read1(65536):
                got.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_follow_streams_until_the_run_ends(server: Running) -> None:
    thread, got = _follow(server, "/containerLogs/ns/p/c?follow=true")
    poll(lambda: b"".join(got) == b"one\ntwo\n", timeout=10, what="the existing lines")
    with server.files.current.open("ab") as f:
        f.write(b"three\n")
    poll(lambda: b"".join(got).endswith(b"three\n"), timeout=10, what="an appended line")
    assert thread.is_alive()
    server.files.running = False  # the container exits: the stream ends by itself
    thread.join(10)
    assert not thread.is_alive()
    assert b"".join(got) == b"one\ntwo\nthree\n"


def test_follow_ends_when_the_container_restarts(server: Running) -> None:
    thread, got = _follow(server, "/containerLogs/ns/p/c?follow=true&tailLines=1")
    poll(lambda: b"".join(got) == b"two\n", timeout=10, what="the last line")
    # The agent rotates the file when the container starts again; the new run's output
    # belongs to a new request, as with a kubelet.
    server.files.current.rename(server.files.dir / "c.log.1")
    server.files.current.write_bytes(b"new run\n")
    thread.join(10)
    assert not thread.is_alive()
    assert b"".join(got) == b"two\n"


def test_oversized_headers_are_refused(server: Running) -> None:
    req = urllib.request.Request(
        server.url + "/containerLogs/ns/p/c", headers={"X-Big": "x" * 10_000}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=server.context(), timeout=10)
    assert err.value.code in (400, 431)


def _refused(ctx: ssl.SSLContext, host: str, port: int) -> bool:
    """Whether a new TLS connection is closed without being served."""
    try:
        with socket.create_connection((host, port), 10) as raw:
            tls = ctx.wrap_socket(raw, server_hostname=host)
            tls.settimeout(10)
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_connections_beyond_the_cap_are_closed(server: Running) -> None:
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    ctx = server.context()
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(kubelet.MAX_CONNECTIONS):
            raw = socket.create_connection((host, port), 10)
            held.append(ctx.wrap_socket(raw, server_hostname=host))
        assert _refused(ctx, host, port)
        # The held ones still work.
        held[0].sendall(b"GET /containerLogs/ns/p/c HTTP/1.1\r\nHost: x\r\n\r\n")
        held[0].settimeout(10)
        assert held[0].recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    poll(lambda: server.get("/containerLogs/ns/p/c")[0] == 200, timeout=10, what="served again")


def test_connections_stuck_before_tls_count_too(server: Running) -> None:
    """Clients that connect and never start TLS hold a slot only until the handshake
    deadline; while they hold them all, nobody else gets in."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    silent = [socket.create_connection((host, port), 10) for _ in range(kubelet.MAX_CONNECTIONS)]
    try:
        assert _refused(server.context(), host, port)
    finally:
        for s in silent:
            s.close()
    poll(lambda: server.get("/containerLogs/ns/p/c")[0] == 200, timeout=10, what="served again")


def test_churn_leaks_no_connection_slot(server: Running) -> None:
    """Clients that hang up at every stage (before TLS, right after it, mid-request)
    give their slot back."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    ctx = server.context()
    for i in range(3 * kubelet.MAX_CONNECTIONS):
        raw = socket.create_connection((host, port), 10)
        if i % 3 == 0:
            raw.close()
            continue
        tls = ctx.wrap_socket(raw, server_hostname=host)
        if i % 3 == 2:
            tls.sendall(b"GET /containerLogs/ns/p/c?follow=true HTTP/1.1\r\nHost: x\r\n")
        tls.close()
    # And a follower that goes away while the log is quiet.
    tls = ctx.wrap_socket(socket.create_connection((host, port), 10), server_hostname=host)
    tls.sendall(b"GET /containerLogs/ns/p/c?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
    tls.settimeout(10)
    assert tls.recv(100).startswith(b"HTTP/1.1 200")
    assert server.server.open_connections >= 1
    tls.close()
    poll(lambda: server.server.open_connections == 0, timeout=15, what="every slot released")
    assert server.get("/containerLogs/ns/p/c")[0] == 200

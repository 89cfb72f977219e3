"""Attacks on a running model server (`kubeml serve` as a process with its default
limits, the artifact in the local cluster's S3). Each attack is bounded in time;
after each, the server still answers and its resident memory is back within 50 MB
of what it was at rest. Latencies are printed (run with -s to see them), not
asserted: timing belongs to benchmarks."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.server import (
    Artifacts,
    ServerProcess,
    get,
    post,
    rss_bytes,
    start_server,
    stored_artifacts,
    wait_for,
)

pytestmark = pytest.mark.integration

RSS_SLACK = 50 << 20
MAX_CONNECTIONS = 300
INFER = "/v2/models/iris/infer"
ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


@dataclass
class Target:
    srv: ServerProcess
    host: str
    port: int
    rest_rss: int

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def still_well(self, what: str) -> None:
        """Answers a prediction, and its memory is back near its resting size."""
        assert self.srv.proc.poll() is None, f"server died after {what}"
        status, out = post(self.srv.base + INFER, ROW)
        assert status == 200, (what, out)

        def settled() -> int | None:
            rss = rss_bytes(self.srv.proc.pid)
            return rss if rss <= self.rest_rss + RSS_SLACK else None

        try:
            rss = wait_for(settled, f"RSS back within 50 MB of rest after {what}", timeout=20)
        except TimeoutError:
            rss = rss_bytes(self.srv.proc.pid)
            raise AssertionError(
                f"after {what}: RSS {rss >> 20} MB, at rest {self.rest_rss >> 20} MB"
            ) from None
        print(f"\n[{what}] RSS {rss >> 20} MB (at rest {self.rest_rss >> 20} MB)")


@pytest.fixture(scope="module")
def artifacts(s3_env: dict[str, str]) -> Iterator[Artifacts]:
    with stored_artifacts(s3_env) as a:
        yield a


@pytest.fixture(scope="module")
def target(
    s3_env: dict[str, str], artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    # The Deployment's limits, except a connection cap the idle-connection attack can
    # reach without thousands of sockets.
    srv = start_server(
        s3_env,
        artifacts,
        tmp_path_factory.mktemp("abuse"),
        artifacts.uri,
        {
            "KUBEML_MAX_REQUEST_BYTES": "",
            "KUBEML_MAX_BATCH_SIZE": "",
            "KUBEML_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
    )
    wait_for(lambda: True if get(srv.base + "/v2/health/ready")[0] == 200 else None, "readiness")
    for _ in range(50):  # warm: the first requests allocate what every later one reuses
        assert post(srv.base + INFER, ROW)[0] == 200
    host, port = srv.base.removeprefix("http://").split(":")
    yield Target(srv, host, int(port), rss_bytes(srv.proc.pid))
    assert srv.stop() == 0, srv.log.read_text()[-4000:]


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any], bool]:
    """(status, JSON body, whether the server then closed) of one response."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = json.loads(resp.read() or b"{}")
    closed = resp.will_close
    return resp.status, body, closed


def timed_requests(base: str, stop: threading.Event, latencies: list[float]) -> list[str]:
    """A well-behaved client: one keep-alive connection, a request after another."""
    failures: list[str] = []
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps(ROW)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            conn.request("POST", INFER, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(f"HTTP {resp.status}")
        except OSError as err:
            failures.append(f"{type(err).__name__}: {err}")
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        latencies.append(time.perf_counter() - t0)
        stop.wait(0.01)
    conn.close()
    return failures


def test_slowloris_does_not_starve_a_normal_client(target: Target) -> None:
    """200 connections each sending its headers one byte per second for 60 s (reopened
    when the server times them out, as an attacker would) while a client predicts."""
    stop = threading.Event()
    latencies: list[float] = []
    failures: list[str] = []
    client = threading.Thread(
        target=lambda: failures.extend(timed_requests(target.srv.base, stop, latencies))
    )
    head = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    socks: list[tuple[socket.socket, int]] = []
    timed_out = 0
    client.start()
    try:
        socks = [(target.connect(), 0) for _ in range(200)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tick = time.monotonic()
            for i, (s, pos) in enumerate(socks):
                try:
                    s.send(head[pos : pos + 1])
                    socks[i] = (s, pos + 1)
                except OSError:  # timed out by the server: come back with a new one
                    timed_out += 1
                    s.close()
                    socks[i] = (target.connect(), 0)
            stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
    finally:
        stop.set()
        client.join(timeout=30)
        for s, _ in socks:
            s.close()
    assert failures == [], failures[:5]
    assert len(latencies) > 100
    q = statistics.quantiles(latencies, n=100)
    print(
        f"\n[slowloris] {len(latencies)} requests answered, p50 {q[49] * 1e3:.1f} ms, "
        f"p99 {q[98] * 1e3:.1f} ms; {timed_out} slow connections closed by the server"
    )
    # Each slow connection is cut at the header timeout (10 s): in 60 s, many were.
    assert timed_out >= 200
    target.still_well("slowloris")


def test_unterminated_48mib_headers_get_431_and_memory_stays_bounded(target: Target) -> None:
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(target.srv.proc.pid))
            stop.wait(0.02)

    outcomes: list[str] = []

    def attack() -> None:
        chunk = b"a" * (1 << 20)
        with target.connect(timeout=30) as s:
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(48):
                    s.sendall(chunk)
            except OSError:
                pass  # the server answered and closed: the rest had nowhere to go
            try:
                status, _, _ = read_response(s)
                outcomes.append(str(status))
            except (OSError, http.client.HTTPException):
                outcomes.append("closed")

    sampler = threading.Thread(target=sample)
    sampler.start()
    attackers = [threading.Thread(target=attack) for _ in range(16)]
    try:
        for t in attackers:
            t.start()
        for t in attackers:
            t.join(timeout=120)
    finally:
        stop.set()
        sampler.join()
    assert len(outcomes) == 16 and set(outcomes) <= {"431", "closed"}, outcomes
    assert "431" in outcomes
    print(
        f"\n[48 MiB headers] outcomes {sorted(outcomes)}; peak RSS {peak[0] >> 20} MB "
        f"(at rest {target.rest_rss >> 20} MB)"
    )
    assert peak[0] < target.rest_rss + (100 << 20)
    target.still_well("48 MiB headers")


def raw_request(target: Target, data: bytes) -> tuple[int, dict[str, Any], bool]:
    with target.connect() as s:
        s.sendall(data)
        return read_response(s)


def test_text_plain_is_415(target: Target) -> None:
    req = urllib.request.Request(
        target.srv.base + INFER,
        data=json.dumps(ROW).encode(),
        headers={"Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 415 and "text/plain" in json.loads(err.value.read())["error"]
    form = urllib.request.Request(target.srv.base + INFER, data=b"a=1")  # urllib's default type
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(form, timeout=10)
    assert err.value.code == 415
    target.still_well("text/plain body")


def test_a_1mib_url_is_414(target: Target) -> None:
    status, body, closed = raw_request(
        target, b"GET /v2/" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 414 and "request target" in body["error"] and closed
    target.still_well("1 MiB URL")


def test_a_100mb_body_is_413_and_an_ordinary_client_reads_it(target: Target) -> None:
    body = b"x" * (100 * 1000 * 1000)
    req = urllib.request.Request(
        target.srv.base + INFER, data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 413
    assert "larger than the limit" in json.loads(err.value.read())["error"]
    del body
    target.still_well("100 MB body")


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"Content-Length: -1\r\n\r\n", "Content-Length"),
        (b"Content-Length: ten\r\n\r\n", "Content-Length"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "malformed"),
    ],
)
def test_malformed_framing_is_400_and_closes(target: Target, head: bytes, words: str) -> None:
    status, body, closed = raw_request(
        target, b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head
    )
    assert status == 400 and closed and "malformed" in body["error"], body
    target.still_well(f"malformed framing {head[:24]!r}")


def test_idle_connections_beyond_the_cap_do_not_lock_clients_out(target: Target) -> None:
    idle = [target.connect() for _ in range(MAX_CONNECTIONS + 200)]
    try:
        status, out = post(target.srv.base + INFER, ROW)
        assert status == 200, out
    finally:
        for s in idle:
            s.close()
    target.still_well(f"{MAX_CONNECTIONS + 200} idle connections")


def test_a_body_sent_too_slowly_is_cut_off(target: Target) -> None:
    with target.connect(timeout=60) as s:
        s.sendall(
            b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        t0 = time.monotonic()
        status, body, closed = read_response(s)
    assert status == 408 and closed and "stalled" in body["error"]
    print(f"\n[stalled body] cut off after {time.monotonic() - t0:.1f} s")
    target.still_well("stalled body")

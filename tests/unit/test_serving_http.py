"""The native HTTP transport on a real loopback socket: keep-alive, pipelining in
order, body limits (413) before and while reading, chunked bodies, Expect:
100-continue, malformed requests; and the ASGI adapter."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml.serving import http
from kubeml.serving.app import ModelServer
from kubeml.serving.asgi import AsgiApp
from kubeml.serving.config import ServerConfig
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from kubeml.serving.signature import CompiledSignature
from kubeml.serving.worker import PredictWorker

FEATURES = ["a", "b", "c", "d"]
SIG = CompiledSignature.from_json(
    {
        "task": "classification",
        "inputs": [{"name": f, "dtype": "number"} for f in FEATURES],
        "outputs": [{"name": "predict", "dtype": "integer"}],
        "classes": ["0", "1", "2"],
    }
)
LIMIT = 4096


def make_server(**limits: Any) -> tuple[ModelServer, RandomForestClassifier, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    cfg = ServerConfig(
        model="iris",
        version=1,
        modelversion="iris-v1",
        artifact_uri="s3://b/k",
        artifact_sha256="0" * 64,
        signature=SIG,
        max_request_bytes=LIMIT,
        **limits,
    )
    server = ModelServer(cfg)
    server.set_loaded(Loaded(Predictor(model, SIG), None))
    return server, model, X


class Running:
    def __init__(self, **limits: Any) -> None:
        self.server, self.model, self.X = make_server(**limits)
        self.loop = asyncio.new_event_loop()
        self.pool = PredictWorker()
        self.server.attach(self.loop, self.pool)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            srv, conns = self.loop.run_until_complete(http.start(self.server, "127.0.0.1", 0))
            self.srv = srv
            self.connections = conns
            self.port = srv.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            srv.close()
            self.loop.run_until_complete(srv.wait_closed())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.pool.close()


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.stop()


def connect(r: Running) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    return s


def read_response(s: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    body, remainder = rest[:length], rest[length:]
    buf[:] = remainder
    return status, headers, body


def post(path: str, doc: Any, extra: str = "") -> bytes:
    body = json.dumps(doc).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def infer_doc(rows: np.ndarray, rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "inputs": [
            {
                "name": "x",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            }
        ],
    }


def test_keep_alive_serves_many_requests_on_one_connection(running: Running) -> None:
    with connect(running) as s:
        buf = bytearray()
        for i in range(5):
            rows = running.X[i : i + 3]
            s.sendall(post("/v2/models/iris/infer", infer_doc(rows, f"r{i}")))
            status, headers, body = read_response(s, buf)
            assert status == 200 and headers["content-type"] == "application/json"
            out = json.loads(body)
            assert out["id"] == f"r{i}"
            assert out["outputs"][0]["data"] == running.model.predict(rows).tolist()


def test_pipelined_requests_are_answered_in_order(running: Running) -> None:
    with connect(running) as s:
        blob = b"".join(
            post("/v2/models/iris/infer", infer_doc(running.X[i : i + 1], f"p{i}"))
            for i in range(20)
        )
        blob += b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(blob)
        buf = bytearray()
        ids = [json.loads(read_response(s, buf)[2])["id"] for _ in range(20)]
        assert ids == [f"p{i}" for i in range(20)]
        assert read_response(s, buf)[0] == 200


def test_declared_oversized_body_is_413_before_reading_it(running: Running) -> None:
    with connect(running) as s:
        head = f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}"
        s.sendall(head.encode() + b"\r\n\r\n")
        status, headers, body = read_response(s, bytearray())
        assert status == 413 and headers.get("connection") == "close"
        assert str(LIMIT) in json.loads(body)["error"]


def test_chunked_body_over_the_limit_is_413(running: Running) -> None:
    with connect(running) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1000
        for _ in range(6):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, _ = read_response(s, bytearray())
        assert status == 413


def test_chunked_body_within_the_limit_is_served(running: Running) -> None:
    body = json.dumps(infer_doc(running.X[:2], "c")).encode()
    with connect(running) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for part in (body[:10], body[10:]):
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        status, _, out = read_response(s, bytearray())
        assert status == 200 and json.loads(out)["id"] == "c"


def test_expect_100_continue(running: Running) -> None:
    body = json.dumps(infer_doc(running.X[:1], "e")).encode()
    with connect(running) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        buf = bytearray()
        status, _, _ = read_response(s, buf)
        assert status == 100
        s.sendall(body)
        status, _, out = read_response(s, buf)
        assert status == 200 and json.loads(out)["id"] == "e"


def test_malformed_http_is_400_and_closed(running: Running) -> None:
    with connect(running) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, headers, body = read_response(s, bytearray())
        assert status == 400 and "malformed" in json.loads(body)["error"]
        assert headers.get("connection") == "close"
        assert s.recv(10) == b""


def test_connection_close_is_honoured(running: Running) -> None:
    with connect(running) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(s, bytearray())
        assert status == 200 and headers.get("connection") == "close"
        assert s.recv(10) == b""


def test_http10_keep_alive(running: Running) -> None:
    with connect(running) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        buf = bytearray()
        status, headers, _ = read_response(s, buf)
        assert status == 200 and headers.get("connection") == "keep-alive"
        s.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        status, headers, _ = read_response(s, buf)
        assert status == 200 and headers.get("connection") == "close"


def test_a_client_vanishing_mid_request_leaves_the_server_healthy(running: Running) -> None:
    for _ in range(5):
        s = connect(running)
        s.sendall(post("/v2/models/iris/infer", infer_doc(running.X[:1], "gone"))[:-5])
        s.close()
    with connect(running) as s:
        s.sendall(post("/v2/models/iris/infer", infer_doc(running.X[:1], "alive")))
        status, _, out = read_response(s, bytearray())
        assert status == 200 and json.loads(out)["id"] == "alive"
    assert running.server.arriving == 0


# -- ASGI adapter -----------------------------------------------------------------------------


def test_asgi_adapter() -> None:
    server, model, X = make_server()
    loop = asyncio.new_event_loop()
    pool = PredictWorker()
    server.attach(loop, pool)
    app = AsgiApp(server)

    async def call(
        method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": b"",
            "headers": headers or [],
        }
        await app(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]

    try:
        status, body = loop.run_until_complete(
            call("POST", "/v2/models/iris/infer", json.dumps(infer_doc(X[:4], "a")).encode())
        )
        assert (
            status == 200
            and json.loads(body)["outputs"][0]["data"] == model.predict(X[:4]).tolist()
        )
        status, _ = loop.run_until_complete(
            call("POST", "/v2/models/iris/infer", b"x" * (LIMIT + 1))
        )
        assert status == 413
        status, _ = loop.run_until_complete(
            call(
                "POST",
                "/v2/models/iris/infer",
                b"{}",
                [(b"content-length", str(LIMIT + 5).encode())],
            )
        )
        assert status == 413
    finally:
        pool.close()
        loop.close()


class _Conn:
    answered_at: float | None = None


def test_return_tracker_counts_recently_answered_idle_connections() -> None:
    tracker = http.ReturnTracker(window=0.05)
    a, b = _Conn(), _Conn()
    tracker.answered(a)  # type: ignore[arg-type]
    tracker.answered(b)  # type: ignore[arg-type]
    assert tracker.count() == 2
    a.answered_at = None  # a's next request began: no longer expected
    assert tracker.count() == 1
    tracker.answered(a)  # type: ignore[arg-type]
    tracker.answered(a)  # type: ignore[arg-type]  # the older entry for a is stale now
    assert tracker.count() == 2
    deadline = time.monotonic() + 5
    while tracker.count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracker.count() == 0  # nobody is waited for beyond the window


def test_sequential_requests_on_one_connection_are_not_held_back(running: Running) -> None:
    # One client: by the time its request is dispatched it is no longer "expected",
    # so the batcher never waits (the configured delay here is the default 2 ms).
    assert running.server.cfg.max_batch_delay_ms > 0
    with connect(running) as s:
        buf = bytearray()
        for i in range(10):
            s.sendall(post("/v2/models/iris/infer", infer_doc(running.X[i : i + 1], f"s{i}")))
            assert read_response(s, buf)[0] == 200
            assert running.server.returning() <= 1


# -- limits -------------------------------------------------------------------------------

TIGHT = {
    "max_url_bytes": 256,
    "max_header_bytes": 2048,
    "header_timeout_s": 0.5,
    "body_timeout_s": 0.5,
    "keepalive_timeout_s": 0.5,
    "max_connections": 4,
}


@pytest.fixture(scope="module")
def tight() -> Iterator[Running]:
    r = Running(**TIGHT)
    yield r
    r.stop()


def closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_long_request_target_is_414_and_a_large_header_block_431(tight: Running) -> None:
    with connect(tight) as s:
        s.sendall(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(s, bytearray())
        assert status == 414 and b"256" in body and closed(s)
    with connect(tight) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        s.sendall(b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(30)))
        status, _, body = read_response(s, bytearray())
        assert status == 431 and b"2048" in body and closed(s)
    with connect(tight) as s:  # a large body is not a large head
        body = json.dumps(infer_doc(tight.X[:120], "big")).encode()
        assert len(body) > 2048
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        assert read_response(s, bytearray())[0] == 200


def test_slow_headers_are_408_and_idle_keep_alive_connections_are_closed(tight: Running) -> None:
    with connect(tight) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        status, _, body = read_response(s, bytearray())
        assert status == 408 and b"headers" in body and closed(s)
    with connect(tight) as s:
        s.sendall(post("/v2/models/iris/infer", infer_doc(tight.X[:1], "a"))[:-5])
        status, _, body = read_response(s, bytearray())
        assert status == 408 and b"stalled" in body and closed(s)
    with connect(tight) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s, bytearray())[0] == 200
        assert closed(s)  # idle past the keep-alive timeout: closed without a word


def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_the_connection_cap_closes_idle_connections_first() -> None:
    r = Running(max_connections=4)
    idle = [connect(r) for _ in range(4)]
    busy: list[socket.socket] = []
    try:
        until(lambda: len(r.connections) == 4, "4 connections held")
        with connect(r) as s:  # at the cap: an idle one makes room
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s, bytearray())[0] == 200
        for c in idle:
            c.close()
        until(lambda: not r.connections, "idle connections gone")
        for _ in range(4):  # every connection mid-request: nothing to evict
            c = connect(r)
            c.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            busy.append(c)
        until(
            lambda: sum(c.state == http.HEAD for c in list(r.connections)) == 4,
            "4 connections mid-request",
        )
        with connect(r) as s:
            status, _, body = read_response(s, bytearray())
            assert status == 503 and b"too many connections" in body
    finally:
        for c in idle + busy:
            c.close()
        r.stop()


def test_a_413_is_read_by_a_client_still_sending_its_body(running: Running) -> None:
    body = b"x" * (LIMIT * 64)
    with connect(running) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        s.sendall(body)  # all of it: the server reads and drops what it will not keep
        status, _, answer = read_response(s, bytearray())
        assert status == 413 and json.loads(answer)["error"].startswith("request body larger")
        assert closed(s)


def test_binary_tensors_over_the_wire(running: Running) -> None:
    rows = running.X[:6]
    raw = rows.tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [6, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    with connect(running) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
            b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (len(head), len(head) + len(raw))
            + head
            + raw
        )
        status, headers, body = read_response(s, bytearray())
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    n = int(headers["inference-header-content-length"])
    out = json.loads(body[:n])["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 6 * 8
    assert np.frombuffer(body[n:], "<i8").tolist() == running.model.predict(rows).tolist()


def test_a_large_header_block_in_one_read_with_its_body_is_431(tight: Running) -> None:
    body = json.dumps(infer_doc(tight.X[:1], "one")).encode()
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(30))
    with connect(tight) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )  # fmt: skip
        status, _, answer = read_response(s, bytearray())
        assert status == 431 and b"2048" in answer and closed(s)

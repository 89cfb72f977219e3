"""Exact canary shares by request: two real servers on loopback sockets, the stable one
forwarding to the canary; the split is exact, answers are relayed with the serving
version, and a canary that cannot answer never becomes the client's failure."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml.serving import http
from kubeml.serving.app import ModelServer
from kubeml.serving.config import ConfigError, ServerConfig
from kubeml.serving.forward import Split
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from kubeml.serving.signature import CompiledSignature
from kubeml.serving.worker import PredictWorker
from tests.unit.test_serving_http import infer_doc, post, read_response

FEATURES = ["a", "b", "c", "d"]


def _sig(features: list[str]) -> CompiledSignature:
    return CompiledSignature.from_json(
        {
            "task": "classification",
            "inputs": [{"name": f, "dtype": "number"} for f in features],
            "outputs": [{"name": "predict", "dtype": "integer"}],
            "classes": ["0", "1", "2"],
        }
    )


class Server:
    """A real server (version ``version``) on its own loop thread and loopback port."""

    def __init__(self, version: int, seed: int, features: int = 4, **cfg: Any) -> None:
        X, y = load_iris(return_X_y=True)
        X = X[:, :features]
        sig = _sig(FEATURES[:features])
        self.model = RandomForestClassifier(n_estimators=5, random_state=seed).fit(X, y)
        self.server = ModelServer(
            ServerConfig(
                model="iris",
                version=version,
                modelversion=f"iris-v{version}",
                artifact_uri="s3://b/k",
                artifact_sha256="0" * 64,
                signature=sig,
                **cfg,
            )
        )
        self.server.set_loaded(Loaded(Predictor(self.model, sig), None))
        self.loop = asyncio.new_event_loop()
        self.pool = PredictWorker()
        self.server.attach(self.loop, self.pool)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            srv, _ = self.loop.run_until_complete(http.start(self.server, "127.0.0.1", 0))
            self.port = srv.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            srv.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.pool.close()

    def metrics(self) -> str:
        return self.server.metrics.exposition().decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_all(
    port: int, n: int, path: str = "/v2/models/iris/infer"
) -> list[tuple[int, dict[str, str], Any]]:
    X, _ = load_iris(return_X_y=True)
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        buf = bytearray()
        for i in range(n):
            rows = X[i % 150 : i % 150 + 1]
            s.sendall(post(path, infer_doc(rows, f"r{i}")))
            status, headers, body = read_response(s, buf)
            out.append((status, headers, json.loads(body)))
    return out


def _series(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("percent", [0, 1, 5, 10, 25, 33, 50, 90, 99, 100])
def test_the_split_is_exact_in_every_window_of_100(percent: int) -> None:
    split = Split(percent)
    taken = [split.take() for _ in range(1000)]
    for start in range(0, 901, 37):
        assert sum(taken[start : start + 100]) == percent


def test_a_stable_server_forwards_exactly_its_share_and_relays_the_canary() -> None:
    canary = Server(2, seed=1)
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{canary.port}",
        canary_percent=30,
        canary_version="2",
    )
    try:
        answers = _send_all(stable.port, 300)
        X, _ = load_iris(return_X_y=True)
        by_version: Counter[str] = Counter()
        for i, (status, headers, doc) in enumerate(answers):
            assert status == 200, doc
            version = headers["kubeml-model-version"]
            assert doc["model_version"] == version
            by_version[version] += 1
            # Each answer is its version's own prediction.
            model = canary.model if version == "2" else stable.model
            expected = model.predict(X[i % 150 : i % 150 + 1]).tolist()
            assert doc["outputs"][0]["data"] == expected
        assert by_version == {"1": 210, "2": 90}
        text = stable.metrics()
        assert (
            _series(
                text,
                "kubeml_forwarded_requests_total",
                version="1",
                target_version="2",
                outcome="answered",
            )
            == 90
        )
        # Each server counts the requests it answered, under its own version.
        assert _series(stable.metrics(), "kubeml_requests_total", version="1") == 210
        assert _series(canary.metrics(), "kubeml_requests_total", version="2") == 90
    finally:
        stable.stop()
        canary.stop()


def test_an_unreachable_canary_is_answered_by_stable() -> None:
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{_closed_port()}",
        canary_percent=50,
        canary_version="2",
    )
    try:
        answers = _send_all(stable.port, 40)
        assert {(s, h["kubeml-model-version"]) for s, h, _ in answers} == {(200, "1")}
        outcome = _series(
            stable.metrics(), "kubeml_forwarded_requests_total", outcome="unreachable"
        )
        assert outcome == 20
    finally:
        stable.stop()


def test_a_canary_that_rejects_valid_requests_is_answered_by_stable() -> None:
    # A canary trained on other features answers every request of stable's shape 400.
    canary = Server(2, seed=1, features=3)
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{canary.port}",
        canary_percent=50,
        canary_version="2",
    )
    try:
        answers = _send_all(stable.port, 40)
        assert {(s, h["kubeml-model-version"]) for s, h, _ in answers} == {(200, "1")}
        assert _series(stable.metrics(), "kubeml_forwarded_requests_total", outcome="error") == 20
        # The canary's own metrics show its failures: what an analysis judges.
        assert _series(canary.metrics(), "kubeml_requests_total", code="400") == 20
    finally:
        stable.stop()
        canary.stop()


def test_requests_naming_a_version_or_malformed_are_never_forwarded() -> None:
    canary = Server(2, seed=1)
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{canary.port}",
        canary_percent=100,
        canary_version="2",
    )
    try:
        answers = _send_all(stable.port, 10, "/v2/models/iris/versions/1/infer")
        assert {(s, h["kubeml-model-version"]) for s, h, _ in answers} == {(200, "1")}
        with socket.create_connection(("127.0.0.1", stable.port), timeout=10) as s:
            s.sendall(post("/v2/models/iris/infer", {"inputs": "nope"}))
            status, _, body = read_response(s, bytearray())
        assert status == 400 and "error" in json.loads(body)
        assert _series(canary.metrics(), "kubeml_requests_total") == 0
    finally:
        stable.stop()
        canary.stop()


def test_v1_predict_is_forwarded_too() -> None:
    canary = Server(2, seed=1)
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{canary.port}",
        canary_percent=100,
        canary_version="2",
    )
    try:
        X, _ = load_iris(return_X_y=True)
        with socket.create_connection(("127.0.0.1", stable.port), timeout=10) as s:
            s.sendall(post("/v1/models/iris:predict", {"instances": X[:3].tolist()}))
            status, headers, body = read_response(s, bytearray())
        assert status == 200 and headers["kubeml-model-version"] == "2"
        assert json.loads(body)["predictions"] == canary.model.predict(X[:3]).tolist()
    finally:
        stable.stop()
        canary.stop()


@pytest.mark.parametrize(
    "url", ["https://x:1", "http://", "http://x:port", "http://x:1/path", "ftp://x"]
)
def test_a_canary_url_that_is_not_http_host_port_stops_the_server(url: str) -> None:
    env = {
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "1",
        "KUBEML_ARTIFACT_URI": "s3://b/k",
        "KUBEML_ARTIFACT_SHA256": "0" * 64,
        "KUBEML_SIGNATURE": json.dumps(
            {
                "task": "classification",
                "inputs": [{"name": "a", "dtype": "number"}],
                "outputs": [{"name": "predict", "dtype": "integer"}],
            }
        ),
        "KUBEML_CANARY_URL": url,
    }
    with pytest.raises(ConfigError, match="KUBEML_CANARY_URL"):
        ServerConfig.from_env(env)


def test_rows_of_the_answer_are_unchanged_by_forwarding() -> None:
    # Binary-free v2 with several rows through the forward path: same as direct.
    canary = Server(2, seed=1)
    stable = Server(
        1,
        seed=0,
        canary_url=f"http://127.0.0.1:{canary.port}",
        canary_percent=100,
        canary_version="2",
    )
    try:
        X, _ = load_iris(return_X_y=True)
        rows = X[::10]
        with socket.create_connection(("127.0.0.1", stable.port), timeout=10) as s:
            s.sendall(post("/v2/models/iris/infer", infer_doc(rows, "many")))
            status, _, body = read_response(s, bytearray())
        doc = json.loads(body)
        assert status == 200 and doc["id"] == "many"
        assert np.array_equal(doc["outputs"][0]["data"], canary.model.predict(rows))
    finally:
        stable.stop()
        canary.stop()

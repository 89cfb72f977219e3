"""The model server as a real process against the local cluster's real S3, serving a
real skops artifact: predictions equal the model's own, a tampered artifact keeps it
unready with the reason, metrics carry model and version."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml import models
from kubeml.data.profile import profile_frame
from kubeml.storage import ArtifactStore, S3Settings, sha256_bytes

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SIGNATURE = {
    "task": "classification",
    "inputs": [{"name": f, "dtype": "number"} for f in FEATURES],
    "outputs": [
        {"name": "predict", "dtype": "integer"},
        {"name": "predict_proba", "dtype": "number"},
    ],
    "classes": ["0", "1", "2"],
}
DEADLINE_S = 90.0
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value is not None:
                return value
        except (OSError, urllib.error.URLError) as err:
            last = err
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout:.0f}s (last error: {last})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post(url: str, doc: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@dataclass
class Artifacts:
    model: RandomForestClassifier
    X: np.ndarray
    uri: str
    tampered_uri: str
    sha256: str
    profile_uri: str


@pytest.fixture(scope="module")
def artifacts(s3_env: dict[str, str]) -> Iterator[Artifacts]:
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    data = models.save(model)
    store = ArtifactStore(S3Settings.from_env(s3_env), env=s3_env)
    store.ensure_bucket()
    prefix = f"test-server/{uuid.uuid4().hex[:8]}/"
    store.put_bytes(prefix + "model.skops", data)
    # One flipped byte late in the archive: still a zip, no longer the recorded bytes.
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    store.put_bytes(prefix + "tampered.skops", bytes(tampered))
    frame = pd.DataFrame(X, columns=FEATURES)
    store.put_json(
        prefix + "profile.json", profile_frame(frame, [(f, "number", "feature") for f in FEATURES])
    )
    yield Artifacts(
        model,
        X,
        store.uri(prefix + "model.skops"),
        store.uri(prefix + "tampered.skops"),
        sha256_bytes(data),
        store.uri(prefix + "profile.json"),
    )
    store.delete_prefix(prefix)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path
    termination_log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_server(s3_env: dict[str, str], a: Artifacts, tmp: Path, uri: str) -> ServerProcess:
    port = free_port()
    log = tmp / "server.log"
    termination = tmp / "termination-log"
    env = {
        **os.environ,
        **s3_env,
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "1",
        "KUBEML_MODELVERSION": "iris-v1",
        "KUBEML_ARTIFACT_URI": uri,
        "KUBEML_ARTIFACT_SHA256": a.sha256,
        "KUBEML_SIGNATURE": json.dumps(SIGNATURE),
        "KUBEML_PROFILE_URI": a.profile_uri,
        "KUBEML_MAX_BATCH_SIZE": "32",
        "KUBEML_MAX_BATCH_DELAY_MS": "2",
        "KUBEML_MAX_REQUEST_BYTES": "65536",
        "KUBEML_HOST": "127.0.0.1",
        "KUBEML_PORT": str(port),
        "KUBEML_TERMINATION_LOG": str(termination),
        "KUBEML_SHUTDOWN_DELAY_SECONDS": "0",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubeml.runtime.serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log, termination)

    def live() -> bool | None:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
        return True if get(server.base + "/v2/health/live")[0] == 200 else None

    wait_for(live, "liveness")
    return server


@pytest.fixture(scope="module")
def server(
    s3_env: dict[str, str], artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    srv = start_server(s3_env, artifacts, tmp_path_factory.mktemp("server"), artifacts.uri)

    def ready() -> bool | None:
        status, body = get(srv.base + "/v2/health/ready")
        if status == 503 and json.loads(body)["reason"] not in ("Loading",):
            raise AssertionError(f"unready: {body!r}; log: {srv.log.read_text()}")
        return True if status == 200 else None

    wait_for(ready, "readiness")
    yield srv
    assert srv.stop() == 0, srv.log.read_text()


def test_v2_predictions_equal_the_models_own(server: ServerProcess, artifacts: Artifacts) -> None:
    X = artifacts.X
    want = artifacts.model.predict(X).tolist()
    status, out = post(
        server.base + "/v2/models/iris/infer",
        {
            "id": "all",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [150, 4],
                    "datatype": "FP64",
                    "data": X.ravel().tolist(),
                }
            ],
        },
    )
    assert status == 200 and out["id"] == "all" and out["model_version"] == "1"
    assert out["outputs"][0]["data"] == want
    columns = [
        {"name": f, "shape": [150], "datatype": "FP64", "data": X[:, i].tolist()}
        for i, f in enumerate(FEATURES)
    ]
    status, out = post(
        server.base + "/v2/models/iris/versions/1/infer",
        {"inputs": columns, "parameters": {"probabilities": True}},
    )
    assert status == 200 and out["outputs"][0]["data"] == want
    np.testing.assert_allclose(
        np.asarray(out["outputs"][1]["data"]).reshape(150, 3), artifacts.model.predict_proba(X)
    )


def test_v1_predictions_equal_the_models_own(server: ServerProcess, artifacts: Artifacts) -> None:
    X = artifacts.X[::7]
    status, out = post(server.base + "/v1/models/iris:predict", {"instances": X.tolist()})
    assert status == 200 and out == {"predictions": artifacts.model.predict(X).tolist()}
    objects = [dict(zip(FEATURES, row, strict=True)) for row in X.tolist()]
    status, out = post(server.base + "/v1/models/iris:predict", {"instances": objects})
    assert status == 200 and out["predictions"] == artifacts.model.predict(X).tolist()


def test_bad_requests_are_4xx_json(server: ServerProcess) -> None:
    status, out = post(
        server.base + "/v2/models/iris/infer",
        {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    )
    assert status == 400 and "missing inputs" in out["error"]
    status, out = post(server.base + "/v1/models/iris:predict", {"instances": [[1.0] * 4] * 3000})
    assert status == 413 and "limit" in out["error"]
    status, out = post(server.base + "/v2/models/nope/infer", {})
    assert status == 404 and "nope" in out["error"]
    assert get(server.base + "/v2/health/ready")[0] == 200  # and it still serves


def test_metadata(server: ServerProcess) -> None:
    status, body = get(server.base + "/v2/models/iris")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "iris" and meta["versions"] == ["1"]
    assert [i["name"] for i in meta["inputs"]] == FEATURES


def test_metrics_have_the_request_counter_with_model_and_version(
    server: ServerProcess, artifacts: Artifacts
) -> None:
    post(server.base + "/v1/models/iris:predict", {"instances": artifacts.X[:3].tolist()})
    status, body = get(server.base + "/metrics")
    text = body.decode()
    assert status == 200
    assert 'kubeml_requests_total{code="200",model="iris",protocol="v1",version="1"}' in text
    assert 'kubeml_model_ready{model="iris",version="1"} 1.0' in text
    assert f'kubeml_model_info{{model="iris",sha256="{artifacts.sha256}",version="1"}} 1.0' in text
    assert 'kubeml_feature_drift_psi{feature="petal_length",model="iris",version="1"}' in text
    assert "_created" not in text


def test_tampered_artifact_keeps_the_server_unready(
    s3_env: dict[str, str], artifacts: Artifacts, tmp_path: Path
) -> None:
    srv = start_server(s3_env, artifacts, tmp_path, artifacts.tampered_uri)
    try:

        def refused() -> dict[str, Any] | None:
            status, body = get(srv.base + "/v2/health/ready")
            assert status == 503, body
            doc = json.loads(body)
            return doc if doc["reason"] != "Loading" else None

        doc = wait_for(refused, "the mismatch verdict")
        assert doc["ready"] is False and doc["reason"] == "ArtifactMismatch"
        assert artifacts.sha256 in doc["message"]
        status, body = get(srv.base + "/v2/models/iris/ready")
        assert status == 503 and json.loads(body)["reason"] == "ArtifactMismatch"
        assert get(srv.base + "/v2/health/live")[0] == 200
        status, out = post(srv.base + "/v2/models/iris/infer", {"inputs": []})
        assert status == 503 and "ArtifactMismatch" in out["error"]
        metrics = get(srv.base + "/metrics")[1].decode()
        assert (
            'kubeml_model_status{model="iris",reason="ArtifactMismatch",version="1"} 1.0' in metrics
        )
        assert 'kubeml_model_ready{model="iris",version="1"} 0.0' in metrics
        assert srv.termination_log.read_text().startswith("ArtifactMismatch:")
        log = srv.log.read_text()
        assert "ArtifactMismatch" in log and f"expected {artifacts.sha256}" in log
    finally:
        assert srv.stop() == 0

"""The model server as a real process against the local cluster's real S3, serving a
real skops artifact: predictions equal the model's own, a tampered artifact keeps it
unready with the reason until the bytes are restored, metrics carry model and version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeml.storage import ArtifactStore, S3Settings, parse_uri
from tests.support.server import (
    FEATURES,
    Artifacts,
    ServerProcess,
    get,
    post,
    start_server,
    stored_artifacts,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts(s3_env: dict[str, str]) -> Iterator[Artifacts]:
    with stored_artifacts(s3_env) as a:
        yield a


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


def test_tampered_artifact_keeps_the_server_unready_until_restored(
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

        # The right bytes back under the same key: the same process verifies again
        # (with back-off) and serves, no restart needed.
        store = ArtifactStore(S3Settings.from_env(s3_env), env=s3_env)
        bucket, key = parse_uri(artifacts.tampered_uri)
        assert bucket == store.bucket
        store.put_bytes(key, store.get_bytes(parse_uri(artifacts.uri)[1]))
        wait_for(
            lambda: True if get(srv.base + "/v2/health/ready")[0] == 200 else None,
            "readiness after the artifact was restored",
            timeout=60,
        )
        status, out = post(
            srv.base + "/v1/models/iris:predict", {"instances": artifacts.X[:5].tolist()}
        )
        assert (
            status == 200
            and out["predictions"] == artifacts.model.predict(artifacts.X[:5]).tolist()
        )
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0

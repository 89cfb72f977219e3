"""The server's behaviour without HTTP: routes, predictions equal to the model's own,
batched results routed back to the right requests, 4xx for bad input, 500 only for
a failing predict (and the server goes on), readiness with its reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from kubeml.serving.app import ModelServer, Response
from kubeml.serving.config import ServerConfig
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from kubeml.serving.signature import CompiledSignature
from kubeml.serving.worker import PredictWorker
from tests.support.server import FEATURES
from tests.support.server import SIGNATURE as SIG


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def forest(iris: tuple[np.ndarray, np.ndarray]) -> RandomForestClassifier:
    X, y = iris
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)


def config(sig: dict[str, Any] = SIG, **kw: Any) -> ServerConfig:
    base = {
        "model": "iris",
        "version": 3,
        "modelversion": "iris-v3",
        "artifact_uri": "s3://b/k",
        "artifact_sha256": "0" * 64,
        "signature": CompiledSignature.from_json(sig),
        "max_request_rows": 1000,
    }
    return ServerConfig(**{**base, **kw})


class Harness:
    """A ModelServer on its own event loop and predict thread, driven synchronously."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.pool = PredictWorker()
        server.attach(self.loop, self.pool)

    def call(self, method: str, path: str, doc: Any = None, raw: bytes | None = None) -> Response:
        return self.many([(method, path, doc, raw)])[0]

    def many(self, calls: list[tuple[str, str, Any, bytes | None]]) -> list[Response]:
        async def go() -> list[Response]:
            futures = []
            for method, path, doc, raw in calls:
                fut: asyncio.Future[Response] = self.loop.create_future()
                body = (
                    raw if raw is not None else (b"" if doc is None else json.dumps(doc).encode())
                )
                self.server.handle(method, path, body, fut.set_result)
                futures.append(fut)
            return list(await asyncio.wait_for(asyncio.gather(*futures), 30))

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.pool.close()
        self.loop.close()


def loaded_server(model: Any, sig: dict[str, Any] = SIG, **kw: Any) -> Harness:
    cfg = config(sig, **kw)
    server = ModelServer(cfg)
    h = Harness(server)
    server.set_loaded(Loaded(Predictor(model, cfg.signature), None))
    return h


@pytest.fixture
def served(forest: RandomForestClassifier) -> Iterator[Harness]:
    h = loaded_server(forest)
    yield h
    h.close()


def doc(resp: Response) -> Any:
    return orjson.loads(resp.body)


def v2(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            }
        ],
        **extra,
    }


# -- health and metadata -------------------------------------------------------------------


def test_live_and_ready(served: Harness) -> None:
    assert served.call("GET", "/v2/health/live").status == 200
    r = served.call("GET", "/v2/health/ready")
    assert r.status == 200 and doc(r) == {"ready": True, "reason": "Loaded"}
    m = served.call("GET", "/v2/models/iris/ready")
    assert m.status == 200 and doc(m)["ready"] is True
    assert served.call("GET", "/v2/models/iris/versions/3/ready").status == 200


def test_not_ready_says_why_everywhere() -> None:
    h = Harness(ModelServer(config()))
    try:
        assert h.call("GET", "/v2/health/live").status == 200
        loading = h.call("GET", "/v2/health/ready")
        assert loading.status == 503 and doc(loading)["reason"] == "Loading"
        h.server.set_unready("ArtifactMismatch", "sha256 mismatch: expected a, got b")
        for path in ("/v2/health/ready", "/v2/models/iris/ready", "/v1/models/iris"):
            r = h.call("GET", path)
            assert r.status == 503
            assert doc(r)["reason"] == "ArtifactMismatch" and "expected a" in doc(r)["message"]
        infer = h.call("POST", "/v2/models/iris/infer", v2(np.ones((1, 4))))
        assert infer.status == 503 and "ArtifactMismatch" in doc(infer)["error"]
        metrics = h.call("GET", "/metrics").body.decode()
        assert 'kubeml_model_ready{model="iris",version="3"} 0.0' in metrics
        assert (
            'kubeml_model_status{model="iris",reason="ArtifactMismatch",version="3"} 1.0' in metrics
        )
        assert 'reason="Loading"' not in metrics
    finally:
        h.close()


def test_model_metadata(served: Harness) -> None:
    for path in ("/v2/models/iris", "/v2/models/iris/versions/3"):
        m = doc(served.call("GET", path))
        assert m["name"] == "iris" and m["versions"] == ["3"] and m["platform"] == "sklearn"
        assert m["inputs"] == [{"name": f, "datatype": "FP64", "shape": [-1]} for f in FEATURES]
        assert m["outputs"] == [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ]
        assert m["parameters"]["classes"] == ["0", "1", "2"]
    assert doc(served.call("GET", "/v2"))["name"] == "kubeml"


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/v2/models/other", 404, "model 'other' not found"),
        ("POST", "/v2/models/other/infer", 404, "model 'other' not found"),
        ("POST", "/v2/models/iris/versions/9/infer", 404, "version '9'"),
        ("GET", "/v2/models/iris/versions/9", 404, "version '9'"),
        ("POST", "/v1/models/other:predict", 404, "model 'other'"),
        ("GET", "/v2/models/iris/infer", 405, "method GET not allowed"),
        ("POST", "/v2/health/ready", 405, "not allowed"),
        ("GET", "/nothing", 404, "no route"),
    ],
)
def test_wrong_routes(served: Harness, method: str, path: str, status: int, words: str) -> None:
    r = served.call(method, path, {})
    assert r.status == status and words in doc(r)["error"]


# -- predictions ------------------------------------------------------------------------------


def test_v2_and_v1_equal_the_models_own_predictions(
    served: Harness, forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    X = iris[0]
    want = forest.predict(X).tolist()
    out = doc(served.call("POST", "/v2/models/iris/infer", v2(X, id="req-1")))
    assert out["model_name"] == "iris" and out["model_version"] == "3" and out["id"] == "req-1"
    assert out["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [150], "data": want}
    ]
    assert (
        doc(served.call("POST", "/v2/models/iris/versions/3/infer", v2(X)))["outputs"][0]["data"]
        == want
    )
    assert doc(served.call("POST", "/v1/models/iris:predict", {"instances": X.tolist()})) == {
        "predictions": want
    }


def test_probabilities_on_request(
    served: Harness, forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    X = iris[0][:7]
    proba = forest.predict_proba(X)
    out = doc(
        served.call("POST", "/v2/models/iris/infer", v2(X, parameters={"probabilities": True}))
    )
    names = [o["name"] for o in out["outputs"]]
    assert names == ["predict", "predict_proba"]
    p = out["outputs"][1]
    assert p["shape"] == [7, 3] and p["parameters"]["classes"] == ["0", "1", "2"]
    np.testing.assert_allclose(np.asarray(p["data"]).reshape(7, 3), proba)
    only = doc(
        served.call("POST", "/v2/models/iris/infer", v2(X, outputs=[{"name": "predict_proba"}]))
    )
    assert [o["name"] for o in only["outputs"]] == ["predict_proba"]
    v1 = doc(
        served.call(
            "POST",
            "/v1/models/iris:predict",
            {"instances": X.tolist(), "parameters": {"probabilities": True}},
        )
    )
    np.testing.assert_allclose(v1["probabilities"], proba)
    assert v1["classes"] == ["0", "1", "2"]


def test_concurrent_requests_are_batched_and_routed_back_in_order(
    forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    h = loaded_server(forest, max_batch_size=16)
    try:
        X = iris[0]
        rng = np.random.default_rng(0)
        calls: list[tuple[str, str, Any, bytes | None]] = []
        expected = []
        for i in range(60):
            idx = rng.choice(len(X), size=int(rng.integers(1, 6)))
            rows = X[idx]
            if i % 3 == 0:
                calls.append(
                    ("POST", "/v1/models/iris:predict", {"instances": rows.tolist()}, None)
                )
            else:
                calls.append(("POST", "/v2/models/iris/infer", v2(rows, id=f"r{i}"), None))
            expected.append((i, forest.predict(rows).tolist()))
        responses = h.many(calls)
        assert h.server.batcher is not None and h.server.batcher.batches < 60  # really batched
        for (i, want), resp in zip(expected, responses, strict=True):
            body = doc(resp)
            if i % 3 == 0:
                assert body["predictions"] == want
            else:
                assert body["id"] == f"r{i}" and body["outputs"][0]["data"] == want
        assert h.server.inflight == 0
    finally:
        h.close()


def test_a_failing_predict_is_a_500_and_the_server_goes_on(
    forest: RandomForestClassifier,
    iris: tuple[np.ndarray, np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = loaded_server(forest)
    try:
        loaded = h.server.loaded
        assert loaded is not None
        real = loaded.predictor.predict
        calls = {"n": 0}

        def flaky(rows: Any, want: bool) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ValueError("model exploded")
            return real(rows, want)

        loaded.predictor.predict = flaky  # type: ignore[method-assign]
        r = h.call("POST", "/v2/models/iris/infer", v2(iris[0][:2]))
        assert r.status == 500 and "model exploded" in doc(r)["error"]
        assert "predict failed" in caplog.text
        ok = h.call("POST", "/v2/models/iris/infer", v2(iris[0][:2]))
        assert ok.status == 200
    finally:
        h.close()


def test_one_poisoned_request_does_not_fail_its_batch_neighbours(
    forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    h = loaded_server(forest)
    try:
        loaded = h.server.loaded
        assert loaded is not None
        real = loaded.predictor.predict

        def picky(rows: Any, want: bool) -> Any:
            if np.any(rows == 99.0):
                raise ValueError("cannot predict 99")
            return real(rows, want)

        loaded.predictor.predict = picky  # type: ignore[method-assign]
        good, bad = iris[0][:3], np.full((1, 4), 99.0)
        out = h.many(
            [
                ("POST", "/v2/models/iris/infer", v2(good), None),
                ("POST", "/v2/models/iris/infer", v2(bad), None),
                ("POST", "/v2/models/iris/infer", v2(good), None),
            ]
        )
        assert [r.status for r in out] == [200, 500, 200]
    finally:
        h.close()


def test_metrics_after_traffic(served: Harness, iris: tuple[np.ndarray, np.ndarray]) -> None:
    served.call("POST", "/v2/models/iris/infer", v2(iris[0][:5]))
    served.call("POST", "/v1/models/iris:predict", {"instances": [[1, 2]]})
    text = served.call("GET", "/metrics").body.decode()
    assert 'kubeml_requests_total{code="200",model="iris",protocol="v2",version="3"} 1.0' in text
    assert 'kubeml_requests_total{code="400",model="iris",protocol="v1",version="3"} 1.0' in text
    assert 'kubeml_predicted_rows_total{model="iris",version="3"} 5.0' in text
    assert 'kubeml_model_info{model="iris",sha256="' + "0" * 64 + '",version="3"} 1.0' in text
    assert 'kubeml_predictions_total{class="0",model="iris",version="3"} 5.0' in text
    assert 'kubeml_predictions_total{class="2",model="iris",version="3"} 0.0' in text


# -- other model shapes -------------------------------------------------------------------------


def test_trainer_style_pipeline_takes_the_matrix_fast_path(
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    import pandas as pd

    X, y = iris
    # columns in another order than the signature: the fast path must reorder them
    frame = pd.DataFrame(X, columns=FEATURES)
    ct = ColumnTransformer(
        [("numeric", "passthrough", FEATURES[::-1])], remainder="drop", sparse_threshold=0.0
    )
    pipe = Pipeline(
        [("features", ct), ("estimator", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    pipe.fit(frame, y)
    h = loaded_server(pipe)
    try:
        loaded = h.server.loaded
        assert loaded is not None and loaded.predictor.mode == "matrix+select"
        out = doc(h.call("POST", "/v2/models/iris/infer", v2(X)))
        assert out["outputs"][0]["data"] == pipe.predict(frame).tolist()
    finally:
        h.close()


def test_pipeline_with_categorical_inputs_uses_a_dataframe() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200),
            "color": rng.choice(["red", "green", "blue"], 200),
            "member": rng.choice([True, False], 200),
        }
    )
    y = np.where(frame["color"] == "red", "yes", "no")
    ct = ColumnTransformer(
        [
            ("numeric", "passthrough", ["age"]),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ["color", "member"],
            ),
        ],
        sparse_threshold=0.0,
    )
    pipe = Pipeline(
        [("features", ct), ("estimator", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    pipe.fit(frame, y)
    sig = {
        "task": "classification",
        "inputs": [
            {"name": "age", "dtype": "integer"},
            {"name": "color", "dtype": "category"},
            {"name": "member", "dtype": "boolean"},
        ],
        "outputs": [{"name": "predict", "dtype": "string"}],
        "classes": ["no", "yes"],
    }
    h = loaded_server(pipe, sig)
    try:
        loaded = h.server.loaded
        assert loaded is not None and loaded.predictor.mode == "dataframe"
        rows = frame.head(6)
        instances = [
            {"age": int(r.age), "color": r.color, "member": bool(r.member)}
            for r in rows.itertuples()
        ]
        out = doc(h.call("POST", "/v1/models/iris:predict", {"instances": instances}))
        assert out["predictions"] == pipe.predict(rows).tolist()
        meta = doc(h.call("GET", "/v2/models/iris"))
        assert [i["datatype"] for i in meta["inputs"]] == ["INT64", "BYTES", "BOOL"]
        assert meta["outputs"][0]["datatype"] == "BYTES"
    finally:
        h.close()


def test_regressor(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    reg = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    sig = {
        "task": "regression",
        "inputs": SIG["inputs"],
        "outputs": [{"name": "predict", "dtype": "number"}],
    }
    h = loaded_server(reg, sig)
    try:
        out = doc(h.call("POST", "/v2/models/iris/infer", v2(X[:4])))
        assert out["outputs"][0]["datatype"] == "FP64"
        np.testing.assert_allclose(out["outputs"][0]["data"], reg.predict(X[:4]))
        no = h.call("POST", "/v2/models/iris/infer", v2(X[:4], parameters={"probabilities": True}))
        assert no.status == 400 and "probabilities" in doc(no)["error"]
    finally:
        h.close()


# -- property: whatever the body, JSON back and never a 5xx ----------------------------------


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(
        ["/v2/models/iris/infer", "/v2/models/iris/versions/3/infer", "/v1/models/iris:predict"]
    ),
    st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-5, 5)
        | st.text(max_size=4),
        lambda c: (
            st.lists(c, max_size=5)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "inputs",
                        "instances",
                        "name",
                        "shape",
                        "datatype",
                        "data",
                        "parameters",
                        "outputs",
                        *FEATURES,
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=30,
    ),
)
def test_no_body_gets_a_5xx(served: Harness, path: str, body: Any) -> None:
    r = served.call("POST", path, raw=json.dumps(body).encode())
    assert r.status < 500
    parsed = doc(r)
    assert ("error" in parsed) == (r.status >= 400)


def test_shutting_down_is_unready_but_still_serves(
    served: Harness, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    served.server.set_shutting_down()
    assert served.call("GET", "/v2/health/ready").status == 503
    loaded = served.server.loaded
    assert loaded is not None
    served.server.set_loaded(loaded)  # a load finishing late must not make it ready again
    assert doc(served.call("GET", "/v2/health/ready"))["reason"] == "ShuttingDown"
    assert served.call("POST", "/v2/models/iris/infer", v2(iris[0][:2])).status == 200


def test_predict_leaves_the_warning_filters_as_they_were(
    forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    import warnings

    from kubeml.serving.signature import CompiledSignature as Sig

    before = list(warnings.filters)
    p = Predictor(forest, Sig.from_json(SIG))
    pred, proba = p.predict(iris[0], True)
    assert list(warnings.filters) == before
    np.testing.assert_array_equal(pred, forest.predict(iris[0]))
    np.testing.assert_array_equal(proba, forest.predict_proba(iris[0]))

"""Shadow traffic: the comparison as pure functions, and two real servers on loopback
sockets (stable mirroring to a shadow trained differently): clients get only stable's
answers, the shadow gets exactly its share, and agreement is counted row by row."""

from __future__ import annotations

import json
import socket
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from kubeml.serving import binary
from kubeml.serving.config import ServerConfig
from kubeml.serving.forward import Answer, ForwardError, Split
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from kubeml.serving.shadow import Shadow, UnusableAnswer, agreed_rows, predictions
from kubeml_local.readiness import poll
from tests.unit.test_serving_forward import Server, _closed_port, _send_all, _series, _sig
from tests.unit.test_serving_http import infer_doc, post, read_response


def _v2(outputs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"model_name": "m", "model_version": "2", "outputs": outputs})


def test_predictions_are_read_from_v2_json_v2_binary_and_v1_answers() -> None:
    doc = _v2([{"name": "predict", "datatype": "INT64", "shape": [3], "data": [0, 2, 1]}])
    assert predictions(Answer(200, doc, "application/json", ()), "v2").tolist() == [0, 2, 1]
    # Binary tensors after the JSON header, predict_proba first: the offsets add up.
    proba = np.array([0.5, 0.5, 1.0, 0.0])
    pred = np.array([1, 0], dtype=np.int64)
    head = _v2(
        [
            {"name": "predict_proba", "datatype": "FP64", "shape": [2, 2],
             "parameters": {"binary_data_size": 32}},
            {"name": "predict", "datatype": "INT64", "shape": [2],
             "parameters": {"binary_data_size": 16}},
        ]
    )  # fmt: skip
    body = head + binary.encode("FP64", proba) + binary.encode("INT64", pred)
    answer = Answer(
        200,
        body,
        "application/octet-stream",
        (("inference-header-content-length", str(len(head))),),
    )
    assert predictions(answer, "v2").tolist() == [1, 0]
    v1 = orjson.dumps({"predictions": ["setosa", "virginica"]})
    assert predictions(Answer(200, v1, "application/json", ()), "v1").tolist() == [
        "setosa",
        "virginica",
    ]


def test_an_answer_without_predict_has_nothing_to_compare_and_garbage_is_unusable() -> None:
    only_proba = _v2(
        [{"name": "predict_proba", "datatype": "FP64", "shape": [1, 2], "data": [1, 0]}]
    )
    assert predictions(Answer(200, only_proba, "application/json", ()), "v2") is None
    for body in (b"not json", b"[]", orjson.dumps({"outputs": 3}), orjson.dumps({"outputs": [1]})):
        with pytest.raises(UnusableAnswer):
            predictions(Answer(200, body, "application/json", ()), "v2")


def test_agreement_of_labels_and_of_regressors_within_the_tolerance() -> None:
    assert agreed_rows(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1]), "classification", 0) == 3
    # Labels travel as JSON: strings on one side, numpy strings on the other.
    assert agreed_rows(np.array(["a", "b"]), np.array(["a", "c"]), "classification", 0) == 1
    # A row count that differs agrees on nothing.
    assert agreed_rows(np.array([0, 1]), np.array([0]), "classification", 0) == 0
    stable = np.array([100.0, 100.0, 0.0, 0.0])
    shadow = np.array([100.9, 102.0, 0.009, 0.02])
    # 1 % of |stable| for large values, 0.01 absolute near zero.
    assert agreed_rows(stable, shadow, "regression", 0.01) == 2


class _Forwarder:
    def __init__(self, saturated: bool) -> None:
        self.busy = saturated
        self.sent: list[Any] = []

    def saturated(self) -> bool:
        return self.busy

    def forward(self, path: str, body: bytes, headers: Any, done: Any) -> None:
        self.sent.append(done)


class _Metrics:
    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.rows = [0, 0]

    def shadow(self, target: str, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)

    def shadow_rows(self, target: str, compared: int, agreed: int) -> None:
        self.rows[0] += compared
        self.rows[1] += agreed


class _Pred:
    def __init__(self, pred: list[int]) -> None:
        self.pred = np.array(pred)


def test_a_mirror_at_its_bound_is_skipped_and_counted() -> None:
    metrics = _Metrics()
    shadow = Shadow(_Forwarder(True), 100, "2", "classification", 0.01, metrics)  # type: ignore[arg-type]
    assert shadow.mirror("/p", b"{}", [], "v2") is None
    assert metrics.outcomes == ["skipped"]


def test_comparison_waits_for_both_sides_in_either_order() -> None:
    metrics = _Metrics()
    fwd = _Forwarder(False)
    shadow = Shadow(fwd, 100, "2", "classification", 0.01, metrics)  # type: ignore[arg-type]
    answer = Answer(
        200,
        _v2([{"name": "predict", "datatype": "INT64", "shape": [2], "data": [1, 2]}]),
        "application/json",
        (),
    )
    first = shadow.mirror("/p", b"{}", [], "v2")
    assert first is not None
    first(_Pred([1, 1]))
    assert metrics.rows == [0, 0]
    fwd.sent[0](answer)
    assert metrics.rows == [2, 1] and metrics.outcomes == ["answered"]
    second = shadow.mirror("/p", b"{}", [], "v2")
    assert second is not None
    fwd.sent[1](answer)
    second(_Pred([1, 2]))
    assert metrics.rows == [4, 3]
    # A failed shadow, or a stable predict that raised, compares nothing.
    third = shadow.mirror("/p", b"{}", [], "v2")
    assert third is not None
    fwd.sent[2](ForwardError("refused"))
    third(_Pred([1, 2]))
    fourth = shadow.mirror("/p", b"{}", [], "v2")
    assert fourth is not None
    fwd.sent[3](Answer(500, b"{}", "application/json", ()))
    fourth(RuntimeError("predict failed"))
    assert metrics.rows == [4, 3]
    assert metrics.outcomes == ["answered", "answered", "unreachable", "error"]


def _shadow_server() -> Server:
    """Version 2: a depth-1 tree, which cannot tell two of iris' three classes apart,
    so it disagrees with stable on about a third of the rows."""
    srv = Server(2, seed=0)
    X, y = load_iris(return_X_y=True)
    srv.model = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    sig = _sig(["a", "b", "c", "d"])
    # Before any request: nothing on the loop reads the model yet.
    srv.server.set_loaded(Loaded(Predictor(srv.model, sig), None))
    return srv


def _wait_for(read: Any, want: float) -> float:
    """``read()`` once it equals ``want`` (mirrors finish after their clients' answers)."""
    poll(lambda: read() == want or None, timeout=10, what=f"{want:g}", interval=0.02)
    return float(read())


def test_clients_get_stable_answers_and_the_shadow_exactly_its_share() -> None:
    shadow = _shadow_server()
    stable = Server(
        1,
        seed=0,
        shadow_url=f"http://127.0.0.1:{shadow.port}",
        shadow_percent=30,
        shadow_version="2",
    )
    try:
        X, _ = load_iris(return_X_y=True)
        answers = _send_all(stable.port, 300)
        for i, (status, headers, doc) in enumerate(answers):
            assert status == 200 and headers["kubeml-model-version"] == "1"
            assert doc["model_version"] == "1"
            assert (
                doc["outputs"][0]["data"] == stable.model.predict(X[i % 150 : i % 150 + 1]).tolist()
            )
        # Which requests were mirrored is the split's own sequence: by hand, agreement
        # is the share of those rows on which both models say the same.
        split = Split(30)
        mirrored = [i for i in range(300) if split.take()]
        same = sum(
            int(
                stable.model.predict(X[i % 150 : i % 150 + 1])[0]
                == shadow.model.predict(X[i % 150 : i % 150 + 1])[0]
            )
            for i in mirrored
        )
        assert len(mirrored) == 90 and 0 < same < 90

        def count(name: str, **labels: str) -> float:
            return _series(stable.metrics(), name, version="1", target_version="2", **labels)

        assert _wait_for(lambda: count("kubeml_shadow_rows_compared_total"), 90) == 90
        assert count("kubeml_shadow_requests_total", outcome="answered") == 90
        assert count("kubeml_shadow_requests_total") == 90
        assert count("kubeml_shadow_rows_agreed_total") == same
        assert _series(shadow.metrics(), "kubeml_requests_total", version="2") == 90
        assert _series(stable.metrics(), "kubeml_requests_total", version="1") == 300
    finally:
        stable.stop()
        shadow.stop()


def test_binary_answers_and_v1_are_compared_too() -> None:
    shadow = _shadow_server()
    stable = Server(
        1,
        seed=0,
        shadow_url=f"http://127.0.0.1:{shadow.port}",
        shadow_percent=100,
        shadow_version="2",
    )
    try:
        X, _ = load_iris(return_X_y=True)
        rows = X[40:110]
        want = int(np.count_nonzero(stable.model.predict(rows) == shadow.model.predict(rows)))
        doc = infer_doc(rows, "bin")
        doc["outputs"] = [{"name": "predict", "parameters": {"binary_data": True}}]
        with socket.create_connection(("127.0.0.1", stable.port), timeout=10) as s:
            buf = bytearray()
            s.sendall(post("/v2/models/iris/infer", doc))
            status, headers, _ = read_response(s, buf)
            assert status == 200 and "inference-header-content-length" in headers
            s.sendall(post("/v1/models/iris:predict", {"instances": rows.tolist()}))
            status, headers, body = read_response(s, buf)
            assert status == 200 and headers["kubeml-model-version"] == "1"
            assert json.loads(body)["predictions"] == stable.model.predict(rows).tolist()

        def compared() -> float:
            return _series(stable.metrics(), "kubeml_shadow_rows_compared_total")

        assert _wait_for(compared, 140) == 140
        assert _series(stable.metrics(), "kubeml_shadow_rows_agreed_total") == 2 * want
    finally:
        stable.stop()
        shadow.stop()


def test_an_unreachable_shadow_never_fails_a_client() -> None:
    stable = Server(
        1,
        seed=0,
        shadow_url=f"http://127.0.0.1:{_closed_port()}",
        shadow_percent=50,
        shadow_version="2",
    )
    try:
        answers = _send_all(stable.port, 40)
        assert {(s, h["kubeml-model-version"]) for s, h, _ in answers} == {(200, "1")}

        def unreachable() -> float:
            return _series(stable.metrics(), "kubeml_shadow_requests_total", outcome="unreachable")

        assert _wait_for(unreachable, 20) == 20
        assert _series(stable.metrics(), "kubeml_shadow_rows_compared_total") == 0
    finally:
        stable.stop()


def test_shadow_settings_come_from_the_environment() -> None:
    env = {
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "1",
        "KUBEML_ARTIFACT_URI": "s3://b/k",
        "KUBEML_ARTIFACT_SHA256": "0" * 64,
        "KUBEML_SIGNATURE": json.dumps(
            {"task": "regression", "inputs": [{"name": "a", "dtype": "number"}],
             "outputs": [{"name": "predict", "dtype": "number"}]}
        ),
        "KUBEML_SHADOW_URL": "http://10.0.0.9:80",
        "KUBEML_SHADOW_PERCENT": "25",
        "KUBEML_SHADOW_VERSION": "3",
        "KUBEML_SHADOW_TOLERANCE": "0.05",
    }  # fmt: skip
    cfg = ServerConfig.from_env(env)
    assert (cfg.shadow_url, cfg.shadow_percent, cfg.shadow_version, cfg.shadow_tolerance) == (
        "http://10.0.0.9:80",
        25,
        "3",
        0.05,
    )

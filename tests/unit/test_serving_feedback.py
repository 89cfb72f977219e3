"""Ground-truth feedback without HTTP or S3: validation against the signature (4xx,
nothing applied), scoring of remembered ids, unknown ids reported and still stored,
the live window's accuracy and regression errors, and the bound on remembered rows."""

from __future__ import annotations

import gc
import io
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml.serving.app import ModelServer
from kubeml.serving.errors import RequestError
from kubeml.serving.feedback import Feedback, FeedbackConfig, LiveQuality, Recent, parse
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from tests.unit.test_serving_app import Harness, config, doc, v2
from tests.unit.test_serving_capture import ListSink

FEEDBACK = "/v2/models/iris/feedback"
INFER = "/v2/models/iris/infer"
CLASSES = ("0", "1", "2")


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def forest(iris: tuple[np.ndarray, np.ndarray]) -> RandomForestClassifier:
    X, y = iris
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


def with_feedback(model: Any, sink: ListSink, window: int = 1000) -> tuple[Harness, Feedback]:
    cfg = config(feedback=FeedbackConfig("s3://bucket/namespaces/a/feedback/iris/", window))
    server = ModelServer(cfg)
    assert cfg.feedback is not None
    fb = Feedback(
        cfg.feedback,
        task="classification",
        classes=CLASSES,
        model="iris",
        version=3,
        writer_id="pod",
        sink=sink,
        stats=server.metrics.feedback_writer,
        max_values=1000,
    )
    server.feedback = fb
    server.metrics.live.live = fb.live
    h = Harness(server)
    server.set_loaded(Loaded(Predictor(model, cfg.signature), None))
    return h, fb


def gauge(h: Harness, name: str) -> float | None:
    return h.server.metrics.registry.get_sample_value(name, {"model": "iris", "version": "3"})


def test_live_accuracy_equals_a_hand_computation(
    forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = iris
    sink = ListSink()
    h, fb = with_feedback(forest, sink)
    try:
        assert gauge(h, "kubeml_live_accuracy") is None  # nothing labelled yet
        rows = X[::10]
        ids, preds = [], []
        for r in rows:
            answer = doc(h.call("POST", INFER, v2(r.reshape(1, 4))))
            ids.append(answer["id"])
            preds.append(answer["outputs"][0]["data"][0])
        # Truth that disagrees with the model on every third request.
        truth = [(p + 1) % 3 if i % 3 == 0 else p for i, p in enumerate(preds)]
        batch = [{"id": i, "truth": t} for i, t in zip(ids, truth, strict=True)]
        resp = h.call("POST", FEEDBACK, {"feedback": [*batch, {"id": "nobody", "truth": "1"}]})
        assert resp.status == 200, resp.body
        assert doc(resp)["scored"] == len(ids) and doc(resp)["unknown"] == ["nobody"]
        expected = sum(p == t for p, t in zip(preds, truth, strict=True)) / len(preds)
        assert gauge(h, "kubeml_live_accuracy") == pytest.approx(expected)
        assert gauge(h, "kubeml_live_labelled_rows") == len(preds)
        again = doc(h.call("POST", FEEDBACK, {"id": ids[0], "truth": truth[0]}))
        assert again["scored"] == 0 and again["unknown"] == [ids[0]]  # labelled once
        assert fb.close(10)
    finally:
        h.close()
    stored = [
        r
        for key in sorted(sink.objects)
        for r in pq.read_table(io.BytesIO(sink.objects[key])).to_pylist()
    ]
    assert len(stored) == len(ids) + 2
    assert {r["id"]: r["scored"] for r in stored}["nobody"] is False
    by_id = {r["id"]: r["truth"] for r in stored}
    assert [by_id[i] for i in ids] == [[str(t)] for t in truth]
    assert all(
        k.startswith("namespaces/a/feedback/iris/model=iris/version=3/hour=") for k in sink.objects
    )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "malformed JSON"),
        (b"[]", 400, "JSON object"),
        (b'{"id": "a"}', 400, "no truth"),
        (b'{"id": "a", "truth": "7"}', 400, "not one of the model's classes"),
        (b'{"id": "a", "truth": 1.5}', 400, "string or an integer"),
        (b'{"id": "a", "truth": []}', 400, "empty"),
        (b'{"id": "", "truth": "1"}', 400, "request id"),
        (b'{"feedback": []}', 400, "non-empty list"),
        (
            b'{"feedback": [{"id": "a", "truth": 1}, {"id": "a", "truth": 1}]}',
            400,
            "more than once",
        ),
        (b'{"id": "a", "truth": "1", "extra": 1}', 400, "id and truth only"),
    ],
)
def test_bad_feedback_is_a_4xx_naming_the_problem(
    forest: RandomForestClassifier, body: bytes, status: int, words: str
) -> None:
    h, fb = with_feedback(forest, ListSink())
    try:
        resp = h.call("POST", FEEDBACK, raw=body)
        assert resp.status == status and words in doc(resp)["error"], resp.body
    finally:
        fb.close(5)
        h.close()


def test_a_wrong_row_count_changes_nothing(forest: RandomForestClassifier) -> None:
    h, fb = with_feedback(forest, ListSink())
    try:
        two = doc(h.call("POST", INFER, v2(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))))
        one = doc(h.call("POST", INFER, v2(np.array([[5.1, 3.5, 1.4, 0.2]]))))
        body = {"feedback": [{"id": one["id"], "truth": 0}, {"id": two["id"], "truth": [0]}]}
        resp = h.call("POST", FEEDBACK, body)
        assert resp.status == 400 and "had 2 rows, truth has 1" in doc(resp)["error"]
        assert gauge(h, "kubeml_live_labelled_rows") is None
        assert doc(h.call("POST", FEEDBACK, {"id": one["id"], "truth": 0}))["scored"] == 1
    finally:
        fb.close(5)
        h.close()


def test_feedback_is_a_404_when_capture_is_off(forest: RandomForestClassifier) -> None:
    cfg = config()
    server = ModelServer(cfg)
    h = Harness(server)
    server.set_loaded(Loaded(Predictor(forest, cfg.signature), None))
    try:
        resp = h.call("POST", FEEDBACK, {"id": "a", "truth": 1})
        assert resp.status == 404 and "spec.capture" in doc(resp)["error"]
    finally:
        h.close()


def test_too_many_truth_values_is_a_413() -> None:
    with pytest.raises(RequestError) as err:
        parse(b'{"id": "a", "truth": [1, 1, 1]}', "classification", CLASSES, max_values=2)
    assert err.value.status == 413


def test_regression_targets_and_errors() -> None:
    entries = parse(b'{"id": "a", "truth": [1, 2.5]}', "regression", None, 10)
    assert entries[0].truth == [1.0, 2.5]
    with pytest.raises(RequestError, match="finite number"):
        parse(b'{"id": "a", "truth": "x"}', "regression", None, 10)
    live = LiveQuality("regression", window=3)
    live.add(np.array([1.0, 2.0]), [2.0, 2.0])  # errors -1, 0
    live.add(np.array([5.0, 0.0]), [1.0, 0.0])  # errors 4, 0 (the first leaves the window)
    snap = live.snapshot()
    assert snap["rows"] == 3
    assert snap["mae"] == pytest.approx(4 / 3)
    assert snap["rmse"] == pytest.approx((16 / 3) ** 0.5)


def test_remembered_predictions_are_bounded_by_rows() -> None:
    recent = Recent(max_rows=5)
    for i in range(4):
        recent.remember([f"r{i}"], [2], np.zeros(2))
    assert recent.rows <= 5 and len(recent) == 2
    assert recent.get("r0") is None and recent.get("r3") is not None


def test_a_predict_calls_requests_are_remembered_together_and_an_id_reused_keeps_its_latest() -> (
    None
):
    recent = Recent(max_rows=6)
    recent.remember(["a", "b", "c"], [1, 2, 1], np.array([10, 20, 21, 30]))
    assert recent.get("a").tolist() == [10]  # type: ignore[union-attr]
    assert recent.get("b").tolist() == [20, 21]  # type: ignore[union-attr]
    recent.remember(["b"], [1], np.array([99]))  # b again, in a later call
    recent.forget("c")
    assert recent.get("c") is None
    # The first call is forgotten (4 + 1 + 2 rows > 6); b's latest prediction stays.
    recent.remember(["d"], [2], np.array([40, 41]))
    assert recent.get("a") is None and recent.rows == 3
    assert recent.get("b").tolist() == [99]  # type: ignore[union-attr]
    assert recent.get("d").tolist() == [40, 41]  # type: ignore[union-attr]
    assert len(recent) == 2
    # A prediction looked up before its id was reused: forgetting it keeps the new one.
    seen = recent.get("d")
    recent.remember(["d"], [1], np.array([50]))
    recent.forget("d", seen)
    assert recent.get("d").tolist() == [50]  # type: ignore[union-attr]
    recent.forget("d", recent.get("d"))
    assert recent.get("d") is None
    # A call larger than the bound is held (alone): its requests can be labelled.
    recent.remember(["big"], [8], np.arange(8))
    assert len(recent.get("big")) == 8 and recent.rows == 8  # type: ignore[arg-type]


def test_remembered_requests_leave_the_garbage_collector_nothing_to_walk() -> None:
    # A full collection walks every object it tracks while it holds the GIL: 200,000
    # remembered requests in tracked containers made pauses of up to 12 ms.
    recent = Recent(max_rows=100_000)
    gc.collect()
    before = len(gc.get_objects())
    for c in range(2_000):
        recent.remember([f"r{c}-{i}" for i in range(5)], [1, 2, 1, 1, 1], np.zeros(6))
    gc.collect()  # a tuple is untracked once it is seen holding only untracked things:
    gc.collect()  # an outer one seen before its inner ones waits for the next pass
    assert len(recent) == 10_000
    assert len(gc.get_objects()) - before < 50
    assert recent.get("r7-1").tolist() == [0.0, 0.0]  # type: ignore[union-attr]


def test_requests_predicted_together_are_each_scored_against_their_own_rows(
    forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    """Requests of 1, 3 and 2 rows answered by one predict call: each one's truth is
    checked against, and scored on, its own rows."""
    X, _ = iris
    h, fb = with_feedback(forest, ListSink())
    try:
        parts = [X[0:1], X[50:53], X[100:102]]
        calls = h.server.batcher.batches if h.server.batcher else 0
        answers = [doc(r) for r in h.many([("POST", INFER, v2(p), None) for p in parts])]
        assert h.server.batcher is not None and h.server.batcher.batches == calls + 1
        preds = [a["outputs"][0]["data"] for a in answers]
        assert [len(p) for p in preds] == [1, 3, 2]
        short = h.call("POST", FEEDBACK, {"id": answers[1]["id"], "truth": preds[1][:2]})
        assert short.status == 400 and "had 3 rows" in doc(short)["error"]
        wrong = [(v + 1) % 3 for v in preds[2]]  # every row of the last one wrong
        batch = [
            {"id": answers[0]["id"], "truth": preds[0]},
            {"id": answers[1]["id"], "truth": preds[1]},
            {"id": answers[2]["id"], "truth": wrong},
        ]
        assert doc(h.call("POST", FEEDBACK, {"feedback": batch}))["scored"] == 3
        assert gauge(h, "kubeml_live_accuracy") == pytest.approx(4 / 6)
        assert fb.close(10)
    finally:
        h.close()

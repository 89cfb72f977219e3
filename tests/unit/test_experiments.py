"""`kubeml runs`: a model's runs side by side, best key metric first."""

from __future__ import annotations

from typing import Any

from kubeml import experiments


def tr(
    name: str,
    *,
    model: str = "iris",
    metrics: dict[str, float] | None = None,
    listed: list[str] | None = None,
    estimator: str = "random-forest-classifier",
    reason: str = "Succeeded",
    created: str = "2026-12-01T10:00:00Z",
) -> dict[str, Any]:
    status = "True" if reason == "Succeeded" else "False"
    spec: dict[str, Any] = {
        "model": model,
        "datasetRef": {"name": "iris"},
        "estimator": {"name": estimator},
    }
    if listed:
        spec["metrics"] = listed
    st: dict[str, Any] = {
        "conditions": [{"type": "Succeeded", "status": status, "reason": reason}],
        "startTime": "2026-12-01T10:00:00Z",
        "completionTime": "2026-12-01T10:01:05Z",
        "datasetVersion": "ab" * 32,
        "bestParams": {"max_depth": 3},
        "gates": [{"gate": "accuracy >= 0.9", "passed": True}, {"gate": "beat", "passed": False}],
        "trials": {"uri": "s3://b/k", "count": 6, "parallelism": 3, "best": [{"score": 0.95}]},
    }
    if metrics is not None:
        st["metrics"] = metrics
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": spec,
        "status": st,
    }


def test_best_key_metric_first_and_other_models_left_out() -> None:
    runs = [
        tr("low", metrics={"accuracy": 0.80}),
        tr("high", metrics={"accuracy": 0.97}),
        tr("other", model="wine", metrics={"accuracy": 0.99}),
        tr("mid", metrics={"accuracy": 0.90}),
    ]
    assert [r.name for r in experiments.compare(runs, "iris")] == ["high", "mid", "low"]


def test_errors_sort_lowest_first() -> None:
    runs = [
        tr("a", estimator="ridge", listed=["rmse", "r2"], metrics={"rmse": 3.0, "r2": 0.5}),
        tr("b", estimator="ridge", listed=["rmse", "r2"], metrics={"rmse": 1.0, "r2": 0.9}),
    ]
    rows = experiments.compare(runs, "iris")
    assert [r.name for r in rows] == ["b", "a"] and rows[0].key_metric == "rmse"


def test_unmeasured_runs_follow_newest_first() -> None:
    runs = [
        tr("old-fail", reason="JobFailed", created="2026-12-01T09:00:00Z"),
        tr("ok", metrics={"accuracy": 0.5}),
        tr("new-fail", reason="DatasetNotReady", created="2026-12-01T11:00:00Z"),
    ]
    assert [r.name for r in experiments.compare(runs, "iris")] == ["ok", "new-fail", "old-fail"]


def test_a_row_carries_what_a_user_compares() -> None:
    (r,) = experiments.compare([tr("x", metrics={"accuracy": 0.9, "f1_macro": 0.8})], "iris")
    wire = r.wire()
    assert wire["keyMetric"] == "accuracy" and wire["keyValue"] == 0.9
    assert wire["durationSeconds"] == 65.0 and wire["gates"] == {"passed": 1, "total": 2}
    assert wire["params"] == {"max_depth": 3} and wire["cvScore"] == 0.95
    assert (wire["trials"], wire["parallelism"]) == (6, 3)
    assert wire["state"] == "True Succeeded"


def test_table_has_a_column_per_metric_and_aligned_rows() -> None:
    rows = experiments.compare(
        [
            tr("a", metrics={"accuracy": 0.9, "f1_macro": 0.8}),
            tr("b", reason="GateFailed", metrics={"accuracy": 0.7}),
        ],
        "iris",
    )
    lines = experiments.table(rows).splitlines()
    assert lines[0].split()[:5] == ["RUN", "SUCCEEDED", "REASON", "ACCURACY", "F1_MACRO"]
    assert lines[1].split()[:5] == ["a", "True", "Succeeded", "0.9000", "0.8000"]
    assert lines[2].split()[:5] == ["b", "False", "GateFailed", "0.7000", "-"]
    assert "1m05s" in lines[1] and "abababababab" in lines[1]
    starts = [line.index("ACCURACY") for line in lines[:1]]
    assert lines[1][starts[0] :].startswith("0.9000")

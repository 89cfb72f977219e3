"""Metric names, types and labels follow Prometheus conventions."""

from __future__ import annotations

import re

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from kubeml.serving.drift import DriftWindow, NumericBaseline
from kubeml.serving.metrics import LATENCY_BUCKETS, ServerMetrics

NAME = re.compile(r"^kubeml_[a-z][a-z0-9_]*$")


def families(m: ServerMetrics) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        out[fam.name] = (fam.type, [(s.name, s.labels, s.value) for s in fam.samples])
    return out


def exercised() -> ServerMetrics:
    m = ServerMetrics("iris", "2")
    m.track_inflight(lambda: 3.0)
    m.request("v2", 200, 0.004)
    m.request("v1", 400, 0.0002)
    m.predicted(4, np.asarray([0, 0, 2, 1]))
    m.known_classes(["0", "1", "2"])
    m.model_info("ab" * 32)
    m.state(True, "Loaded")
    w = DriftWindow(
        {0: ("petal_width", NumericBaseline(np.asarray([1.0]), np.asarray([0.5, 0.5])))}, 100
    )
    w.observe([np.asarray([0.1, 0.2, 3.0] * 40)])  # enough rows for PSI to be reported
    m.drift.window = w
    return m


def test_every_metric_has_a_conventional_name_type_and_the_model_labels() -> None:
    fams = families(exercised())
    expected_types = {
        "kubeml_requests": "counter",
        "kubeml_request_duration_seconds": "histogram",
        "kubeml_inflight_requests": "gauge",
        "kubeml_predicted_rows": "counter",
        "kubeml_batch_rows": "histogram",
        "kubeml_predictions": "counter",
        "kubeml_model_info": "gauge",
        "kubeml_model_ready": "gauge",
        "kubeml_model_status": "gauge",
        "kubeml_feature_drift_psi": "gauge",
        "kubeml_drift_window_rows": "gauge",
    }
    for name, type_ in expected_types.items():
        assert name in fams, name
        assert fams[name][0] == type_, name
    for name, (type_, samples) in fams.items():
        assert NAME.match(name), name
        for sample, labels, _ in samples:
            assert labels.get("model") == "iris" and labels.get("version") == "2", sample
            if type_ == "counter" and not sample.endswith("_created"):
                assert sample.endswith("_total"), sample
        # units in the name, base units only
        assert not re.search(r"_(ms|milliseconds|kb|mb)(_|$)", name), name


def test_request_series() -> None:
    fams = families(exercised())
    samples = fams["kubeml_requests"][1]
    got = {
        (s[1]["protocol"], s[1]["code"]): s[2] for s in samples if s[0] == "kubeml_requests_total"
    }
    assert got == {("v2", "200"): 1.0, ("v1", "400"): 1.0}
    buckets = [s for s in fams["kubeml_request_duration_seconds"][1] if s[0].endswith("_bucket")]
    les = sorted({float(s[1]["le"]) for s in buckets})
    assert les[0] == 0.0005 and les[-2] == 5.0 and len(les) == len(LATENCY_BUCKETS) + 1


def test_class_counts_rows_info_and_inflight() -> None:
    fams = families(exercised())
    classes = {
        s[1]["class"]: s[2] for s in fams["kubeml_predictions"][1] if s[0].endswith("_total")
    }
    assert classes == {"0": 2.0, "1": 1.0, "2": 1.0}
    assert [s[2] for s in fams["kubeml_predicted_rows"][1] if s[0].endswith("_total")] == [4.0]
    info = fams["kubeml_model_info"][1]
    assert info[0][1]["sha256"] == "ab" * 32 and info[0][2] == 1.0
    assert fams["kubeml_inflight_requests"][1][0][2] == 3.0


def test_drift_gauges_are_computed_at_scrape_time() -> None:
    fams = families(exercised())
    psi = fams["kubeml_feature_drift_psi"][1]
    assert len(psi) == 1 and psi[0][1]["feature"] == "petal_width" and psi[0][2] > 0
    assert fams["kubeml_drift_window_rows"][1][0][2] == 100.0


def test_status_gauge_keeps_only_the_current_reason() -> None:
    m = ServerMetrics("iris", "2")
    m.state(False, "Loading")
    m.state(False, "ArtifactMismatch")
    fams = families(m)
    status = fams["kubeml_model_status"][1]
    assert [(s[1]["reason"], s[2]) for s in status] == [("ArtifactMismatch", 1.0)]
    assert fams["kubeml_model_ready"][1][0][2] == 0.0
    m.state(True, "Loaded")
    assert families(m)["kubeml_model_ready"][1][0][2] == 1.0


def test_no_drift_series_without_a_profile() -> None:
    fams = families(ServerMetrics("iris", "2"))
    assert fams["kubeml_feature_drift_psi"][1] == []

"""Judging a rollout step from Prometheus: the PromQL built for a step, and the
Sample read from Prometheus' answers (pure; a real Prometheus answers them in
tests/integration/test_rollout_analysis.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubeml.api.deployment import Analysis
from kubeml.reconcile.analysis import judge
from kubeml.reconcile.prometheus import (
    Selection,
    queries,
    sample_from_results,
    selector,
    window_seconds,
)
from kubeml.settings import Settings

SEL = Selection("ml", "iris", stable_version=1, target_version=2, window_seconds=42)
WHERE = "http://prometheus.monitoring:9090"


def test_queries_select_the_deployments_servers_over_the_steps_window() -> None:
    q = queries(SEL)
    assert set(q) == {"pods", "forwarded", "forwardedBuckets", "stableRequests", "stableBuckets"}
    base = 'namespace="ml",kubeml_io_deployment="iris"'
    assert q["pods"] == f'count(kubeml_model_ready{{{base},version="1"}})'
    assert q["forwarded"] == (
        "sum by (outcome) (increase(kubeml_forwarded_requests_total"
        f'{{{base},version="1",target_version="2"}}[42s]))'
    )
    assert q["forwardedBuckets"] == (
        "sum by (le) (increase(kubeml_forwarded_request_duration_seconds_bucket"
        f'{{{base},version="1",target_version="2"}}[42s]))'
    )
    assert q["stableRequests"] == (
        f'sum by (code) (increase(kubeml_requests_total{{{base},version="1",protocol=~"v1|v2"}}'
        "[42s]))"
    )
    assert q["stableBuckets"] == (
        "sum by (le) (increase(kubeml_request_duration_seconds_bucket"
        f'{{{base},version="1",protocol=~"v1|v2"}}[42s]))'
    )


def test_drift_is_asked_of_the_new_versions_servers_only_when_checked() -> None:
    q = queries(Selection("ml", "iris", 1, 2, 42, drift=True))
    base = 'namespace="ml",kubeml_io_deployment="iris",version="2"'
    assert q["driftPsi"] == f"max by (feature) (kubeml_feature_drift_psi{{{base}}})"
    assert q["driftRows"] == f"max(kubeml_drift_window_rows{{{base}}})"


def test_agreement_reads_the_rows_mirrored_to_the_new_version_when_checked() -> None:
    q = queries(Selection("ml", "iris", 1, 2, 42, agreement=True))
    base = 'namespace="ml",kubeml_io_deployment="iris",version="1",target_version="2"'
    assert q["compared"] == f"sum(increase(kubeml_shadow_rows_compared_total{{{base}}}[42s]))"
    assert q["agreed"] == f"sum(increase(kubeml_shadow_rows_agreed_total{{{base}}}[42s]))"
    sel = Selection("ml", "iris", 1, 2, 42, agreement=True)
    answers = _results(
        compared=[{"metric": {}, "value": [1.0, "400.4"]}],
        agreed=[{"metric": {}, "value": [1.0, "199.8"]}],
    )
    s = sample_from_results(sel, answers, WHERE)
    assert (s.compared, s.agreed) == (400, 200)
    j = judge(s, Analysis(max_error_rate=0.1, min_agreement=0.9), 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["agreement"]


def test_a_zero_window_asks_for_one_second_never_an_invalid_range() -> None:
    assert "[1s]" in queries(Selection("ml", "iris", 1, 2, 0))["forwarded"]


def test_label_values_are_quoted_for_promql() -> None:
    assert selector("ml", 'a"b\\c') == r'{namespace="ml",kubeml_io_deployment="a\"b\\c"}'


@pytest.mark.parametrize(
    ("since", "seconds"),
    [("2026-01-01T00:00:00Z", 90), ("2026-01-01T00:01:30Z", 0), (None, 0), ("later", 0)],
)
def test_the_window_runs_from_the_steps_start(since: str | None, seconds: int) -> None:
    assert window_seconds("2026-01-01T00:01:30Z", since) == seconds


def _vec(label: str, values: dict[str, float]) -> list[dict[str, Any]]:
    return [{"metric": {label: k}, "value": [1.0, str(v)]} for k, v in values.items()]


def _results(**over: Any) -> dict[str, Any]:
    results = {
        "pods": [{"metric": {}, "value": [1.0, "2"]}],
        "forwarded": _vec("outcome", {"answered": 95.4, "error": 4.6, "saturated": 3}),
        "forwardedBuckets": _vec("le", {"0.005": 90, "0.01": 99.9, "+Inf": 100}),
        "stableRequests": _vec("code", {"200": 900.2, "500": 9, "400": 50}),
        # extrapolated on their own: a higher bucket a hair below a lower one
        "stableBuckets": _vec("le", {"0.005": 950.3, "0.01": 950.1, "+Inf": 959}),
    }
    return {**results, **over}


def test_the_sample_reads_prometheus_answers_like_the_pods_pages() -> None:
    s = sample_from_results(SEL, _results(), WHERE)
    assert (s.requests, s.errors, s.pods, s.source) == (100, 5, 2, "prometheus")
    # stable's own: 2xx and 5xx, less the fallbacks it gave for the new version
    assert (s.stable_requests, s.stable_errors) == (905, 9)  # 909.2 - 4.6
    assert s.buckets == ((0.005, 90.0), (0.01, 99.9), (math.inf, 100.0))
    assert s.stable_buckets == ((0.005, 950.3), (0.01, 950.3), (math.inf, 959.0))
    assert s.drift_psi is None and s.drift_rows is None
    j = judge(s, Analysis(max_error_rate=0.1, max_error_rate_increase=0.1), 0)
    assert j.result == "Pass"


def test_drift_answers_name_the_highest_feature() -> None:
    sel = Selection("ml", "iris", 1, 2, 42, drift=True)
    res = _results(
        driftPsi=_vec("feature", {"a": 0.1, "b": 0.7, "c": float("nan")}),
        driftRows=[{"metric": {}, "value": [1.0, "350"]}],
    )
    s = sample_from_results(sel, res, WHERE)
    assert (s.drift_psi, s.drift_feature, s.drift_rows) == (0.7, "b", 350.0)
    few = sample_from_results(
        sel, _results(driftPsi=[], driftRows=[{"metric": {}, "value": [1, "40"]}]), WHERE
    )
    assert (few.drift_psi, few.drift_rows) == (None, 40.0)
    j = judge(few, Analysis(max_error_rate=0.1, max_drift_psi=0.2), 0)
    assert j.result == "Inconclusive" and "40 rows" in j.describe()


def test_empty_answers_early_in_a_step_are_inconclusive() -> None:
    s = sample_from_results(SEL, _results(forwarded=[], forwardedBuckets=[]), WHERE)
    j = judge(s, Analysis(), 0)
    assert j.result == "Inconclusive" and "0 requests answered by the new version" in j.why


def test_no_stable_series_names_the_prometheus_and_the_selector() -> None:
    s = sample_from_results(SEL, _results(pods=[]), WHERE)
    j = judge(s, Analysis(), failures_before=0)
    assert j.result == "Inconclusive" and not j.rollback
    assert j.why.startswith(f"Prometheus at {WHERE} has no kubeml_model_ready series")
    assert 'kubeml_io_deployment="iris"' in j.why


def test_the_prometheus_url_is_an_operator_setting() -> None:
    assert Settings.from_env({}).prometheus_url == ""
    s = Settings.from_env(
        {
            "KUBEML_PROMETHEUS_URL": " http://prometheus.monitoring:9090/ ",
            "KUBEML_PROMETHEUS_TIMEOUT_SECONDS": "3",
        }
    )
    assert (s.prometheus_url, s.prometheus_timeout_seconds) == (WHERE, 3.0)

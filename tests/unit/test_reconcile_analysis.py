"""The rollout step judgement as a pure function: pass, fail, inconclusive metrics,
the failure limit; and reading its sample from real server metrics pages."""

from __future__ import annotations

import math

import pytest

from kubeml.api.deployment import Analysis
from kubeml.reconcile.analysis import CHECKS, Sample, judge, quantile, sample_from_metrics
from kubeml.serving.metrics import ServerMetrics

INF = math.inf
FAST = ((0.005, 90.0), (0.01, 100.0), (INF, 100.0))  # p99 within (5 ms, 10 ms]
SLOW = ((0.5, 50.0), (1.0, 50.0), (2.5, 100.0), (INF, 100.0))  # p99 in (1 s, 2.5 s]


def test_a_healthy_step_passes_with_each_check_and_its_value() -> None:
    j = judge(Sample(100, 0, FAST, pods=2), Analysis(), failures_before=0)
    assert j.result == "Pass" and not j.rollback and j.failures == 0
    by_name = {c.name: c for c in j.checks}
    assert by_name["errorRate"].value == 0 and by_name["errorRate"].passed
    p99 = by_name["latencyP99Seconds"].value
    assert p99 is not None and 0.005 < p99 <= 0.01


def test_errors_over_the_limit_fail_and_name_the_check_and_value() -> None:
    j = judge(Sample(100, 7, FAST, pods=1), Analysis(max_error_rate=0.05), failures_before=0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["errorRate"]
    assert j.failed[0].value == pytest.approx(0.07)
    assert "errorRate 0.07 (limit 0.05)" in j.describe()


def test_slow_answers_fail_on_p99() -> None:
    j = judge(Sample(100, 0, SLOW, pods=1), Analysis(max_latency_p99_seconds=0.5), 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["latencyP99Seconds"]
    value = j.failed[0].value
    assert value is not None and 1.0 < value <= 2.5


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        (None, "no stable server could be read"),
        (Sample(0, 0, (), pods=0), "no stable server could be read"),
        (Sample(19, 19, FAST, pods=1), "19 requests answered by the new version"),
    ],
)
def test_too_little_to_judge_is_inconclusive_never_a_failure(
    sample: Sample | None, why: str
) -> None:
    j = judge(sample, Analysis(min_requests=20), failures_before=1)
    assert j.result == "Inconclusive" and j.failures == 1 and not j.rollback
    assert why in j.describe()


def test_no_latency_observations_leave_that_check_untold_and_the_step_inconclusive() -> None:
    # A step never passes on a check nobody measured.
    j = judge(Sample(50, 0, (), pods=1), Analysis(min_requests=20), 0)
    assert j.result == "Inconclusive" and j.failures == 0 and not j.rollback
    assert {c.name: c.passed for c in j.checks}["latencyP99Seconds"] is None
    assert "latencyP99Seconds: no latency observations" in j.describe()


def test_a_metrics_source_error_is_inconclusive_with_its_message() -> None:
    err = "prometheus at http://127.0.0.1:1: connection refused"
    j = judge(Sample(0, 0, error=err), Analysis(), failures_before=2)
    assert j.result == "Inconclusive" and j.failures == 2 and not j.rollback
    assert j.describe() == f"inconclusive: {err}"


def test_the_default_policy_builds_only_the_absolute_checks() -> None:
    j = judge(Sample(100, 0, FAST, pods=1), Analysis(), 0)
    assert [c.name for c in j.checks] == ["errorRate", "latencyP99Seconds"]
    assert [b.__name__ for b in CHECKS][:2] == ["error_rate", "latency_p99"]


# -- drift PSI -------------------------------------------------------------------


def test_drift_under_the_limit_passes_with_the_feature_named() -> None:
    s = Sample(100, 0, FAST, pods=1, drift_psi=0.08, drift_feature="petal_length", drift_rows=400)
    j = judge(s, Analysis(max_drift_psi=0.2), 0)
    assert j.result == "Pass"
    c = {c.name: c for c in j.checks}["driftPsi"]
    assert (c.value, c.limit, c.passed) == (0.08, 0.2, True)
    assert c.to_status() == {
        "name": "driftPsi",
        "limit": 0.2,
        "value": 0.08,
        "passed": True,
        "message": "feature petal_length",
    }


def test_drift_over_the_limit_fails_and_counts_toward_the_failure_limit() -> None:
    s = Sample(100, 0, FAST, pods=1, drift_psi=1.7, drift_feature="a", drift_rows=5000)
    j = judge(s, Analysis(max_drift_psi=0.25, failure_limit=1), failures_before=1)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["driftPsi"]
    assert j.failures == 2 and j.rollback
    assert "driftPsi 1.7 (limit 0.25)" in j.describe()


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        (42.0, "42 rows in the new version's drift window, fewer than the 100"),
        (None, "no drift window on the new version's servers"),
    ],
)
def test_drift_not_yet_measured_is_inconclusive_never_a_pass(rows: float | None, why: str) -> None:
    s = Sample(100, 0, FAST, pods=1, drift_rows=rows)
    j = judge(s, Analysis(max_drift_psi=0.2), failures_before=0)
    assert j.result == "Inconclusive" and j.failures == 0 and not j.rollback
    assert f"driftPsi: {why}" in j.describe()
    assert {c.name: c.passed for c in j.checks}["driftPsi"] is None


def test_a_failed_check_outweighs_an_untold_one() -> None:
    s = Sample(100, 50, FAST, pods=1)  # drift untold, errors failed
    j = judge(s, Analysis(max_drift_psi=0.2), 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["errorRate"]


# -- relative to stable ------------------------------------------------------------

RELATIVE = Analysis(max_error_rate=1, max_error_rate_increase=0.02, max_latency_p99_ratio=1.5)


def test_relative_checks_pass_when_the_new_version_is_like_stable() -> None:
    s = Sample(100, 3, FAST, pods=1, stable_requests=900, stable_errors=18, stable_buckets=FAST)
    j = judge(s, RELATIVE, 0)
    assert j.result == "Pass"
    by = {c.name: c for c in j.checks}
    assert by["errorRateIncrease"].value == pytest.approx(0.01)
    assert by["latencyP99Ratio"].value == pytest.approx(1.0)


def test_more_errors_than_stable_fail_on_the_increase() -> None:
    s = Sample(100, 8, FAST, pods=1, stable_requests=1000, stable_errors=10, stable_buckets=FAST)
    j = judge(s, RELATIVE, 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["errorRateIncrease"]
    assert j.failed[0].value == pytest.approx(0.07)


def test_slower_than_stable_fails_on_the_ratio_even_under_the_absolute_limit() -> None:
    policy = RELATIVE.model_copy(update={"max_latency_p99_seconds": 5.0})
    s = Sample(100, 0, SLOW, pods=1, stable_requests=500, stable_buckets=FAST)
    j = judge(s, policy, 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["latencyP99Ratio"]
    value = j.failed[0].value
    assert value is not None and value > 100


def test_an_error_rate_equal_to_a_failing_stable_passes_the_relative_check() -> None:
    # Both versions fail 5%: the new version is no worse than what serves today.
    s = Sample(100, 5, FAST, pods=1, stable_requests=100, stable_errors=5, stable_buckets=FAST)
    j = judge(s, Analysis(max_error_rate=0.1, max_error_rate_increase=0.0), 0)
    assert j.result == "Pass"
    assert {c.name: c.value for c in j.checks}["errorRateIncrease"] == pytest.approx(0.0)


@pytest.mark.parametrize("stable_requests", [0, 19])
def test_relative_checks_are_skipped_without_enough_stable_traffic(stable_requests: int) -> None:
    # A step at 100% leaves stable nothing of its own: the absolute checks decide.
    s = Sample(100, 0, FAST, pods=1, stable_requests=stable_requests, stable_buckets=FAST)
    j = judge(s, RELATIVE.model_copy(update={"min_requests": 20}), 0)
    assert j.result == "Pass"
    by = {c.name: c for c in j.checks}
    for name in ("errorRateIncrease", "latencyP99Ratio"):
        assert by[name].skipped and by[name].value is None and by[name].passed is None
        assert f"stable answered {stable_requests} requests of its own" in by[name].note
    assert "errorRateIncrease" not in j.describe()
    bad = Sample(100, 100, FAST, pods=1, stable_requests=stable_requests)
    assert judge(bad, RELATIVE.model_copy(update={"max_error_rate": 0.01}), 0).result == "Fail"


def test_relative_checks_fail_toward_the_failure_limit_like_the_others() -> None:
    s = Sample(100, 30, FAST, pods=1, stable_requests=100, stable_errors=0, stable_buckets=FAST)
    j = judge(s, RELATIVE.model_copy(update={"failure_limit": 2}), failures_before=1)
    assert j.result == "Fail" and j.failures == 2 and not j.rollback
    j = judge(s, RELATIVE.model_copy(update={"failure_limit": 2}), failures_before=2)
    assert j.rollback


@pytest.mark.parametrize(
    ("limit", "before", "rollback"), [(0, 0, True), (1, 0, False), (1, 1, True), (3, 2, False)]
)
def test_rollback_when_failures_exceed_the_failure_limit(
    limit: int, before: int, rollback: bool
) -> None:
    j = judge(Sample(100, 100, FAST, pods=1), Analysis(failure_limit=limit), before)
    assert j.result == "Fail" and j.failures == before + 1 and j.rollback is rollback


def test_quantile_interpolates_like_histogram_quantile() -> None:
    assert quantile(((1.0, 0.0), (2.0, 100.0), (INF, 100.0)), 0.5) == pytest.approx(1.5)
    assert quantile(((1.0, 0.0), (INF, 10.0)), 0.99) == 1.0  # past the last finite bound
    assert quantile((), 0.99) is None
    assert quantile(((1.0, 0.0), (INF, 0.0)), 0.99) is None


def test_the_sample_sums_real_metrics_pages_of_several_stable_servers() -> None:
    pages = []
    for answered, failed in ((30, 2), (20, 1)):
        m = ServerMetrics("iris", "1")
        for _ in range(answered):
            m.forwarded("2", "answered", 0.004)
        for _ in range(failed):
            m.forwarded("2", "error", 0.004)
        m.forwarded("2", "saturated", 0.0)  # never sent: not judged
        m.forwarded("3", "error", 0.004)  # another target version
        pages.append(m.exposition().decode())
    s = sample_from_metrics(pages, 2)
    assert (s.requests, s.errors, s.pods) == (53, 3, 2)
    assert s.buckets[-1] == (INF, 53.0)
    p99 = quantile(s.buckets, 0.99)
    assert p99 is not None and 0.003 < p99 <= 0.004


def test_stable_numbers_leave_out_client_errors_and_fallback_answers() -> None:
    m = ServerMetrics("iris", "1")
    for _ in range(70):
        m.request("v2", 200, 0.002)  # stable's own answers
    for _ in range(3):
        m.request("v1", 500, 0.002)  # stable's own failures
    for _ in range(9):
        m.request("v2", 400, 0.001)  # the clients' errors: never forwarded
    for _ in range(4):
        m.request("grpc", 200, 0.001)  # never forwarded either
    for _ in range(5):  # the new version failed these; stable answered them instead
        m.forwarded("2", "error", 0.01)
        m.request("v2", 200, 0.012)
    for _ in range(20):
        m.forwarded("2", "answered", 0.004)  # relayed: not in stable's own counters
    s = sample_from_metrics([m.exposition().decode()], 2)
    assert (s.requests, s.errors) == (25, 5)
    assert (s.stable_requests, s.stable_errors) == (73, 3)
    # The histogram has no code label: client errors and fallbacks are in (see Sample).
    assert s.stable_buckets[-1] == (INF, 87.0)


def test_drift_is_read_from_the_new_versions_pages() -> None:
    page = (
        "# TYPE kubeml_feature_drift_psi gauge\n"
        'kubeml_feature_drift_psi{{model="iris",version="2",feature="a"}} {a}\n'
        'kubeml_feature_drift_psi{{model="iris",version="2",feature="b"}} {b}\n'
        "# TYPE kubeml_drift_window_rows gauge\n"
        'kubeml_drift_window_rows{{model="iris",version="2"}} {rows}\n'
    )
    pages = [page.format(a=0.1, b=0.3, rows=300), page.format(a=0.9, b="NaN", rows=120)]
    s = sample_from_metrics([], 2, pages)
    assert (s.drift_psi, s.drift_feature, s.drift_rows) == (0.9, "a", 300)
    empty = "# TYPE kubeml_drift_window_rows gauge\nkubeml_drift_window_rows 12\n"
    s = sample_from_metrics([], 2, [empty])
    assert (s.drift_psi, s.drift_rows) == (None, 12)
    assert sample_from_metrics([], 2, []).drift_rows is None


def test_agreement_is_judged_only_when_asked_for() -> None:
    sample = Sample(100, 0, FAST, pods=1, compared=400, agreed=100)
    assert "agreement" not in [c.name for c in judge(sample, Analysis(), 0).checks]


@pytest.mark.parametrize(
    ("compared", "agreed", "result", "value"),
    [
        (400, 390, "Pass", 0.975),
        (400, 200, "Fail", 0.5),
        (19, 19, "Inconclusive", None),  # fewer compared rows than minRequests
    ],
)
def test_agreement_with_stable_passes_fails_or_is_inconclusive(
    compared: int, agreed: int, result: str, value: float | None
) -> None:
    a = Analysis(min_requests=20, min_agreement=0.95)
    j = judge(Sample(100, 0, FAST, pods=1, compared=compared, agreed=agreed), a, 0)
    assert j.result == result
    check = {c.name: c for c in j.checks}["agreement"]
    assert (check.value, check.limit) == (value, 0.95)
    if result == "Fail":
        assert "agreement 0.5 (limit 0.95) over 100 requests" in j.describe()
    if result == "Inconclusive":
        # The step cannot pass without it, and it is no failure either.
        assert j.failures == 0 and "19 rows of mirrored requests" in j.describe()
        assert check.to_status() == {
            "name": "agreement",
            "limit": 0.95,
            "message": "19 rows of mirrored requests compared with the new version, "
            "fewer than minRequests 20",
        }


def test_other_failures_count_while_agreement_cannot_be_told_yet() -> None:
    a = Analysis(min_requests=20, min_agreement=0.95, max_error_rate=0.01)
    j = judge(Sample(100, 50, FAST, pods=1, compared=3, agreed=3), a, 0)
    assert j.result == "Fail" and [c.name for c in j.failed] == ["errorRate"]


def test_the_sample_sums_shadow_rows_of_its_target_version_only() -> None:
    pages = []
    for compared, agreed in ((40, 30), (60, 45)):
        m = ServerMetrics("iris", "1")
        m.shadow_rows("2", compared, agreed)
        m.shadow_rows("3", 1000, 0)  # another version's shadow
        pages.append(m.exposition().decode())
    s = sample_from_metrics(pages, 2)
    assert (s.compared, s.agreed) == (100, 75)

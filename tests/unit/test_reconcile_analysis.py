"""The rollout step judgement as a pure function: pass, fail, inconclusive metrics,
the failure limit; and reading its sample from real server metrics pages."""

from __future__ import annotations

import math

import pytest

from kubeml.api.deployment import Analysis
from kubeml.reconcile.analysis import Sample, judge, quantile, sample_from_metrics
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


def test_no_latency_observations_leave_that_check_untold_not_failed() -> None:
    j = judge(Sample(50, 0, (), pods=1), Analysis(min_requests=20), 0)
    assert j.result == "Pass"
    assert {c.name: c.passed for c in j.checks}["latencyP99Seconds"] is None


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
        assert check.to_status() == {"name": "agreement", "limit": 0.95}


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

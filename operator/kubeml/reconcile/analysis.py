"""Judging a rollout step on the new version's live requests: a pure decision.

The stable servers forward the new version's share and record, per target version,
how each forwarded request ended (``kubeml_forwarded_requests_total{outcome}``) and
how long it took (``kubeml_forwarded_request_duration_seconds``). Stable servers
restart with each new weight, so what their counters hold is the current step's
traffic: a judgement covers the step so far. With ``analysis.minAgreement`` they also
mirror a share of the requests they answer themselves to the new version and count
the rows on which its predictions agree with theirs (serving/shadow.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..api.deployment import Analysis

FORWARDED = "kubeml_forwarded_requests"
DURATION = "kubeml_forwarded_request_duration_seconds"
# Outcomes that are the new version's failures; "saturated" requests were never sent.
FAILED = frozenset({"error", "unreachable"})
JUDGED = FAILED | {"answered"}
# Shadowed requests (analysis.minAgreement): rows compared with stable, rows agreed.
COMPARED = "kubeml_shadow_rows_compared"
AGREED = "kubeml_shadow_rows_agreed"
# Checks whose limit is a minimum (a value below it fails).
MINIMUMS = frozenset({"agreement"})

Result = Literal["Pass", "Fail", "Inconclusive"]


@dataclass(frozen=True)
class Sample:
    """The new version's requests in the step, summed over the stable servers read."""

    requests: int
    errors: int
    # (upper bound, cumulative count) of the latency histogram, ascending, +Inf last.
    buckets: tuple[tuple[float, float], ...] = ()
    pods: int = 0
    # Rows of requests mirrored to the new version, compared with stable's answers.
    compared: int = 0
    agreed: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    limit: float
    passed: bool | None  # None: could not be told

    def to_status(self) -> dict[str, object]:
        doc: dict[str, object] = {"name": self.name, "limit": self.limit}
        if self.value is not None:
            doc["value"] = round(self.value, 6)
        if self.passed is not None:
            doc["passed"] = self.passed
        return doc


@dataclass(frozen=True)
class Judgement:
    result: Result
    checks: tuple[Check, ...]
    requests: int
    failures: int  # failed judgements in this rollout, this one included
    rollback: bool
    why: str = ""  # for Inconclusive
    failed: tuple[Check, ...] = field(default=())

    def describe(self) -> str:
        if self.result == "Inconclusive":
            return f"inconclusive: {self.why}"
        shown = ", ".join(_show(c) for c in (self.failed or self.checks))
        return f"{self.result.lower()}: {shown} over {self.requests} requests"


def _show(c: Check) -> str:
    value = "n/a" if c.value is None else f"{c.value:.4g}"
    return f"{c.name} {value} (limit {c.limit:g})"


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated within its bucket the
    way Prometheus' histogram_quantile does; None for an empty one. Past the last
    finite bound, the last finite bound (what can be told)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def judge(sample: Sample | None, analysis: Analysis, failures_before: int) -> Judgement:
    """Pass, Fail or Inconclusive for one step so far; a Fail that takes the failed
    judgements past ``analysis.failure_limit`` rolls back."""
    if sample is None or sample.pods == 0:
        return Judgement(
            "Inconclusive", (), 0, failures_before, False, "no stable server could be read"
        )
    if sample.requests < analysis.min_requests:
        return Judgement(
            "Inconclusive",
            (),
            sample.requests,
            failures_before,
            False,
            f"{sample.requests} requests answered by the new version, fewer than "
            f"minRequests {analysis.min_requests}",
        )
    rate = sample.errors / sample.requests
    p99 = quantile(sample.buckets, 0.99)
    checks: tuple[Check, ...] = (
        Check("errorRate", rate, analysis.max_error_rate, rate <= analysis.max_error_rate),
        Check(
            "latencyP99Seconds",
            p99,
            analysis.max_latency_p99_seconds,
            None if p99 is None else p99 <= analysis.max_latency_p99_seconds,
        ),
    )
    agreement = agreement_check(sample, analysis)
    if agreement is not None:
        checks = (*checks, agreement)
    failed = tuple(c for c in checks if c.passed is False)
    if failed:
        failures = failures_before + 1
        return Judgement(
            "Fail",
            checks,
            sample.requests,
            failures,
            failures > analysis.failure_limit,
            failed=failed,
        )
    if agreement is not None and agreement.passed is None:
        # Asked for and not measurable yet: the step cannot pass on the other checks.
        why = (
            f"{sample.compared} rows of mirrored requests compared with the new version, "
            f"fewer than minRequests {analysis.min_requests}"
        )
        return Judgement("Inconclusive", checks, sample.requests, failures_before, False, why)
    return Judgement("Pass", checks, sample.requests, failures_before, False)


def agreement_check(sample: Sample, analysis: Analysis) -> Check | None:
    """Prediction agreement with stable on shadowed requests (None: not asked for).
    Fewer than minRequests compared rows: inconclusive (passed None)."""
    limit = analysis.min_agreement
    if limit is None:
        return None
    if sample.compared < analysis.min_requests:
        return Check("agreement", None, limit, None)
    value = sample.agreed / sample.compared
    return Check("agreement", value, limit, value >= limit)


def sample_from_metrics(texts: Iterable[str], target_version: int) -> Sample:
    """Sum the forwarded-request series for ``target_version`` over several stable
    servers' /metrics pages."""
    from prometheus_client.parser import text_string_to_metric_families

    target = str(target_version)
    requests = errors = pods = compared = agreed = 0
    buckets: dict[float, float] = {}
    for text in texts:
        pods += 1
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.labels.get("target_version") != target:
                    continue
                if s.name == f"{FORWARDED}_total":
                    outcome = s.labels.get("outcome", "")
                    if outcome in JUDGED:
                        requests += int(s.value)
                        errors += int(s.value) if outcome in FAILED else 0
                elif s.name == f"{DURATION}_bucket":
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + float(s.value)
                elif s.name == f"{COMPARED}_total":
                    compared += int(s.value)
                elif s.name == f"{AGREED}_total":
                    agreed += int(s.value)
    return Sample(requests, errors, tuple(sorted(buckets.items())), pods, compared, agreed)

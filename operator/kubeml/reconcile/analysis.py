"""Judging a rollout step on the new version's live requests: a pure decision.

The stable servers forward the new version's share and record, per target version,
how each forwarded request ended (``kubeml_forwarded_requests_total{outcome}``) and
how long it took (``kubeml_forwarded_request_duration_seconds``). Stable servers
restart with each new weight, so what their counters hold is the current step's
traffic: a judgement covers the step so far. The same servers' own request metrics
give the stable version's numbers for the relative checks, and the new version's
servers' drift gauges its drift. With ``analysis.minAgreement`` the stable servers
also mirror a share of the requests they answer themselves to the new version and
count the rows on which its predictions agree with theirs (serving/shadow.py).

Each check is built by its own small function from the Sample and the Analysis
policy (``CHECKS``); a check that is not configured builds nothing. To add one, add
its numbers to ``Sample`` (and to the readers that fill it) and its builder to
``CHECKS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..api.deployment import Analysis

FORWARDED = "kubeml_forwarded_requests"
DURATION = "kubeml_forwarded_request_duration_seconds"
REQUESTS = "kubeml_requests"
REQUEST_DURATION = "kubeml_request_duration_seconds"
DRIFT_PSI = "kubeml_feature_drift_psi"
DRIFT_ROWS = "kubeml_drift_window_rows"
# Outcomes that are the new version's failures; "saturated" requests were never sent.
FAILED = frozenset({"error", "unreachable"})
JUDGED = FAILED | {"answered"}
# Only these are ever forwarded (not gRPC): stable's own numbers are taken over the
# same kind of requests.
FORWARDED_PROTOCOLS = ("v1", "v2")
# The server reports a feature's PSI once its window holds this many rows
# (kubeml.serving.drift.MIN_ROWS); named in the inconclusive message.
DRIFT_MIN_ROWS = 100
# Shadowed requests (analysis.minAgreement): rows compared with stable, rows agreed.
COMPARED = "kubeml_shadow_rows_compared"
AGREED = "kubeml_shadow_rows_agreed"
# Checks whose limit is a minimum (a value below it fails).
MINIMUMS = frozenset({"agreement"})

Result = Literal["Pass", "Fail", "Inconclusive"]
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Sample:
    """What a judgement is made from, over the step so far.

    The new version: its forwarded requests summed over the stable servers read.
    Stable (for the relative checks): the stable servers' own answers to inference
    requests of the forwarded kinds (v1, v2), excluding client errors (4xx: never
    forwarded, so never the new version's either) and excluding the fallback answers
    the stable model gave to forwarded requests the new version failed (those are
    the new version's failures). Stable's latency histogram has no code label and
    cannot single those out: it holds every answer to a v1/v2 inference request the
    stable servers wrote themselves, client errors (fast) and fallbacks (slow: the
    new version's attempt included) alike. Both are rare next to stable's own
    answers in a healthy step; fallbacks beyond the error checks' limits fail those.
    """

    requests: int
    errors: int
    # (upper bound, cumulative count) of the latency histogram, ascending, +Inf last.
    buckets: Buckets = ()
    pods: int = 0  # stable servers read
    stable_requests: int = 0
    stable_errors: int = 0
    stable_buckets: Buckets = ()
    # The new version's servers: the highest PSI of any feature on any of them
    # (None: none reported one), that feature, and the most rows any drift window held
    # (None: no server reported a window, i.e. no training profile or none read).
    drift_psi: float | None = None
    drift_feature: str = ""
    drift_rows: float | None = None
    # Rows of requests mirrored to the new version, compared with stable's answers.
    compared: int = 0
    agreed: int = 0
    source: str = "pods"  # "pods" (each pod's /metrics) or "prometheus"
    error: str = ""  # the metrics could not be read: inconclusive, with this message


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    limit: float
    passed: bool | None  # None: could not be told (or skipped)
    note: str = ""  # why it could not be told, or was skipped
    # Not applicable in this step (a relative check with no stable traffic to compare
    # with): recorded, but does not make the judgement inconclusive.
    skipped: bool = False

    def to_status(self) -> dict[str, object]:
        doc: dict[str, object] = {"name": self.name, "limit": self.limit}
        if self.value is not None:
            doc["value"] = round(self.value, 6)
        if self.passed is not None:
            doc["passed"] = self.passed
        if self.note:
            doc["message"] = self.note[:256]
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
        shown = ", ".join(_show(c) for c in (self.failed or self.checks) if not c.skipped)
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


# -- the checks: one builder each; None when the policy does not ask for it ----------

CheckBuilder = Callable[[Sample, Analysis], "Check | None"]


def _limit(name: str, value: float | None, limit: float, note: str = "") -> Check:
    return Check(name, value, limit, None if value is None else value <= limit, note)


def error_rate(s: Sample, a: Analysis) -> Check:
    return _limit("errorRate", s.errors / s.requests, a.max_error_rate)


def latency_p99(s: Sample, a: Analysis) -> Check:
    p99 = quantile(s.buckets, 0.99)
    note = "" if p99 is not None else "no latency observations of the new version"
    return _limit("latencyP99Seconds", p99, a.max_latency_p99_seconds, note)


def _nothing_to_compare(s: Sample, a: Analysis) -> str:
    """Why stable's numbers cannot be compared with, or "" if they can."""
    if s.stable_requests < a.min_requests:
        return (
            f"stable answered {s.stable_requests} requests of its own in the step, fewer "
            f"than minRequests {a.min_requests}: nothing to compare with"
        )
    return ""


def error_rate_increase(s: Sample, a: Analysis) -> Check | None:
    limit = a.max_error_rate_increase
    if limit is None:
        return None
    name = "errorRateIncrease"
    if why := _nothing_to_compare(s, a):
        return Check(name, None, limit, None, why, skipped=True)
    increase = s.errors / s.requests - s.stable_errors / s.stable_requests
    return _limit(name, increase, limit)


def latency_p99_ratio(s: Sample, a: Analysis) -> Check | None:
    limit = a.max_latency_p99_ratio
    if limit is None:
        return None
    name = "latencyP99Ratio"
    if why := _nothing_to_compare(s, a):
        return Check(name, None, limit, None, why, skipped=True)
    stable, new = quantile(s.stable_buckets, 0.99), quantile(s.buckets, 0.99)
    if not stable:  # no observations, or all in the first bucket's lowest edge
        return Check(name, None, limit, None, "no latency observations of stable", skipped=True)
    if new is None:
        return Check(name, None, limit, None, "no latency observations of the new version")
    return _limit(name, new / stable, limit)


def drift_psi(s: Sample, a: Analysis) -> Check | None:
    limit = a.max_drift_psi
    if limit is None:
        return None
    if s.drift_psi is not None:
        note = f"feature {s.drift_feature}" if s.drift_feature else ""
        return _limit("driftPsi", s.drift_psi, limit, note)
    if s.drift_rows is None:
        why = (
            "no drift window on the new version's servers (none read, or the version "
            "has no training profile)"
        )
    else:
        why = (
            f"{s.drift_rows:g} rows in the new version's drift window, fewer than the "
            f"{DRIFT_MIN_ROWS} its servers need to report PSI"
        )
    return Check("driftPsi", None, limit, None, why)


def agreement(s: Sample, a: Analysis) -> Check | None:
    """Prediction agreement with stable on the requests mirrored to the new version;
    fewer than minRequests rows compared: not told (the step cannot pass yet)."""
    limit = a.min_agreement
    if limit is None:
        return None
    if s.compared < a.min_requests:
        why = (
            f"{s.compared} rows of mirrored requests compared with the new version, "
            f"fewer than minRequests {a.min_requests}"
        )
        return Check("agreement", None, limit, None, why)
    value = s.agreed / s.compared
    return Check("agreement", value, limit, value >= limit)


CHECKS: tuple[CheckBuilder, ...] = (
    error_rate,
    latency_p99,
    error_rate_increase,
    latency_p99_ratio,
    drift_psi,
    agreement,
)


def judge(sample: Sample | None, analysis: Analysis, failures_before: int) -> Judgement:
    """Pass, Fail or Inconclusive for one step so far; a Fail that takes the failed
    judgements past ``analysis.failure_limit`` rolls back. A failed check fails the
    judgement; otherwise a check that could not be told (and was not skipped) makes it
    inconclusive: a step never passes on a check nobody measured."""

    def inconclusive(why: str, requests: int = 0, checks: tuple[Check, ...] = ()) -> Judgement:
        return Judgement("Inconclusive", checks, requests, failures_before, False, why)

    if sample is not None and sample.error:
        return inconclusive(sample.error)
    if sample is None or sample.pods == 0:
        return inconclusive("no stable server could be read")
    if sample.requests < analysis.min_requests:
        return inconclusive(
            f"{sample.requests} requests answered by the new version, fewer than "
            f"minRequests {analysis.min_requests}",
            sample.requests,
        )
    checks = tuple(c for build in CHECKS if (c := build(sample, analysis)) is not None)
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
    untold = [c for c in checks if c.passed is None and not c.skipped]
    if untold:
        why = "; ".join(f"{c.name}: {c.note}" for c in untold)
        return inconclusive(why, sample.requests, checks)
    return Judgement("Pass", checks, sample.requests, failures_before, False)


# -- reading a Sample from the servers' own /metrics pages -------------------------


def sample_from_metrics(
    texts: Iterable[str], target_version: int, canary_texts: Iterable[str] = ()
) -> Sample:
    """Sum the forwarded-request series for ``target_version`` and the stable
    servers' own requests over several stable servers' /metrics pages; the drift
    gauges from the new version's servers' pages (``canary_texts``)."""
    from prometheus_client.parser import text_string_to_metric_families

    target = str(target_version)
    requests = errors = pods = 0
    answered = failed = 0  # stable's own answers (2xx/5xx) and its 5xx
    fallbacks = 0  # forwarded requests the stable model answered instead
    compared = agreed = 0  # rows mirrored to the new version (analysis.minAgreement)
    buckets: dict[float, float] = {}
    own: dict[float, float] = {}
    for text in texts:
        pods += 1
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                if s.name == f"{REQUESTS}_total":
                    code = labels.get("code", "")
                    if labels.get("protocol") in FORWARDED_PROTOCOLS and code[:1] in ("2", "5"):
                        answered += int(s.value)
                        failed += int(s.value) if code.startswith("5") else 0
                elif s.name == f"{REQUEST_DURATION}_bucket":
                    if labels.get("protocol") in FORWARDED_PROTOCOLS:
                        le = float(labels["le"])
                        own[le] = own.get(le, 0.0) + float(s.value)
                elif labels.get("target_version") != target:
                    continue
                elif s.name == f"{FORWARDED}_total":
                    outcome = labels.get("outcome", "")
                    if outcome in JUDGED:
                        requests += int(s.value)
                    if outcome in FAILED:
                        errors += int(s.value)
                        fallbacks += int(s.value)
                elif s.name == f"{DURATION}_bucket":
                    le = float(labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + float(s.value)
                elif s.name == f"{COMPARED}_total":
                    compared += int(s.value)
                elif s.name == f"{AGREED}_total":
                    agreed += int(s.value)
    psi, feature, rows = _drift(canary_texts)
    return Sample(
        requests,
        errors,
        tuple(sorted(buckets.items())),
        pods,
        stable_requests=max(0, answered - fallbacks),
        stable_errors=failed,
        stable_buckets=tuple(sorted(own.items())),
        drift_psi=psi,
        drift_feature=feature,
        drift_rows=rows,
        compared=compared,
        agreed=agreed,
    )


def _drift(texts: Iterable[str]) -> tuple[float | None, str, float | None]:
    """(highest PSI, its feature, most rows in a window) over the new version's pages."""
    from prometheus_client.parser import text_string_to_metric_families

    psi: float | None = None
    feature = ""
    rows: float | None = None
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                value = float(s.value)
                if math.isnan(value):  # NaN never drifts
                    continue
                if s.name == DRIFT_PSI and (psi is None or value > psi):
                    psi, feature = value, s.labels.get("feature", "")
                elif s.name == DRIFT_ROWS:
                    rows = value if rows is None else max(rows, value)
    return psi, feature, rows

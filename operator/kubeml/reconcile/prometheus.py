"""A rollout step's Sample from Prometheus' HTTP API: the PromQL queries and the
reading of their answers. Pure; the HTTP is in controllers/prometheus_source.py.

Series are selected by ``namespace`` and by the server pods' ``kubeml.io/deployment``
label as scrape configs carry it (``kubeml_io_deployment``: what the ServiceMonitor
the operator writes adds with ``podTargetLabels``, and what the common labelmap of
pod labels in annotation-based pod scrape configs gives; see docs/gitops.md), then
by the servers' own ``version`` label: the stable version's servers for
the forwarded and own requests, the new version's for drift.

Counters are read as ``increase(...[W s])`` with W the seconds since the step's
weight took effect (``status.rollout.stepStartTime``), so a judgement covers the step
so far, as it does from the pods' own counters. Prometheus extrapolates increases
and needs two scrapes of a series inside the window: early in a step there is
little or nothing, which is inconclusive (fewer than minRequests), never a failure.
Latency histograms are read bucket by bucket and the p99 computed with the same
interpolation as ``histogram_quantile`` (analysis.quantile), so both sources
compute a check's value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..schedules import parse_time
from . import analysis

DEPLOYMENT_LABEL = "kubeml_io_deployment"
READY = "kubeml_model_ready"
PROTOCOLS = "|".join(analysis.FORWARDED_PROTOCOLS)

Vector = Sequence[Mapping[str, Any]]  # data.result of an instant query


@dataclass(frozen=True)
class Selection:
    """Which series a step's judgement reads."""

    namespace: str
    deployment: str
    stable_version: int
    target_version: int
    window_seconds: int
    drift: bool = False  # maxDriftPsi is set: read the new version's drift too
    agreement: bool = False  # minAgreement is set: read the mirrored rows too


def window_seconds(now: str, since: str | None) -> int:
    """Whole seconds from ``since`` (the step's start) to ``now``; 0 if unknown."""
    a, b = parse_time(now), parse_time(since) if since else None
    if not isinstance(a, datetime) or not isinstance(b, datetime):
        return 0
    return max(0, int((a - b).total_seconds()))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(namespace: str, deployment: str, **labels: str) -> str:
    """A PromQL series selector; a value starting with ``=~`` is a regex match."""
    parts = [f"namespace={_quote(namespace)}", f"{DEPLOYMENT_LABEL}={_quote(deployment)}"]
    for name, value in labels.items():
        if value.startswith("=~"):
            parts.append(f"{name}=~{_quote(value[2:])}")
        else:
            parts.append(f"{name}={_quote(value)}")
    return "{" + ",".join(parts) + "}"


def queries(sel: Selection) -> dict[str, str]:
    """The instant queries for one judgement, by name."""
    # Prometheus refuses a zero range; a window shorter than two scrapes finds nothing.
    w = f"[{max(1, sel.window_seconds)}s]"
    ns, dep = sel.namespace, sel.deployment
    stable = str(sel.stable_version)
    fwd = selector(ns, dep, version=stable, target_version=str(sel.target_version))
    own = selector(ns, dep, version=stable, protocol=f"=~{PROTOCOLS}")
    out = {
        "pods": f"count({READY}{selector(ns, dep, version=stable)})",
        "forwarded": f"sum by (outcome) (increase({analysis.FORWARDED}_total{fwd}{w}))",
        "forwardedBuckets": f"sum by (le) (increase({analysis.DURATION}_bucket{fwd}{w}))",
        "stableRequests": f"sum by (code) (increase({analysis.REQUESTS}_total{own}{w}))",
        "stableBuckets": f"sum by (le) (increase({analysis.REQUEST_DURATION}_bucket{own}{w}))",
    }
    if sel.agreement:
        for name, metric in (("compared", analysis.COMPARED), ("agreed", analysis.AGREED)):
            out[name] = f"sum(increase({metric}_total{fwd}{w}))"
    if sel.drift:
        new = selector(ns, dep, version=str(sel.target_version))
        out["driftPsi"] = f"max by (feature) ({analysis.DRIFT_PSI}{new})"
        out["driftRows"] = f"max({analysis.DRIFT_ROWS}{new})"
    return out


def _value(item: Mapping[str, Any]) -> float | None:
    try:
        v = float(item["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _by(vector: Vector, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in vector:
        v = _value(item)
        if v is not None:
            key = str((item.get("metric") or {}).get(label, ""))
            out[key] = out.get(key, 0.0) + v
    return out


def _buckets(vector: Vector) -> analysis.Buckets:
    """Cumulative buckets, made monotonic: each bucket's increase is extrapolated on
    its own, so a higher bound can come out a hair lower (histogram_quantile mends
    the same way)."""
    pairs = sorted((float(le), v) for le, v in _by(vector, "le").items() if le)
    out: list[tuple[float, float]] = []
    running = 0.0
    for le, v in pairs:
        running = max(running, v)
        out.append((le, running))
    return tuple(out)


def _scalar(vector: Vector) -> float | None:
    values = [v for item in vector if (v := _value(item)) is not None]
    return max(values) if values else None


def sample_from_results(
    sel: Selection, results: Mapping[str, Vector], where: str
) -> analysis.Sample:
    """A Sample from the answers to ``queries(sel)``; ``where`` names the Prometheus
    in messages."""
    pods = int(_scalar(results.get("pods", ())) or 0)
    if pods == 0:
        return analysis.Sample(
            0,
            0,
            source="prometheus",
            error=(
                f"Prometheus at {where} has no {READY} series of the stable servers "
                f"{selector(sel.namespace, sel.deployment, version=str(sel.stable_version))}"
                f": are the server pods scraped, with their kubeml.io/deployment label "
                f"as {DEPLOYMENT_LABEL}?"
            ),
        )
    outcomes = _by(results.get("forwarded", ()), "outcome")
    requests = sum(v for k, v in outcomes.items() if k in analysis.JUDGED)
    errors = sum(v for k, v in outcomes.items() if k in analysis.FAILED)
    codes = _by(results.get("stableRequests", ()), "code")
    answered = sum(v for k, v in codes.items() if k[:1] in ("2", "5"))
    failed = sum(v for k, v in codes.items() if k.startswith("5"))
    psi_by_feature = _by(results.get("driftPsi", ()), "feature")
    feature = max(sorted(psi_by_feature), key=psi_by_feature.__getitem__, default="")
    return analysis.Sample(
        round(requests),
        round(errors),
        _buckets(results.get("forwardedBuckets", ())),
        pods,
        stable_requests=max(0, round(answered - errors)),
        stable_errors=round(failed),
        stable_buckets=_buckets(results.get("stableBuckets", ())),
        drift_psi=psi_by_feature[feature] if feature else None,
        drift_feature=feature,
        drift_rows=_scalar(results.get("driftRows", ())),
        compared=round(_scalar(results.get("compared", ())) or 0),
        agreed=round(_scalar(results.get("agreed", ())) or 0),
        source="prometheus",
    )

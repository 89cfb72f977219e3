"""Comparing the TrainingRuns of a model side by side (`kubeml runs MODEL`).

Pure: TrainingRun objects in, rows and text out. Everything shown is read from the
runs' own spec and status, so the comparison needs nothing but read access to
TrainingRuns (no S3, no operator).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .api.estimators import DEFAULT_METRICS, ESTIMATORS, LOWER_IS_BETTER


@dataclass(frozen=True)
class RunRow:
    name: str
    state: str  # Succeeded's status and reason, e.g. "True Succeeded", "False GateFailed"
    key_metric: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    dataset: str = ""
    dataset_version: str | None = None
    duration_seconds: float | None = None
    gates_passed: int = 0
    gates_total: int = 0
    model_version: str | None = None
    trials: int | None = None
    parallelism: int | None = None
    created: str = ""

    @property
    def key_value(self) -> float | None:
        return self.metrics.get(self.key_metric) if self.key_metric else None

    def wire(self) -> dict[str, Any]:
        """The row as `-o json/yaml` shows it (camelCase, like the resources)."""
        return {
            "name": self.name,
            "state": self.state,
            "keyMetric": self.key_metric,
            "keyValue": self.key_value,
            "metrics": self.metrics,
            "params": self.params,
            "cvScore": self.cv_score,
            "dataset": self.dataset,
            "datasetVersion": self.dataset_version,
            "durationSeconds": self.duration_seconds,
            "gates": {"passed": self.gates_passed, "total": self.gates_total},
            "modelVersion": self.model_version,
            "trials": self.trials,
            "parallelism": self.parallelism,
            "created": self.created,
        }


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _key(spec: Mapping[str, Any]) -> str | None:
    listed = spec.get("metrics") or []
    if listed:
        return str(listed[0])
    est = ESTIMATORS.get(str((spec.get("estimator") or {}).get("name", "")))
    return DEFAULT_METRICS[est.task][0] if est else None


def row(run: Mapping[str, Any]) -> RunRow:
    meta, spec, st = run.get("metadata") or {}, run.get("spec") or {}, run.get("status") or {}
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == "Succeeded"), None)
    state = f"{cond.get('status')} {cond.get('reason')}" if cond else "Unknown Pending"
    started, finished = _time(st.get("startTime")), _time(st.get("completionTime"))
    gates = st.get("gates") or []
    trials = st.get("trials") or {}
    return RunRow(
        name=str(meta.get("name", "")),
        state=state,
        key_metric=_key(spec),
        metrics={str(k): float(v) for k, v in (st.get("metrics") or {}).items()},
        params=dict(st.get("bestParams") or (spec.get("estimator") or {}).get("params") or {}),
        cv_score=(trials.get("best") or [{}])[0].get("score") if trials else None,
        dataset=str((spec.get("datasetRef") or {}).get("name", "")),
        dataset_version=st.get("datasetVersion"),
        duration_seconds=(finished - started).total_seconds() if started and finished else None,
        gates_passed=sum(1 for g in gates if g.get("passed")),
        gates_total=len(gates),
        model_version=st.get("modelVersion"),
        trials=trials.get("count"),
        parallelism=trials.get("parallelism"),
        created=str(meta.get("creationTimestamp", "")),
    )


def compare(runs: Iterable[Mapping[str, Any]], model: str) -> list[RunRow]:
    """The model's runs, best key metric first (lower first for errors such as rmse);
    runs without a measurement follow, newest first."""
    rows = [row(r) for r in runs if (r.get("spec") or {}).get("model") == model]
    measured = [r for r in rows if r.key_value is not None]
    pending = sorted(
        (r for r in rows if r.key_value is None), key=lambda r: r.created, reverse=True
    )

    def rank(r: RunRow) -> tuple[float, str]:
        value = float(r.key_value)  # type: ignore[arg-type]  # measured rows only
        return (value if r.key_metric in LOWER_IS_BETTER else -value, r.name)

    return sorted(measured, key=rank) + pending


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _params(params: Mapping[str, Any], limit: int = 60) -> str:
    text = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(rows: Sequence[RunRow]) -> str:
    """kubectl-style columns: one metric column per metric any run measured."""
    metric_names: list[str] = []
    for r in rows:
        for m in [r.key_metric, *r.metrics]:
            if m and m not in metric_names and any(m in x.metrics for x in rows):
                metric_names.append(m)
    header = [
        "RUN",
        "SUCCEEDED",
        "REASON",
        *(m.upper() for m in metric_names),
        "CV",
        "GATES",
        "DATA-VERSION",
        "DURATION",
        "TRIALS",
        "PODS",
        "VERSION",
        "PARAMS",
    ]
    lines = [header]
    for r in rows:
        status, _, reason = r.state.partition(" ")
        lines.append(
            [
                r.name,
                status,
                reason,
                *(f"{r.metrics[m]:.4f}" if m in r.metrics else "-" for m in metric_names),
                f"{r.cv_score:.4f}" if r.cv_score is not None else "-",
                f"{r.gates_passed}/{r.gates_total}" if r.gates_total else "-",
                (r.dataset_version or "-")[:12],
                _duration(r.duration_seconds),
                str(r.trials) if r.trials is not None else "-",
                str(r.parallelism) if r.parallelism is not None else "-",
                r.model_version or "-",
                _params(r.params) or "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


__all__ = ["RunRow", "compare", "row", "table"]

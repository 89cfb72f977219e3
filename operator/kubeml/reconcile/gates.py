"""Quality gates: does a run's measured model deserve to become a version?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..api.estimators import LOWER_IS_BETTER
from ..api.trainingrun import Gates


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    value: float | None = None

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"gate": self.gate, "passed": self.passed}
        if self.value is not None:
            out["value"] = self.value
        return out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def evaluate(
    gates: Gates | None,
    metrics: Mapping[str, float],
    *,
    champion_name: str | None = None,
    champion_metrics: Mapping[str, float] | None = None,
    champion_error: str | None = None,
) -> list[Verdict]:
    """Every gate's verdict on the test metrics; an empty list means no gates."""
    if gates is None:
        return []
    out: list[Verdict] = []
    for t in gates.thresholds or []:
        value = metrics.get(t.metric)
        if t.min is not None:
            ok = value is not None and value >= t.min
            out.append(Verdict(f"{t.metric} >= {_fmt(t.min)}", ok, value))
        if t.max is not None:
            ok = value is not None and value <= t.max
            out.append(Verdict(f"{t.metric} <= {_fmt(t.max)}", ok, value))
    beat = gates.beat
    if beat is not None:
        value = metrics.get(beat.metric)
        lower = beat.metric in LOWER_IS_BETTER
        if champion_name is None:
            out.append(Verdict(f"beats {beat.alias} (no version holds it)", True, value))
        elif champion_error is not None or champion_metrics is None:
            why = champion_error or "its metrics are unknown"
            out.append(Verdict(f"beats {beat.alias} {champion_name}: {why}", False, value))
        else:
            theirs = champion_metrics.get(beat.metric)
            if theirs is None or value is None:
                out.append(
                    Verdict(f"beats {beat.alias} {champion_name} on {beat.metric}", False, value)
                )
            else:
                need = theirs - beat.min_improvement if lower else theirs + beat.min_improvement
                ok = value <= need if lower else value >= need
                op = "<=" if lower else ">="
                out.append(
                    Verdict(
                        f"{beat.metric} {op} {_fmt(need)} ({beat.alias} {champion_name}: "
                        f"{_fmt(theirs)})",
                        ok,
                        value,
                    )
                )
    return out


def summary(verdicts: list[Verdict]) -> str:
    failed = [v for v in verdicts if not v.passed]
    if not verdicts:
        return "no gates"
    if not failed:
        return f"all {len(verdicts)} gates passed"
    parts = [f"{v.gate} (got {_fmt(v.value)})" if v.value is not None else v.gate for v in failed]
    return f"{len(failed)} of {len(verdicts)} gates failed: " + "; ".join(parts)

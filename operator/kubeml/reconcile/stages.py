"""Where a pipeline's time went: the stages a Job's result reports, after the one
stage only the operator can see (the wait from the Job's creation to its pod's start).

Names are checked against a fixed list per kind: they become metric labels, and a
result is written by a pod, so it must not be able to mint label values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..api.base import MAX_STAGES
from ..schedules import parse_time
from .outcome import Finished

POD = "pod"
STAGES: dict[str, tuple[str, ...]] = {
    "Dataset": (POD, "fetch", "validate", "write", "upload"),
    "TrainingRun": (POD, "fetch", "search", "fit", "evaluate", "upload", "report"),
}


def seconds_between(start: str | None, end: str | None) -> float | None:
    """end - start in seconds (never negative: clocks of a node and the control plane
    may disagree by a little), or None if either is not a timestamp."""
    a, b = parse_time(start or ""), parse_time(end or "")
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def from_result(
    kind: str, doc: Mapping[str, Any], job: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The stages to record in status: the pod's wait, then the result's own, in order."""
    known = STAGES[kind]
    created = ((job or {}).get("metadata") or {}).get("creationTimestamp")
    started = doc.get("startedAt")
    waited = seconds_between(created, started if isinstance(started, str) else None)
    out = [] if waited is None else [{"name": POD, "seconds": round(waited, 3)}]
    reported = doc.get("stages")
    for stage in reported if isinstance(reported, list) else []:
        if not isinstance(stage, Mapping):
            continue
        name, seconds = stage.get("name"), stage.get("seconds")
        if name not in known or name == POD or not isinstance(seconds, int | float):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            out.append({"name": name, "seconds": round(float(seconds), 3)})
    return out[:MAX_STAGES]


def finished(
    kind: str,
    succeeded: bool,
    *,
    started: str | None,
    now: str,
    stages: list[dict[str, Any]] | None = None,
) -> Finished:
    """The fact a decision reports when an object reaches its outcome."""
    return Finished(
        kind,
        succeeded,
        seconds_between(started, now),
        tuple((str(s["name"]), float(s["seconds"])) for s in stages or []),
    )

"""Where a Job's time goes: seconds per stage, and when its process started.

The operator adds the one stage a pod cannot measure itself, the wait for the pod
(from the Job's creation to ``startedAt``), and records the list in the object's
status and as histograms.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


class Stopwatch:
    """Consecutive stages: each ``lap`` ends the stage running since the last one."""

    def __init__(self) -> None:
        self._clock = time.perf_counter()
        self.stages: list[tuple[str, float]] = []

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        seconds = now - self._clock
        self.stages.append((name, seconds))
        self._clock = now
        return seconds


def process_age() -> float | None:
    """Seconds since this process started (interpreter start and imports, so far), from
    /proc; None where there is no /proc."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    # Fields after the command name (which may hold spaces); starttime is field 22.
    started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, uptime - started)


def started_at(now: datetime | None = None) -> str:
    """When this process started, RFC 3339 in UTC with milliseconds (now, where /proc
    cannot say: the wait for the pod then includes the imports)."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=process_age() or 0.0)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def report(result: dict[str, Any], stages: Iterable[tuple[str, float]]) -> dict[str, Any]:
    """The result manifest with the stages measured and the process's start."""
    wire = [{"name": name, "seconds": round(seconds, 3)} for name, seconds in stages]
    return {**result, "startedAt": started_at(), "stages": wire}

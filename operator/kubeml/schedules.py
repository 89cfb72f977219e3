"""When scheduled work is due: cron schedules and on-demand requests, as ticks.

A tick is the RFC 3339 time (UTC, seconds) of the latest occasion at or before
now. Work keyed by its tick (a refresh Job's name, a retraining request) runs
once per occasion, however often a level-based reconcile looks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

log = logging.getLogger("kubeml")

# cronsim speaks five-field cron only; the CRDs also allow the usual macros.
CRON_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None if it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latest_tick(schedule: str | None, since: str, now: datetime) -> str:
    """The latest occasion of a cron schedule after ``since`` and at or before now."""
    if not schedule:
        return ""
    start = parse_time(since)
    expr = CRON_MACROS.get(schedule.strip(), schedule)
    # Walk backwards from now: one step, whatever the schedule's frequency.
    try:
        latest = next(iter(CronSim(expr, now.replace(second=0, microsecond=0), reverse=True)))
    except (CronSimError, StopIteration):
        # The CRD's pattern is loose; an unparseable schedule means no occasion.
        log.warning("ignoring unparseable schedule %r", schedule)
        return ""
    if start is not None and latest <= start:
        return ""
    return format_time(latest)


def requested_tick(value: str | None, now: datetime) -> str:
    """An on-demand request (an annotation holding a time), normalised; empty when
    absent, unparseable or in the future (a clock-skewed request waits for now)."""
    if not value:
        return ""
    moment = parse_time(value)
    if moment is None or moment > now:
        return ""
    return format_time(moment)

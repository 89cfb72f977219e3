"""When scheduled work is due: cron schedules and on-demand requests, as ticks.

A tick is the RFC 3339 time (UTC, seconds) of the latest occasion at or before
now. Work keyed by its tick (a refresh Job's name, a retraining request) runs
once per occasion, however often a reconcile looks; ``next_tick`` tells the
reconcile when to look again, so an occasion is acted on when it comes.

The grammar is ``kubeml.api.schedule``'s: admission checks it, ``parse`` checks
the same and hands the expression to cronsim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

from .api.schedule import CRON_PATTERN, FIELDS, MACROS

_GRAMMAR = re.compile(CRON_PATTERN)
_FIELDS = {name: re.compile(f"(?i)^({pattern})$") for name, pattern in FIELDS.items()}


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    text: str
    expression: str  # five fields, macros expanded
    never: str = ""  # why it never fires (a day no listed month has), if it does not

    def latest(self, now: datetime) -> datetime | None:
        """The latest occasion at or before ``now`` (to the second)."""
        if self.never:
            return None
        # cronsim's reverse walk excludes its start: start one second later.
        start = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        return next(iter(CronSim(self.expression, start, reverse=True)))

    def next(self, now: datetime) -> datetime | None:
        """The first occasion after ``now``."""
        if self.never:
            return None
        return next(iter(CronSim(self.expression, now.astimezone(UTC))))


def parse(text: str) -> Schedule:
    """The schedule ``text`` stands for, or ScheduleError saying what is wrong."""
    stripped = text.strip()
    if not _GRAMMAR.match(stripped):
        raise ScheduleError(_syntax_error(text))
    expression = MACROS.get(stripped.lower(), stripped)
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        # The grammar leaves cronsim one objection: a day of month that none of the
        # listed months has. Cron accepts that and never runs it; so do we.
        return Schedule(
            text, expression, f"schedule {text!r} never fires: no listed month has that day"
        )
    return Schedule(text, expression)


def _syntax_error(text: str) -> str:
    fields = text.split()
    if len(fields) != 5 or text.strip().startswith("@"):
        return (
            f"schedule {text!r} is neither five cron fields (minute hour day-of-month month "
            "day-of-week, separated by spaces) nor one of " + ", ".join(MACROS)
        )
    for (name, pattern), value in zip(_FIELDS.items(), fields, strict=True):
        if not pattern.match(value):
            return f"schedule {text!r}: {name} {value!r} is not valid"
    return f"schedule {text!r}: fields must be separated by spaces"


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None if it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Due:
    """Where a schedule stands: its latest occasion after ``since`` (empty if none),
    seconds until the next one, why it cannot be used (empty if it can), and why it
    never fires (empty if it does)."""

    tick: str = ""
    next_in: float | None = None
    error: str = ""
    never: str = ""


def due(schedule: str | None, since: str, now: datetime) -> Due:
    if not schedule:
        return Due()
    try:
        parsed = parse(schedule)
    except ScheduleError as err:
        return Due(error=str(err))
    start = parse_time(since)
    latest, upcoming = parsed.latest(now), parsed.next(now)
    if latest is None or upcoming is None:
        return Due(never=parsed.never)
    tick = "" if start is not None and latest <= start else format_time(latest)
    return Due(tick, (upcoming - now).total_seconds())


def latest_tick(schedule: str | None, since: str, now: datetime) -> str:
    """The latest occasion of a schedule after ``since`` and at or before now."""
    return due(schedule, since, now).tick


def requested_tick(value: str | None, now: datetime) -> str:
    """An on-demand request (an annotation holding a time), normalised; empty when
    absent, unparseable or in the future (a clock-skewed request waits for now)."""
    if not value:
        return ""
    moment = parse_time(value)
    if moment is None or moment > now:
        return ""
    return format_time(moment)

"""The cron grammar KubeML accepts: one regular expression, for admission and Python.

Five fields separated by spaces, UTC: minute, hour, day of month, month (1-12 or
JAN-DEC), day of week (0-7 or SUN-SAT; 0 and 7 are Sunday). Each field is a list
of ``*``, a value or a range ``a-b`` (a <= b), each optionally stepped ``/n``
(1 <= n <= 999). Single-digit values may carry one leading zero. Macros: @hourly,
@daily (@midnight), @weekly, @monthly, @yearly (@annually).

The scheduler (``kubeml.schedules``) accepts exactly what this pattern matches, so
admission and the scheduler agree by construction; a table of cases checks both
against the real apiserver. Ordered ranges are spelled out in the pattern (the
apiserver's CEL cost budget is far too small to compare numbers in a cron string).
A day that no listed month has (``0 0 30 2 *``) is valid cron that never fires.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _numbers(lo: int, hi: int) -> list[str]:
    """Regex alternatives matching the integers lo..hi (one leading zero allowed below 10)."""
    out: list[str] = []
    if lo <= 9:
        top = min(hi, 9)
        out.append(f"0?[{lo}-{top}]" if top > lo else f"0?{lo}")
    for tens in range(max(lo, 10) // 10, hi // 10 + 1):
        first, last = max(lo, tens * 10) % 10, min(hi, tens * 10 + 9) % 10
        out.append(f"{tens}[{first}-{last}]" if last > first else f"{tens}{first}")
    return out


def _field(lo: int, hi: int, names: tuple[str, ...] = (), first_name: int = 0) -> str:
    """A comma-separated list of terms over lo..hi (and names standing for first_name..):
    ``*``, a value, or an ordered range, each optionally stepped."""

    def from_(a: int) -> str:  # every token standing for a value >= a
        named = [n for i, n in enumerate(names) if first_name + i >= a]
        return "|".join([*_numbers(a, hi), *named])

    def exactly(v: int) -> str:
        named = [n for i, n in enumerate(names) if first_name + i == v]
        return "|".join([*_numbers(v, v), *named])

    ranges = "|".join(f"({exactly(a)})-({from_(a)})" for a in range(lo, hi + 1))
    term = rf"(\*|{ranges}|{from_(lo)})(/[1-9][0-9]{{0,2}})?"
    return rf"{term}(,{term})*"


FIELDS = {
    "minute": _field(0, 59),
    "hour": _field(0, 23),
    "day-of-month": _field(1, 31),
    "month": _field(1, 12, MONTH_NAMES, 1),
    "day-of-week": _field(0, 7, DAY_NAMES, 0),
}
CRON_PATTERN = (
    r"(?i)^(@(hourly|daily|midnight|weekly|monthly|yearly|annually)|"
    + " +".join(f"({f})" for f in FIELDS.values())
    + ")$"
)


def _check(value: str) -> str:
    from ..schedules import ScheduleError, parse

    try:
        parse(value)
    except ScheduleError as err:
        raise ValueError(str(err)) from err
    return value


Schedule = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=CRON_PATTERN),
    AfterValidator(_check),
]
"""A cron schedule (five fields, UTC) or a macro such as @daily."""

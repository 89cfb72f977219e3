"""Random cron schedules near the grammar's edges, with the verdict cron's rules give.

Each field is 1-2 terms: *, a value or a range (a few values outside the field's
bounds, names for months and days), sometimes stepped (including 0 and 1000).
"""

from __future__ import annotations

import random

from kubeml.api.schedule import DAY_NAMES, MONTH_NAMES

FIELDS = (
    (0, 59, (), 0),
    (0, 23, (), 0),
    (1, 31, (), 0),
    (1, 12, MONTH_NAMES, 1),
    (0, 7, DAY_NAMES, 0),
)


def _token(
    rng: random.Random, lo: int, hi: int, names: tuple[str, ...], first: int
) -> tuple[str, int]:
    v = rng.randint(lo - 2, hi + 2)
    if names and rng.random() < 0.3 and 0 <= v - first < len(names):
        name = names[v - first]
        return (name.lower() if rng.random() < 0.3 else name), v
    return str(v), v


def schedule(rng: random.Random) -> tuple[str, bool]:
    """(a schedule, whether cron's rules make it valid)."""
    fields, valid = [], True
    for lo, hi, names, first in FIELDS:
        terms = []
        for _ in range(rng.randint(1, 2)):
            kind = rng.random()
            if kind < 0.2:
                term, ok = "*", True
            elif kind < 0.6:
                term, v = _token(rng, lo, hi, names, first)
                ok = lo <= v <= hi
            else:
                (a, va), (b, vb) = (
                    _token(rng, lo, hi, names, first),
                    _token(rng, lo, hi, names, first),
                )
                term, ok = f"{a}-{b}", lo <= va <= hi and lo <= vb <= hi and va <= vb
            if rng.random() < 0.3:
                step = rng.choice([0, 1, 2, 15, 999, 1000])
                term, ok = f"{term}/{step}", ok and 1 <= step <= 999
            terms.append(term)
            valid = valid and ok
        fields.append(",".join(terms))
    return " ".join(fields), valid

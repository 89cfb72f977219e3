"""Retention of captured requests and feedback: which hour partitions have expired.

The servers write ``<root>model=<m>/version=<n>/hour=<YYYY-MM-DDTHH>/<file>.parquet``
under a Deployment's capture and feedback roots (storage/layout.py). A partition
holds records of one hour, so it expires when that whole hour is older than the
retention: an hour starting at H is deleted once ``H + 1h <= now - retention``.
Only keys of exactly that shape under the given roots are ever chosen: an object
someone else put beside them, or anything outside the roots, is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_PARTITION = re.compile(
    r"^model=[^/]+/version=[0-9]+/hour=(?P<hour>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})/[^/]+$"
)
# A sweep deletes at most this many objects; the rest wait for the next one (soon).
MAX_DELETES = 1000


@dataclass(frozen=True)
class Sweep:
    delete: list[str]  # keys, oldest hour first
    more: bool  # expired keys left for the next sweep (MAX_DELETES reached)


def partition_hour(key: str, root: str) -> datetime | None:
    """The hour a key's partition holds, or None when the key is not a partition
    file directly under ``root``."""
    if not root or not key.startswith(root):
        return None
    m = _PARTITION.match(key[len(root) :])
    if m is None:
        return None
    try:
        return datetime.strptime(m["hour"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:  # hour=2026-13-40T99
        return None


def expired(
    keys: Iterable[str],
    roots: Sequence[str],
    now: datetime,
    retention_hours: int,
    limit: int = MAX_DELETES,
) -> Sweep:
    """The keys under ``roots`` whose hour partition ended ``retention_hours`` ago."""
    cutoff = now - timedelta(hours=retention_hours)
    found: list[tuple[datetime, str]] = []
    for key in keys:
        for root in roots:
            hour = partition_hour(key, root)
            if hour is not None and hour + timedelta(hours=1) <= cutoff:
                found.append((hour, key))
                break
    found.sort()
    return Sweep([key for _, key in found[:limit]], len(found) > limit)


def due(last: datetime | None, now: datetime, every_seconds: float) -> bool:
    return last is None or (now - last).total_seconds() >= every_seconds

"""Which capture and feedback partitions retention removes (pure decision)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubeml.api.deployment import retention_hours
from kubeml.reconcile.retention import due, expired, partition_hour

CAP = "namespaces/team-a/captures/iris/"
FB = "namespaces/team-a/feedback/iris/"
NOW = datetime(2026, 12, 6, 8, 30, tzinfo=UTC)


def key(root: str, hour: str, version: int = 1) -> str:
    return f"{root}model=iris/version={version}/hour={hour}/pod-a-20261206T000000-000001.parquet"


def test_an_hour_expires_once_all_of_it_is_older_than_the_retention() -> None:
    keys = [
        key(CAP, "2026-12-05T06"),  # ended 07:00 yesterday: 25.5 h ago
        key(CAP, "2026-12-05T07"),  # ended 08:00 yesterday: 24.5 h ago
        key(CAP, "2026-12-05T08"),  # ends 09:00 yesterday: part of it is 24 h old only
        key(FB, "2026-12-04T23", version=2),
        key(FB, "2026-12-06T08"),
    ]
    sweep = expired(keys, [CAP, FB], NOW, 24)
    assert sweep.delete == [keys[3], keys[0], keys[1]]  # oldest first
    assert not sweep.more


def test_nothing_outside_the_roots_or_not_shaped_like_a_partition_is_chosen() -> None:
    old = "2020-01-01T00"
    keys = [
        key("namespaces/team-a/captures/iris-2/", old),  # another Deployment
        key("namespaces/team-b/captures/iris/", old),  # another namespace
        f"{CAP}notes.txt",
        f"{CAP}model=iris/version=1/hour={old}/nested/file.parquet",
        f"{CAP}model=iris/version=x/hour={old}/f.parquet",
        f"{CAP}model=iris/version=1/hour=2020-13-45T99/f.parquet",
        f"{CAP}model=iris/version=1/day=2020-01-01/f.parquet",
    ]
    assert expired(keys, [CAP, FB], NOW, 1).delete == []
    assert partition_hour(key(CAP, old), "") is None


def test_a_long_backlog_is_deleted_in_bounded_sweeps() -> None:
    keys = [key(CAP, f"2026-11-{d:02d}T{h:02d}") for d in range(1, 11) for h in range(24)]
    sweep = expired(keys, [CAP], NOW, 1, limit=100)
    assert len(sweep.delete) == 100 and sweep.more
    assert sweep.delete == sorted(keys)[:100]


@pytest.mark.parametrize(("value", "hours"), [("1h", 1), ("720h", 720), ("30d", 720)])
def test_retention_periods(value: str, hours: int) -> None:
    assert retention_hours(value) == hours


def test_sweeps_are_due_every_interval() -> None:
    assert due(None, NOW, 600)
    assert not due(datetime(2026, 12, 6, 8, 25, tzinfo=UTC), NOW, 600)
    assert due(datetime(2026, 12, 6, 8, 20, tzinfo=UTC), NOW, 600)

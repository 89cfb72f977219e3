"""Leader election decisions: who may write the Lease, and when a leader stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubeml.driver.election import (
    LEASE_SECONDS,
    RENEW_DEADLINE_SECONDS,
    LeaseView,
    decide,
    release,
    still_leading,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def held(by: str, ago: float, transitions: int = 3) -> LeaseView:
    return LeaseView(
        exists=True,
        holder=by,
        renewed=NOW - timedelta(seconds=ago),
        transitions=transitions,
        acquired=NOW - timedelta(minutes=5),
    )


def test_the_first_candidate_creates_the_lease() -> None:
    d = decide(LeaseView(exists=False), "a", NOW)
    assert d.action == "create" and d.spec is not None
    assert d.spec["holderIdentity"] == "a" and d.spec["leaseTransitions"] == 0
    assert d.spec["leaseDurationSeconds"] == LEASE_SECONDS


def test_the_holder_renews_and_keeps_its_acquire_time() -> None:
    d = decide(held("a", ago=2), "a", NOW)
    assert d.action == "renew" and d.spec is not None
    assert d.spec["renewTime"] == "2026-11-28T12:00:00.000000Z"
    assert d.spec["acquireTime"] == "2026-11-28T11:55:00.000000Z"
    assert d.spec["leaseTransitions"] == 3


def test_a_live_lease_of_another_is_left_alone() -> None:
    assert decide(held("a", ago=LEASE_SECONDS - 1), "b", NOW).action == "wait"


def test_an_expired_or_released_lease_is_taken_with_one_more_transition() -> None:
    for lease in (held("a", ago=LEASE_SECONDS + 1), held("", ago=1)):
        d = decide(lease, "b", NOW)
        assert d.action == "take" and d.spec is not None
        assert d.spec["holderIdentity"] == "b" and d.spec["leaseTransitions"] == 4


def test_only_the_holder_releases() -> None:
    spec = release(held("a", ago=1), "a", NOW)
    assert spec is not None and spec["holderIdentity"] == ""
    assert release(held("a", ago=1), "b", NOW) is None
    assert release(LeaseView(exists=False), "a", NOW) is None


def test_a_leader_stops_before_its_lease_can_expire() -> None:
    assert still_leading(NOW - timedelta(seconds=RENEW_DEADLINE_SECONDS - 1), NOW)
    assert not still_leading(NOW - timedelta(seconds=RENEW_DEADLINE_SECONDS + 1), NOW)
    assert not still_leading(None, NOW)
    # The deadline is shorter than the lease: nobody takes it while the old leader acts.
    assert RENEW_DEADLINE_SECONDS < LEASE_SECONDS

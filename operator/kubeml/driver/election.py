"""Leader election over a coordination.k8s.io/v1 Lease: one active operator among several.

The decision is pure (what the Lease says, who we are, the time -> what to write);
``kubeml.k8s.lease`` reads and writes the Lease, conditionally on its
resourceVersion, so two candidates can never both win one round. The timings are
controller-runtime's: a lease lasts 15 s, the holder renews every 2 s and gives up
leading if it could not renew for 10 s, before anyone else may take it.

Idempotent, conditional reconciles remain the real guard: a deposed leader that
still runs a reconcile finds its writes conflicting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

LEASE_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_SECONDS = 2.0

Action = Literal["create", "renew", "take", "wait"]


@dataclass(frozen=True)
class LeaseView:
    """A Lease as read (``exists`` False: there is none yet)."""

    exists: bool
    holder: str = ""
    renewed: datetime | None = None
    duration: int = LEASE_SECONDS
    transitions: int = 0
    acquired: datetime | None = None

    def expired(self, now: datetime) -> bool:
        if not self.holder or self.renewed is None:
            return True
        return self.renewed + timedelta(seconds=self.duration) < now


@dataclass(frozen=True)
class Decision:
    action: Action
    spec: dict[str, Any] | None = None  # the Lease spec to write


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide(lease: LeaseView, me: str, now: datetime) -> Decision:
    """What ``me`` should write now to lead (or keep leading)."""
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": _micro(now),
    }
    if not lease.exists:
        return Decision("create", {**spec, "acquireTime": _micro(now), "leaseTransitions": 0})
    if lease.holder == me:
        acquired = lease.acquired or now
        return Decision(
            "renew",
            {**spec, "acquireTime": _micro(acquired), "leaseTransitions": lease.transitions},
        )
    if lease.expired(now):
        return Decision(
            "take",
            {**spec, "acquireTime": _micro(now), "leaseTransitions": lease.transitions + 1},
        )
    return Decision("wait")


def release(lease: LeaseView, me: str, now: datetime) -> dict[str, Any] | None:
    """The spec that hands the Lease back at shutdown (None: not ours to give)."""
    if not lease.exists or lease.holder != me:
        return None
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "renewTime": _micro(now),
        "leaseTransitions": lease.transitions,
    }


def still_leading(last_renewal: datetime | None, now: datetime) -> bool:
    """A leader that could not renew for the renew deadline stops acting, before the
    lease can expire and another take over."""
    return last_renewal is not None and now - last_renewal < timedelta(
        seconds=RENEW_DEADLINE_SECONDS
    )

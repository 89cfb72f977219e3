"""When the supervisor restarts a component that exited (pure: times are passed in).

A component that dies is started again after a delay that doubles with each consecutive
failure (1 s, 2 s, 4 s ... capped at 30 s), like the kubelet's CrashLoopBackOff. Once it has
run for ``healthy_after`` seconds its next failure counts as the first again, so a component
that crashes once a day is always restarted at once, and one that cannot start at all is
retried at the cap instead of hammering the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_S = 1.0
FACTOR = 2.0
CAP_S = 30.0
HEALTHY_AFTER_S = 60.0


@dataclass(frozen=True)
class Policy:
    initial: float = INITIAL_S
    factor: float = FACTOR
    cap: float = CAP_S
    healthy_after: float = HEALTHY_AFTER_S

    def delay(self, failures: int) -> float:
        """The wait before the restart that follows the ``failures``-th consecutive exit."""
        if failures <= 0:
            return 0.0
        return min(self.initial * self.factor ** (failures - 1), self.cap)


@dataclass(frozen=True)
class Track:
    """What the supervisor remembers about one component between its runs."""

    started_at: float
    restarts: int = 0
    # Consecutive exits, each after a run shorter than ``healthy_after``.
    failures: int = 0
    last_exit_code: int | None = None
    # Set while the component is down and waiting for its restart.
    restart_at: float | None = None


def on_exit(track: Track, code: int, now: float, policy: Policy = Policy()) -> Track:
    """The component exited with ``code`` at ``now``: schedule its restart."""
    ran = now - track.started_at
    failures = 1 if ran >= policy.healthy_after else track.failures + 1
    return Track(
        started_at=track.started_at,
        restarts=track.restarts,
        failures=failures,
        last_exit_code=code,
        restart_at=now + policy.delay(failures),
    )


def due(track: Track, now: float) -> bool:
    return track.restart_at is not None and now >= track.restart_at


def on_restart(track: Track, now: float) -> Track:
    """The component was started again at ``now``."""
    return Track(
        started_at=now,
        restarts=track.restarts + 1,
        failures=track.failures,
        last_exit_code=track.last_exit_code,
        restart_at=None,
    )

"""The supervisor's restart decisions: exponential back-off, capped, reset after a healthy run."""

from __future__ import annotations

from kubeml_local.restarts import Policy, Track, due, on_exit, on_restart

POLICY = Policy(initial=1.0, factor=2.0, cap=30.0, healthy_after=60.0)


def crash_loop(exits: int) -> list[float]:
    """Delays of a component that dies 0.5 s after every start."""
    track, now, delays = Track(started_at=0.0), 0.0, []
    for _ in range(exits):
        now += 0.5
        track = on_exit(track, 1, now, POLICY)
        assert track.restart_at is not None
        delays.append(track.restart_at - now)
        now = track.restart_at
        track = on_restart(track, now)
    return delays


def test_delays_double_up_to_the_cap() -> None:
    assert crash_loop(8) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_healthy_run_resets_the_back_off() -> None:
    track = Track(started_at=0.0)
    for t in (1.0, 4.0, 10.0):  # three quick failures
        track = on_restart(on_exit(track, 1, t, POLICY), t + 0.1)
    assert track.failures == 3 and track.restarts == 3
    exited = on_exit(track, 137, track.started_at + 61.0, POLICY)
    assert exited.failures == 1
    assert exited.restart_at == track.started_at + 61.0 + 1.0
    assert exited.last_exit_code == 137


def test_due_only_once_the_delay_has_passed() -> None:
    track = on_exit(Track(started_at=0.0), 1, 5.0, POLICY)
    assert not due(track, 5.5)
    assert due(track, 6.0)
    running = on_restart(track, 6.0)
    assert not due(running, 100.0)
    assert running.restarts == 1 and running.started_at == 6.0


def test_delay_of_no_failure_is_zero() -> None:
    assert POLICY.delay(0) == 0.0
    assert Policy().delay(1) == 1.0

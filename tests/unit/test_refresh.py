"""Refresh schedules: which scheduled tick a Dataset's preparation belongs to."""

from __future__ import annotations

from datetime import UTC, datetime

from kubeml.controllers.dataset import refresh_tick

CREATED = "2026-11-26T10:00:00Z"


def test_no_schedule_means_no_tick() -> None:
    assert refresh_tick({}, CREATED, datetime(2026, 11, 27, tzinfo=UTC)) == ""


def test_no_tick_before_the_first_scheduled_time() -> None:
    spec = {"refresh": {"schedule": "0 3 * * *"}}
    assert refresh_tick(spec, CREATED, datetime(2026, 11, 27, 2, 59, tzinfo=UTC)) == ""


def test_the_latest_tick_at_or_before_now() -> None:
    spec = {"refresh": {"schedule": "0 3 * * *"}}
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert refresh_tick(spec, CREATED, now) == "2026-11-29T03:00:00Z"


def test_macros_are_understood() -> None:
    spec = {"refresh": {"schedule": "@hourly"}}
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    assert refresh_tick(spec, CREATED, now) == "2026-11-26T12:00:00Z"

"""Schedules and on-demand requests: which occasion a piece of work belongs to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubeml.controllers.dataset import refresh_tick
from kubeml.schedules import latest_tick, requested_tick

CREATED = "2026-11-26T10:00:00Z"


def dataset(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"creationTimestamp": CREATED, "annotations": annotations or {}}
    return {"metadata": meta, "spec": spec}


def test_no_schedule_means_no_tick() -> None:
    assert latest_tick(None, CREATED, datetime(2026, 11, 27, tzinfo=UTC)) == ""


def test_no_tick_before_the_first_scheduled_time() -> None:
    assert latest_tick("0 3 * * *", CREATED, datetime(2026, 11, 27, 2, 59, tzinfo=UTC)) == ""


def test_the_latest_tick_at_or_before_now() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert latest_tick("0 3 * * *", CREATED, now) == "2026-11-29T03:00:00Z"


def test_macros_are_understood() -> None:
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    assert latest_tick("@hourly", CREATED, now) == "2026-11-26T12:00:00Z"


def test_an_unparseable_schedule_has_no_tick() -> None:
    assert latest_tick("99 99 * * *", CREATED, datetime(2026, 11, 27, tzinfo=UTC)) == ""


def test_a_request_is_normalised_and_future_ones_wait() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert requested_tick("2026-11-26T11:59:30+00:00", now) == "2026-11-26T11:59:30Z"
    assert requested_tick("2026-11-26T12:00:01Z", now) == ""
    assert requested_tick("yesterday", now) == ""
    assert requested_tick("2026-11-26T11:00:00", now) == ""  # no zone: ambiguous
    assert requested_tick(None, now) == ""


def test_dataset_refresh_takes_the_newer_of_schedule_and_request() -> None:
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    hourly = {"refresh": {"schedule": "@hourly"}}
    assert refresh_tick(dataset(hourly), now) == "2026-11-26T12:00:00Z"
    asked = {"kubeml.io/refresh-requested": "2026-11-26T12:10:00Z"}
    assert refresh_tick(dataset(hourly, asked), now) == "2026-11-26T12:10:00Z"
    assert refresh_tick(dataset({}, asked), now) == "2026-11-26T12:10:00Z"
    old = {"kubeml.io/refresh-requested": "2026-11-26T11:10:00Z"}
    assert refresh_tick(dataset(hourly, old), now) == "2026-11-26T12:00:00Z"

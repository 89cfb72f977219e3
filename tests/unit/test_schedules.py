"""Schedules and on-demand requests: which occasion a piece of work belongs to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubeml.reconcile.dataset import target
from kubeml.schedules import ScheduleError, due, latest_tick, parse, requested_tick

CREATED = "2026-11-26T10:00:00Z"


def dataset(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "d",
        "creationTimestamp": CREATED,
        "annotations": annotations or {},
    }
    return {"metadata": meta, "spec": spec}


def refresh_tick(body: dict[str, Any], now: datetime) -> str:
    return target(body, now).tick


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


def test_an_unparseable_schedule_has_no_tick_and_says_why() -> None:
    at = datetime(2026, 11, 27, tzinfo=UTC)
    assert latest_tick("99 99 * * *", CREATED, at) == ""
    assert "minute '99' is not valid" in due("99 99 * * *", CREATED, at).error


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


def test_every_minute_is_due_on_the_minute_not_a_minute_late() -> None:
    # At 10:05:30 the 10:05 occasion has come; the next one is 30 s away.
    at = datetime(2026, 11, 28, 10, 5, 30, tzinfo=UTC)
    assert due("* * * * *", CREATED, at).tick == "2026-11-28T10:05:00Z"
    assert due("* * * * *", CREATED, at).next_in == 30.0
    # Exactly on the minute, that minute's occasion is due.
    on = datetime(2026, 11, 28, 10, 5, 0, tzinfo=UTC)
    assert due("* * * * *", CREATED, on).tick == "2026-11-28T10:05:00Z"
    assert due("0 3 * * *", CREATED, on).next_in == (16 * 3600 + 55 * 60)


@pytest.mark.parametrize(
    "schedule",
    [
        "@dailyfoo",
        "61 25 * * *",
        "*/0 * * * *",
        "a b c d e f g",
        "1-0 * * * *",
        "0 0 * * * *",
        "0 0 L * *",
        "0 0 ? * *",
        "0 0 * * 1#2",
        "0\t0 * * *",
    ],
)
def test_what_the_scheduler_refuses_is_an_error_naming_the_schedule(schedule: str) -> None:
    with pytest.raises(ScheduleError, match="schedule"):
        parse(schedule)
    assert due(schedule, CREATED, datetime(2026, 11, 28, tzinfo=UTC)).error


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *",
        "@daily",
        "@ANNUALLY",
        "0 0 * * MON-FRI",
        "*/15 0-6/2 1,15 jan-jun/2 sun",
        "0 0 30 1,2 *",
    ],
)
def test_what_the_scheduler_accepts(schedule: str) -> None:
    parse(schedule)


def test_a_day_no_listed_month_has_is_valid_cron_that_never_fires() -> None:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    never = due("0 0 30 2 *", CREATED, at)
    assert (never.tick, never.next_in, never.error) == ("", None, "")
    assert "never fires" in never.never


def test_the_schedule_table_agrees_with_the_scheduler_and_pydantic() -> None:
    from pydantic import ValidationError

    from kubeml.api import Dataset
    from tests.support.cases import ROOT, load_yaml

    table = load_yaml(ROOT / "tests" / "cases" / "schedules.yaml")
    base = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    at = datetime(2026, 11, 28, tzinfo=UTC)

    def admitted(schedule: str) -> bool:
        doc = {**base, "spec": {**base["spec"], "refresh": {"schedule": schedule}}}
        try:
            Dataset.model_validate(doc)
        except ValidationError as err:
            return "schedule" not in str(err)  # a rejection names the field
        return True

    for schedule in table["valid"]:
        assert admitted(schedule) and due(schedule, CREATED, at).next_in, schedule
    for schedule in table["never"]:
        assert admitted(schedule) and due(schedule, CREATED, at).never, schedule
    for schedule in table["invalid"]:
        assert not admitted(schedule), schedule
        with pytest.raises(ScheduleError):
            parse(schedule)


def test_random_schedules_are_admitted_exactly_when_cron_rules_allow() -> None:
    import random

    from tests.support.cron import schedule

    rng = random.Random(11)
    admitted = 0
    for _ in range(5000):
        text, valid = schedule(rng)
        try:
            parsed = parse(text)
        except ScheduleError:
            assert not valid, text
            continue
        assert valid, text
        admitted += 1
        assert parsed.never or parsed.next(datetime(2026, 1, 1, tzinfo=UTC)), text
    assert admitted > 50  # the generator reaches both sides

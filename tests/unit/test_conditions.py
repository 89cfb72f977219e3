from __future__ import annotations

import pytest

from kubeml.conditions import find, is_true, remove_condition, set_condition


def test_new_condition_gets_the_given_time_and_generation() -> None:
    conds = set_condition(
        [],
        "Ready",
        "False",
        "Pending",
        "waiting",
        observed_generation=3,
        now="2026-01-01T00:00:00Z",
    )
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "waiting",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_transition_time_kept_while_status_holds() -> None:
    first = set_condition([], "Ready", "False", "Pending", now="2026-01-01T00:00:00Z")
    second = set_condition(
        first, "Ready", "False", "JobRunning", "job x running", now="2026-01-01T00:05:00Z"
    )
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second[0]["reason"] == "JobRunning"


def test_transition_time_moves_when_status_changes() -> None:
    first = set_condition([], "Ready", "False", "Pending", now="2026-01-01T00:00:00Z")
    second = set_condition(first, "Ready", "True", "Prepared", now="2026-01-01T00:05:00Z")
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert is_true(second, "Ready")


def test_other_conditions_keep_their_place_and_input_is_not_mutated() -> None:
    conds = set_condition([], "Ready", "False", "Pending", now="t0")
    conds = set_condition(conds, "Validated", "True", "Passed", now="t0")
    before = [dict(c) for c in conds]
    updated = set_condition(conds, "Ready", "True", "Prepared", now="t1")
    assert [c["type"] for c in updated] == ["Ready", "Validated"]
    assert conds == before
    assert find(remove_condition(updated, "Ready"), "Ready") is None


@pytest.mark.parametrize("reason", ["", "two words", "1Leading", "dash-ed"])
def test_reason_must_be_one_camelcase_word(reason: str) -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        set_condition([], "Ready", "False", reason)

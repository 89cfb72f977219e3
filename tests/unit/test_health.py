"""One set of health rules: the Python verdict, the generated Lua and kstatus conditions agree."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kubeml import health
from kubeml.conditions import find
from tests.unit.test_gitops import EXPECTED, HEALTH, KINDS, fixture, lua  # noqa: F401
from tests.unit.test_gitops import health as lua_health

NOW = "2026-11-26T12:00:00Z"


def test_the_charts_scripts_are_the_generated_ones() -> None:
    rendered = health.render_all()
    assert sorted(rendered) == sorted(p.name for p in HEALTH.glob("*.lua"))
    for name, text in rendered.items():
        assert (HEALTH / name).read_text() == text, f"{name} is stale: run `kubeml health-checks`"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_python_and_lua_agree_on_captured_objects(lua: str, kind: str, state: str) -> None:  # noqa: F811
    obj = fixture(kind, state)
    assert health.health(kind, obj) == lua_health(lua, kind, obj)
    assert health.health(kind, obj)[0] == EXPECTED[state]


def variations(kind: str) -> list[dict[str, Any]]:
    """Status shapes beyond the captured ones: every summary state and reason, the
    rollout conditions in every combination, stale and missing statuses."""
    summary = health.RULES[kind].summary
    reasons = ["Prepared", "Failed", *health.RULES[kind].in_progress]
    out: list[dict[str, Any]] = [
        {"metadata": {"generation": 1}},
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 2}},
        {"metadata": {"generation": 3}, "status": {}},
        {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": []}},
    ]
    for state, reason in itertools.product(("True", "False", "Unknown"), reasons):
        for degraded, progressing in itertools.product((None, "True", "False"), repeat=2):
            conds = [{"type": summary, "status": state, "reason": reason, "message": "m"}]
            if degraded:
                conds.append({"type": "Degraded", "status": degraded, "reason": "D"})
            if progressing:
                conds.append({"type": "Progressing", "status": progressing, "reason": "P"})
            out.append(
                {
                    "metadata": {"generation": 2},
                    "status": {"observedGeneration": 2, "conditions": conds},
                }
            )
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_python_and_lua_agree_on_every_status_shape(lua: str, kind: str) -> None:  # noqa: F811
    for obj in variations(kind):
        assert health.health(kind, obj) == lua_health(lua, kind, obj), obj


def status(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"generation": 4},
        "status": {"observedGeneration": 4, "conditions": conditions},
    }


def test_work_in_progress_is_reconciling() -> None:
    obj = status([{"type": "Ready", "status": "False", "reason": "Preparing", "message": "job x"}])
    conds = health.kstatus_conditions("Dataset", obj, now=NOW)
    rec, stalled = find(conds, "Reconciling"), find(conds, "Stalled")
    assert rec is not None and stalled is not None
    assert (rec["status"], rec["reason"], rec["observedGeneration"]) == ("True", "Preparing", 4)
    assert "job x" in rec["message"]
    assert stalled["status"] == "False"


def test_a_failure_is_stalled_with_the_summary_reason() -> None:
    obj = status(
        [{"type": "Succeeded", "status": "False", "reason": "GateFailed", "message": "acc"}]
    )
    conds = health.kstatus_conditions("TrainingRun", obj, now=NOW)
    stalled = find(conds, "Stalled")
    assert stalled is not None
    assert (stalled["status"], stalled["reason"]) == ("True", "GateFailed")
    assert find(conds, "Reconciling")["status"] == "False"  # type: ignore[index]


def test_healthy_is_neither_and_rewriting_changes_nothing() -> None:
    obj = status([{"type": "Ready", "status": "True", "reason": "Serving", "message": "ok"}])
    once = health.kstatus_conditions("Deployment", obj, now=NOW)
    assert [c["status"] for c in once if c["type"] in ("Reconciling", "Stalled")] == ["False"] * 2
    again = health.kstatus_conditions(
        "Deployment",
        {**obj, "status": {**obj["status"], "conditions": once}},
        now="2027-01-01T00:00:00Z",
    )
    assert again == once  # same verdict: same conditions, transition times kept

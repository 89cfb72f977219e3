"""Gates, version numbering and alias moves."""

from __future__ import annotations

from typing import Any

import pytest

from kubeml.api.trainingrun import Gates
from kubeml.reconcile import gates, registry


def mv(
    version: int, claims: list[str] | None = None, held: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"m-v{version}"},
        "spec": {"version": version, **({"aliases": claims} if claims is not None else {})},
        "status": {"aliases": held or []},
    }


def G(**kw: Any) -> Gates:
    return Gates.model_validate(kw)


def test_thresholds_pass_and_fail_with_values() -> None:
    verdicts = gates.evaluate(
        G(thresholds=[{"metric": "accuracy", "min": 0.9}, {"metric": "log_loss", "max": 0.3}]),
        {"accuracy": 0.95, "log_loss": 0.5},
    )
    assert [(v.passed, v.value) for v in verdicts] == [(True, 0.95), (False, 0.5)]
    assert "log_loss <= 0.3 (got 0.5)" in gates.summary(verdicts)


def test_missing_metric_fails_its_gate() -> None:
    (v,) = gates.evaluate(G(thresholds=[{"metric": "accuracy", "min": 0.5}]), {})
    assert not v.passed


@pytest.mark.parametrize(
    ("metric", "ours", "theirs", "delta", "passed"),
    [
        ("accuracy", 0.91, 0.90, 0.005, True),
        ("accuracy", 0.903, 0.90, 0.005, False),
        ("rmse", 1.0, 1.2, 0.1, True),  # lower is better
        ("rmse", 1.15, 1.2, 0.1, False),
    ],
)
def test_beating_the_champion_respects_direction(
    metric: str, ours: float, theirs: float, delta: float, passed: bool
) -> None:
    (v,) = gates.evaluate(
        G(beat={"alias": "champion", "metric": metric, "minImprovement": delta}),
        {metric: ours},
        champion_name="m-v1",
        champion_metrics={metric: theirs},
    )
    assert v.passed is passed


def test_no_champion_passes_and_unreadable_champion_fails() -> None:
    beat = G(beat={"metric": "accuracy"})
    (free,) = gates.evaluate(beat, {"accuracy": 0.5})
    assert free.passed
    (broken,) = gates.evaluate(
        beat, {"accuracy": 0.99}, champion_name="m-v1", champion_error="artifact sha256 mismatch"
    )
    assert not broken.passed and "sha256 mismatch" in broken.gate


def test_next_version_is_above_every_existing_one() -> None:
    assert registry.next_version([]) == 1
    assert registry.next_version([mv(1), mv(4), mv(2)]) == 5


def test_unacknowledged_claim_wins_over_the_holder() -> None:
    old = mv(1, ["champion"], [{"name": "champion", "since": "2026-01-01T00:00:00Z"}])
    new = mv(2, ["champion"])
    assert registry.holder([old, new], "champion") is new
    changes = registry.reconcile_aliases([old, new], now="2026-02-01T00:00:00Z")
    assert changes["m-v1"].spec_aliases == []
    assert changes["m-v1"].status_aliases == []
    assert changes["m-v1"].history == [
        {"alias": "champion", "action": "Removed", "time": "2026-02-01T00:00:00Z", "next": "m-v2"}
    ]
    assert changes["m-v2"].status_aliases == [{"name": "champion", "since": "2026-02-01T00:00:00Z"}]
    assert changes["m-v2"].history[0]["previous"] == "m-v1"


def test_consistent_aliases_need_no_change() -> None:
    a = mv(1, ["champion"], [{"name": "champion", "since": "t0"}])
    b = mv(2, ["challenger"], [{"name": "challenger", "since": "t0"}])
    changes = registry.reconcile_aliases([a, b], now="t1")
    assert all(c.spec_aliases is None and not c.history for c in changes.values())


def test_alias_dropped_by_the_user_is_recorded() -> None:
    a = mv(1, [], [{"name": "champion", "since": "t0"}])
    changes = registry.reconcile_aliases([a], now="t1")
    assert changes["m-v1"].status_aliases == []
    assert changes["m-v1"].history[0]["action"] == "Removed"


def test_two_simultaneous_new_claims_go_to_the_higher_version() -> None:
    a, b = mv(1, ["champion"]), mv(3, ["champion"])
    changes = registry.reconcile_aliases([a, b], now="t1")
    assert changes["m-v1"].spec_aliases == []
    assert [h["name"] for h in changes["m-v3"].status_aliases] == ["champion"]

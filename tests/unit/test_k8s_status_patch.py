"""The status merge patch: what the operator dropped from status is removed, at any depth."""

from __future__ import annotations

from kubeml.k8s.objects import status_patch
from tests.support.cases import merge_patch as merge


def test_fields_dropped_inside_nested_objects_are_removed() -> None:
    old = {
        "stable": {"version": 1},
        "canary": {"version": 2, "trafficPercent": 50},
        "rollout": {
            "phase": "Progressing",
            "step": 1,
            "stepStartTime": "2026-12-06T07:48:09Z",
            "waitingFor": "Approval",
            "lastAnalysis": {"result": "Pass", "checks": [{"name": "errorRate"}]},
        },
    }
    new = {
        "stable": {"version": 2},
        "rollout": {
            "phase": "Succeeded",
            "step": 1,
            "lastAnalysis": {"result": "Pass", "checks": []},
        },
    }
    patch = status_patch(old, new)
    assert patch["canary"] is None
    assert patch["rollout"]["stepStartTime"] is None and patch["rollout"]["waitingFor"] is None
    assert merge(old, patch) == new


def test_an_unchanged_status_patches_to_itself() -> None:
    old = {"a": {"b": {"c": 1}}, "d": [1, 2]}
    assert merge(old, status_patch(old, old)) == old

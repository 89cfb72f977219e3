"""The status merge patch removes what a decision dropped, at any depth."""

from __future__ import annotations

from kubeml.k8s.objects import status_patch


def test_fields_dropped_at_any_depth_are_sent_as_null() -> None:
    old = {
        "observedGeneration": 3,
        "canary": {"version": 2},
        "rollout": {
            "phase": "Progressing",
            "stepStartTime": "2026-01-01T00:00:00Z",
            "waitingFor": "Approval",
            "lastAnalysis": {"result": "Inconclusive", "message": "too few", "checks": [1]},
        },
    }
    new = {
        "observedGeneration": 4,
        "rollout": {"phase": "Progressing", "lastAnalysis": {"result": "Pass", "checks": []}},
    }
    assert status_patch(old, new) == {
        "observedGeneration": 4,
        "canary": None,
        "rollout": {
            "phase": "Progressing",
            "stepStartTime": None,
            "waitingFor": None,
            "lastAnalysis": {"result": "Pass", "checks": [], "message": None},
        },
    }


def test_a_new_object_or_a_changed_type_is_sent_whole() -> None:
    assert status_patch({"a": "x"}, {"a": {"b": 1}, "c": {"d": 2}}) == {
        "a": {"b": 1},
        "c": {"d": 2},
    }
    assert status_patch({}, {}) == {}


def test_applied_as_a_merge_patch_it_gives_exactly_the_new_status() -> None:
    from tests.support.cases import merge_patch

    old = {
        "exposure": {"httpRoute": {"name": "iris"}, "message": "no Gateway API"},
        "endpoint": "http://iris.ml.svc:80",
        "conditions": [{"type": "Ready"}],
    }
    new = {"exposure": {"httpRoute": {"name": "iris", "parents": []}}, "conditions": []}
    patch = status_patch(old, new)
    assert patch["exposure"]["message"] is None and patch["endpoint"] is None
    # As the apiserver applies a merge patch (RFC 7386).
    assert merge_patch(old, patch) == new

"""The status merge patch replaces what the operator decided, nested fields included."""

from __future__ import annotations

from kubeml.k8s.objects import status_patch
from tests.support.cases import merge_patch


def test_fields_gone_from_the_new_status_are_removed_at_any_depth() -> None:
    old = {
        "exposure": {"httpRoute": {"name": "iris"}, "message": "no Gateway API"},
        "endpoint": "http://iris.ml.svc:80",
        "conditions": [{"type": "Ready"}],
    }
    new = {"exposure": {"httpRoute": {"name": "iris", "parents": []}}, "conditions": []}
    patch = status_patch(old, new)
    assert patch["exposure"]["message"] is None and patch["endpoint"] is None
    # Applied as the apiserver applies a merge patch (RFC 7386): exactly the new status.
    assert merge_patch(old, patch) == new

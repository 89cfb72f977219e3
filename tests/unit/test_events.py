"""Events we post ourselves (the resync loop runs outside kopf's posting context)."""

from __future__ import annotations

from kubeml.k8s.events import event_body

OBJ = {
    "apiVersion": "kubeml.io/v1alpha1",
    "kind": "Deployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "resourceVersion": "7"},
}


def test_an_event_points_at_its_object_and_is_bounded() -> None:
    body = event_body(OBJ, "Warning", "RolledBack", "x" * 5000, "2026-11-26T12:00:00Z")
    assert body["involvedObject"] == {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Deployment",
        "name": "iris",
        "namespace": "ml",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert body["metadata"] == {"generateName": "iris.", "namespace": "ml"}
    assert (body["type"], body["reason"], len(body["message"])) == ("Warning", "RolledBack", 1024)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-26T12:00:00Z"

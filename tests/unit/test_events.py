"""Events we post ourselves (the resync loop runs outside kopf's posting context)."""

from __future__ import annotations

from kubeml.k8s.events import event_body, event_name

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
    assert body["metadata"]["namespace"] == "ml"
    assert body["metadata"]["name"] == event_name(OBJ, "RolledBack", "x" * 1024)
    assert (body["type"], body["reason"], len(body["message"])) == ("Warning", "RolledBack", 1024)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-26T12:00:00Z"


def test_an_event_is_named_for_what_it_reports_so_a_replay_posts_nothing_twice() -> None:
    same = event_name(OBJ, "Promoted", "v2 holds champion")
    assert same == event_name(dict(OBJ), "Promoted", "v2 holds champion")
    assert same.startswith("iris.") and len(same) <= 253
    newer = {**OBJ, "metadata": {**OBJ["metadata"], "resourceVersion": "8"}}
    assert event_name(newer, "Promoted", "v2 holds champion") != same
    assert event_name(OBJ, "RolledBack", "v2 holds champion") != same

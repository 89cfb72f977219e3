"""ModelVersion verification, alias bookkeeping and deletion protection."""

from __future__ import annotations

from typing import Any

from kubeml.conditions import find
from kubeml.reconcile import modelversion as mv
from kubeml.reconcile.registry import AliasChange
from tests.support.cases import ROOT, load_yaml

NOW = "2026-11-26T12:00:00Z"


def body(status: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "modelversion.yaml")
    doc["metadata"].update(namespace="ml", generation=1)
    if status:
        doc["status"] = status
    return doc


def good(b: dict[str, Any]) -> mv.ArtifactCheck:
    a = b["spec"]["artifact"]
    return mv.ArtifactCheck(sha256=a["sha256"], size=a["size"], etag="e1")


def ready(d: mv.Decision) -> dict[str, Any]:
    c = find(d.status["conditions"], "Ready")
    assert c is not None
    return dict(c)


def test_matching_artifact_is_verified() -> None:
    b = body()
    d = mv.decide(b, good(b), None, [], now=NOW)
    assert (ready(d)["status"], ready(d)["reason"]) == ("True", "Verified")
    assert d.status["verifiedSha256"] == b["spec"]["artifact"]["sha256"]
    assert not mv.needs_hash(body(d.status), "e1", b["spec"]["artifact"]["size"])
    assert mv.needs_hash(body(d.status), "e2", b["spec"]["artifact"]["size"])


def test_tampered_artifact_flips_to_not_ready_naming_the_object() -> None:
    b = body()
    first = mv.decide(b, good(b), None, [], now=NOW)
    tampered = mv.ArtifactCheck(sha256="0" * 64, size=b["spec"]["artifact"]["size"], etag="e2")
    d = mv.decide(body(first.status), tampered, None, [], now=NOW)
    assert (ready(d)["status"], ready(d)["reason"]) == ("False", "ArtifactMismatch")
    assert b["spec"]["artifact"]["uri"] in ready(d)["message"]
    assert "verifiedSha256" not in d.status
    assert [e[1] for e in d.events] == ["ArtifactMismatch"]


def test_missing_artifact_and_storage_outage() -> None:
    b = body()
    missing = mv.ArtifactCheck(reason="ArtifactMissing", message="s3://kubeml/x does not exist")
    d = mv.decide(b, missing, None, [], now=NOW)
    assert (ready(d)["status"], ready(d)["reason"]) == ("False", "ArtifactMissing")
    verified = mv.decide(b, good(b), None, [], now=NOW)
    outage = mv.ArtifactCheck(reason="EndpointUnreachable", message="down", transient=True)
    d = mv.decide(body(verified.status), outage, None, [], now=NOW)
    assert ready(d)["status"] == "True"


def test_alias_changes_are_recorded_newest_first() -> None:
    b = body()
    change = AliasChange(
        spec_aliases=[],
        status_aliases=[{"name": "champion", "since": NOW}],
        history=[{"alias": "champion", "action": "Assigned", "time": NOW}],
        events=[("Normal", "AliasAssigned", "alias champion assigned")],
    )
    d = mv.decide(b, good(b), change, ["iris"], now=NOW)
    assert d.spec_aliases == []
    assert d.status["aliasList"] == "champion"
    assert d.status["aliasHistory"][0]["action"] == "Assigned"
    assert d.status["deployments"] == ["iris"]


def test_deletion_is_blocked_by_aliases_and_deployments() -> None:
    b = body({"aliases": [{"name": "champion", "since": NOW}]})
    b["spec"]["aliases"] = ["champion"]
    reasons = mv.deletion_blockers(b, ["iris"])
    assert any("champion" in r for r in reasons)
    assert any("iris" in r for r in reasons)
    free = body({"aliases": [{"name": "champion", "since": NOW}]})
    free["spec"].pop("aliases")  # removed by the user, status not yet caught up
    assert mv.deletion_blockers(free, []) == []

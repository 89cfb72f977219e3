"""Registry decisions for one model: verification, aliases, tenancy and deletion."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kubeml.conditions import find
from kubeml.reconcile import modelversion as mv
from kubeml.reconcile.outcome import Outcome
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml

NOW = "2026-11-26T12:00:00Z"
S = Settings(bucket="kubeml")
NS = "default"


def version(
    n: int = 1,
    *,
    claims: list[str] | None = None,
    held: list[dict[str, str]] | None = None,
    rv: int = 100,
    uri: str | None = None,
) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "modelversion.yaml")
    doc["metadata"].update(
        name=f"iris-classifier-v{n}",
        namespace=NS,
        generation=1,
        uid=f"uid-{n}",
        resourceVersion=str(rv),
        finalizers=[mv.FINALIZER],
    )
    doc["spec"]["version"] = n
    doc["spec"]["aliases"] = claims or []
    if uri is not None:
        doc["spec"]["artifact"]["uri"] = uri
    doc["status"] = {"aliases": held or []}
    return doc


def good(b: dict[str, Any]) -> mv.ArtifactCheck:
    a = b["spec"]["artifact"]
    return mv.ArtifactCheck(sha256=a["sha256"], size=a["size"], etag="e1")


def decide(*versions: dict[str, Any], **view: Any) -> Outcome:
    return mv.decide(mv.ModelView(list(versions), **view), S, now=NOW)


def status_of(out: Outcome, name: str) -> dict[str, Any]:
    (write,) = [s for s in out.statuses if s.seen["metadata"]["name"] == name]
    return write.status


def ready(out: Outcome, name: str = "iris-classifier-v1") -> dict[str, Any]:
    c = find(status_of(out, name).get("conditions"), "Ready")
    assert c is not None
    return dict(c)


def test_matching_artifact_is_verified() -> None:
    b = version()
    out = decide(b, checks={b["metadata"]["name"]: good(b)})
    assert (ready(out)["status"], ready(out)["reason"]) == ("True", "Verified")
    st = status_of(out, "iris-classifier-v1")
    assert st["verifiedSha256"] == b["spec"]["artifact"]["sha256"]
    b["status"] = st
    assert not mv.needs_hash(b, "e1", b["spec"]["artifact"]["size"])
    assert mv.needs_hash(b, "e2", b["spec"]["artifact"]["size"])
    assert out.patches == [] and out.s3_deletes == []


def test_tampered_artifact_flips_to_not_ready_naming_the_object() -> None:
    b = version()
    first = decide(b, checks={"iris-classifier-v1": good(b)})
    b["status"] = status_of(first, "iris-classifier-v1")
    tampered = mv.ArtifactCheck(sha256="0" * 64, size=b["spec"]["artifact"]["size"], etag="e2")
    out = decide(b, checks={"iris-classifier-v1": tampered})
    assert (ready(out)["status"], ready(out)["reason"]) == ("False", "ArtifactMismatch")
    assert b["spec"]["artifact"]["uri"] in ready(out)["message"]
    assert "verifiedSha256" not in status_of(out, "iris-classifier-v1")
    assert [(e.reason, e.regarding["metadata"]["name"]) for e in out.events] == [
        ("ArtifactMismatch", "iris-classifier-v1")
    ]


def test_missing_artifact_and_storage_outage() -> None:
    b = version()
    missing = mv.ArtifactCheck(reason="ArtifactMissing", message="s3://kubeml/x does not exist")
    assert ready(decide(b, checks={"iris-classifier-v1": missing}))["reason"] == "ArtifactMissing"
    b["status"] = status_of(decide(b, checks={"iris-classifier-v1": good(b)}), "iris-classifier-v1")
    outage = mv.ArtifactCheck(reason="EndpointUnreachable", message="down", transient=True)
    assert ready(decide(b, checks={"iris-classifier-v1": outage}))["status"] == "True"


def test_a_version_without_a_check_this_time_keeps_its_verdict() -> None:
    b = version()
    b["status"] = status_of(decide(b, checks={"iris-classifier-v1": good(b)}), "iris-classifier-v1")
    out = decide(b)
    assert status_of(out, "iris-classifier-v1")["conditions"] == b["status"]["conditions"]


class Store:
    """The API server's part in these tests: one revision counter, and writes that
    are conditional on a resourceVersion, carried out as the driver does (patches,
    then status writes, stopping at the first conflict)."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {o["metadata"]["name"]: copy.deepcopy(o) for o in objs}
        self.rev = max(int(o["metadata"]["resourceVersion"]) for o in objs)

    def get(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objs[name])

    def all(self) -> list[dict[str, Any]]:
        return [self.get(n) for n in self.objs]

    def _write(self, name: str, rv: str, change: dict[str, Any]) -> str | None:
        obj = self.objs[name]
        if obj["metadata"]["resourceVersion"] != rv:
            return None
        for part, fields in change.items():
            if part == "status":  # the driver's status write replaces its fields
                obj["status"] = copy.deepcopy(fields)
            else:
                obj.setdefault(part, {}).update(copy.deepcopy(fields))
        self.rev += 1
        obj["metadata"]["resourceVersion"] = str(self.rev)
        return str(self.rev)

    def claim(self, name: str, alias: str) -> None:
        """A user's write (kubeml promote)."""
        obj = self.objs[name]
        self._write(name, obj["metadata"]["resourceVersion"], {"spec": {"aliases": [alias]}})

    def run(self, out: Outcome) -> bool:
        """Whether every write of the outcome landed."""
        written: dict[str, str] = {}
        for p in out.patches:
            rv = self._write(p.ref.name, written.get(p.ref.name, p.resource_version), p.patch)
            if rv is None:
                return False
            written[p.ref.name] = rv
        for w in out.statuses:
            name = w.seen["metadata"]["name"]
            if w.status == (w.seen.get("status") or {}):
                continue
            seen = str(w.seen["metadata"]["resourceVersion"])
            rv = self._write(name, written.get(name, seen), {"status": {**w.status}})
            if rv is None:
                return False
            written[name] = rv
        return True

    def settle(self) -> None:
        """Decide from what is there until a decision changes nothing."""
        for _ in range(10):
            before = self.rev
            self.run(decide(*self.all()))
            if self.rev == before:
                return
        raise AssertionError("the registry never settled")

    def holders(self, alias: str) -> list[str]:
        return [n for n, o in self.objs.items() if alias in o["spec"]["aliases"]]


def test_the_later_claim_wins_whatever_the_version_numbers() -> None:
    # Bug: claiming an alias on v3 and then on v2 within 100 ms left it on v3; the
    # higher version won when the operator saw both claims before acknowledging one.
    v3 = version(3, claims=["champion"], rv=200)
    v2 = version(2, claims=["champion"], rv=201)
    first = decide(v3, v2)
    assert not first.patches  # both claims are recorded before anything else is written
    assert status_of(first, "iris-classifier-v3")["claims"] == [
        {"name": "champion", "claimVersion": "200"}
    ]
    store = Store(v3, v2)
    assert store.run(first)
    (patch,) = decide(*store.all()).patches
    assert patch.ref.name == "iris-classifier-v3" and patch.patch == {"spec": {"aliases": []}}
    assert (
        patch.resource_version == store.objs["iris-classifier-v3"]["metadata"]["resourceVersion"]
    )  # conditional on what was decided from
    store.settle()
    assert store.holders("champion") == ["iris-classifier-v2"]
    (held,) = store.objs["iris-classifier-v2"]["status"]["aliases"]
    assert (held["name"], held["claimVersion"]) == ("champion", "201")


def test_an_earlier_claim_stays_earlier_when_a_write_fails_midway() -> None:
    # Bug (1 CI run in 3): claims on v3, then on v2, settled on v3. The operator saw
    # v3's claim but not yet v2's; its outcome added v3's finalizer, then failed on
    # v2 (changed meanwhile) before acknowledging anything; v3's claim was then dated
    # by the finalizer write, later than v2's claim.
    v1 = version(
        1, claims=["champion"], held=[{"name": "champion", "since": "t0", "claimVersion": "90"}]
    )
    v2, v3 = version(2, rv=101), version(3, rv=102)
    for v in (v2, v3):
        v["metadata"]["finalizers"] = []  # new versions: the operator has not been by yet
    store = Store(v1, v2, v3)
    store.claim("iris-classifier-v3", "champion")
    cache = [store.get("iris-classifier-v1"), store.get("iris-classifier-v3"), v2]
    store.claim("iris-classifier-v2", "champion")  # the operator has not seen this yet
    assert not store.run(decide(*cache))  # v2's finalizer patch conflicts
    store.settle()
    assert store.holders("champion") == ["iris-classifier-v2"]
    two = store.objs["iris-classifier-v2"]
    assert [a["name"] for a in two["status"]["aliases"]] == ["champion"]
    assert mv.FINALIZER in two["metadata"]["finalizers"]  # added after the claim's record
    assert mv.FINALIZER in store.objs["iris-classifier-v3"]["metadata"]["finalizers"]


def test_a_new_claim_moves_the_alias_and_both_sides_record_it() -> None:
    v1 = version(
        1, claims=["champion"], held=[{"name": "champion", "since": "t0", "claimVersion": "90"}]
    )
    v2 = version(2, claims=["champion"], rv=150)
    out = decide(v1, v2)
    assert [p.ref.name for p in out.patches] == ["iris-classifier-v1"]
    one, two = status_of(out, "iris-classifier-v1"), status_of(out, "iris-classifier-v2")
    assert one["aliases"] == [] and "aliasList" not in one
    assert one["aliasHistory"][0] == {
        "alias": "champion",
        "action": "Removed",
        "time": NOW,
        "next": "iris-classifier-v2",
    }
    assert two["aliasList"] == "champion"
    assert two["aliasHistory"][0]["previous"] == "iris-classifier-v1"
    events = {(e.regarding["metadata"]["name"], e.reason) for e in out.events}
    assert events == {("iris-classifier-v1", "AliasMoved"), ("iris-classifier-v2", "AliasAssigned")}


def test_an_acknowledged_claim_outranks_an_older_unacknowledged_one() -> None:
    v1 = version(
        1,
        claims=["champion"],
        held=[{"name": "champion", "since": "t0", "claimVersion": "300"}],
        rv=310,
    )
    v2 = version(2, claims=["champion"], rv=250)
    store = Store(v1, v2)
    store.settle()
    assert store.holders("champion") == ["iris-classifier-v1"]


def test_an_artifact_in_another_namespaces_space_is_refused_never_checked() -> None:
    theirs = "s3://kubeml/namespaces/victim/models/iris-classifier/" + "a" * 64 + ".skops"
    b = version(uri=theirs)
    assert mv.checks_due([b], {}, S, datetime(2026, 11, 26, tzinfo=UTC))[0] == []
    out = decide(b)
    assert (ready(out)["status"], ready(out)["reason"]) == ("False", "ArtifactNotAllowed")
    assert "outside namespace default's model space" in ready(out)["message"]
    # A prefix the cluster admin shared is allowed.
    shared = Settings(bucket="kubeml", shared_artifact_prefixes=("s3://kubeml/namespaces/victim/",))
    assert mv.artifact_refusal(b, shared) is None


def test_deleting_a_free_version_removes_its_own_artifact_then_the_finalizer() -> None:
    b = version()
    b["metadata"]["deletionTimestamp"] = NOW
    out = decide(b)
    (gone,) = out.s3_deletes
    assert (gone.bucket, gone.key) == (
        "kubeml",
        b["spec"]["artifact"]["uri"].split("kubeml/", 1)[1],
    )
    (patch,) = out.patches
    assert patch.patch == {"metadata": {"finalizers": []}} and patch.resource_version == "100"


def test_deletion_never_touches_what_the_namespace_does_not_own_or_still_uses() -> None:
    # The attack: a user in one namespace copies another's ModelVersion (or points
    # at a dataset file) and deletes it. Only the finalizer goes.
    for uri in (
        "s3://kubeml/namespaces/victim/models/iris-classifier/" + "a" * 64 + ".skops",
        "s3://kubeml/namespaces/victim/datasets/" + "b" * 64 + "/train.parquet",
        "s3://kubeml/namespaces/default/datasets/" + "b" * 64 + "/train.parquet",
        "s3://other-bucket/namespaces/default/models/x/" + "c" * 64 + ".skops",
    ):
        b = version(uri=uri)
        b["metadata"]["deletionTimestamp"] = NOW
        out = decide(b)
        assert out.s3_deletes == [], uri
        assert [p.patch for p in out.patches] == [{"metadata": {"finalizers": []}}]
    # Our own artifact, still used by another version or another model: kept.
    b = version()
    b["metadata"]["deletionTimestamp"] = NOW
    assert decide(b, version(2)).s3_deletes == []
    assert decide(b, shared_uris=frozenset({b["spec"]["artifact"]["uri"]})).s3_deletes == []
    retained = copy.deepcopy(b)
    retained["spec"]["deletionPolicy"] = "Retain"
    assert decide(retained).s3_deletes == []


def test_deletion_is_blocked_by_aliases_and_deployments() -> None:
    b = version(claims=["champion"], held=[{"name": "champion", "since": NOW}])
    b["metadata"]["deletionTimestamp"] = NOW
    out = decide(b, serving={"iris-classifier-v1": ["iris"]})
    assert out.s3_deletes == [] and out.patches == []
    cond = ready(out)
    assert cond["reason"] == "DeletionBlocked"
    assert "champion" in cond["message"] and "iris" in cond["message"]
    free = copy.deepcopy(b)
    free["spec"]["aliases"] = []  # removed by the user, status not yet caught up
    assert mv.deletion_blockers(free, []) == []
    # Nothing is protected in a namespace that is going away.
    assert decide(b, serving={"iris-classifier-v1": ["iris"]}, namespace_terminating=True).patches


def test_a_version_being_deleted_gives_up_its_alias_to_a_new_claim() -> None:
    # Bug: after `kubeml promote MODEL 1`, both versions showed the alias and the one
    # being deleted stayed stuck until its aliases were patched by hand.
    v2 = version(
        2, claims=["champion"], held=[{"name": "champion", "since": "t0", "claimVersion": "90"}]
    )
    v2["metadata"]["deletionTimestamp"] = NOW
    v1 = version(1, claims=["champion"], rv=150)
    out = decide(v1, v2)
    assert [(p.ref.name, p.patch) for p in out.patches] == [
        ("iris-classifier-v2", {"spec": {"aliases": []}})
    ]
    assert status_of(out, "iris-classifier-v1")["aliasList"] == "champion"


def test_a_missing_finalizer_is_added_conditionally() -> None:
    b = version()
    b["metadata"]["finalizers"] = ["other.io/keep"]
    (patch,) = decide(b).patches
    assert patch.patch == {"metadata": {"finalizers": ["other.io/keep", mv.FINALIZER]}}
    assert patch.resource_version == "100"


def test_checks_are_due_when_new_after_a_transient_failure_and_periodically() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    b = version()
    assert mv.checks_due([b], {}, S, now) == (["iris-classifier-v1"], mv.RETRY_SECONDS)
    b["status"] = status_of(decide(b, checks={"iris-classifier-v1": good(b)}), "iris-classifier-v1")
    b["status"]["verifiedTime"] = "2026-11-26T11:50:00Z"
    assert mv.checks_due([b], {}, S, now) == ([], S.artifact_recheck_seconds - 600)
    checked = {"iris-classifier-v1": datetime(2026, 11, 26, 11, 59, tzinfo=UTC)}
    assert mv.checks_due([b], checked, S, now) == ([], S.artifact_recheck_seconds - 60)
    b["status"]["conditions"][0]["reason"] = "EndpointUnreachable"
    recent = {"iris-classifier-v1": datetime(2026, 11, 26, 11, 59, 50, tzinfo=UTC)}
    assert mv.checks_due([b], recent, S, now) == ([], mv.RETRY_SECONDS - 10)
    assert mv.checks_due([b], checked, S, now)[0] == ["iris-classifier-v1"]


REPORT = {
    "uri": "s3://kubeml/namespaces/default/models/iris-classifier/reports/" + "d" * 64 + ".html",
    "sha256": "d" * 64,
    "size": 1234,
}


def test_a_version_shows_the_report_of_the_run_that_registered_it() -> None:
    b = version()
    b["metadata"]["annotations"] = {mv.RUN_UID_ANNOTATION: "run-uid"}
    out = decide(b, reports={"run-uid": REPORT, "other-run": {"uri": "x", "sha256": "y"}})
    assert status_of(out, "iris-classifier-v1")["report"] == REPORT
    # Another run's report is not this version's; one made by hand has none.
    assert "report" not in status_of(decide(b, reports={"other": REPORT}), "iris-classifier-v1")
    assert "report" not in status_of(
        decide(version(), reports={"run-uid": REPORT}), b["metadata"]["name"]
    )
    # Recorded once, kept when the run is gone.
    b["status"]["report"] = REPORT
    assert status_of(decide(b), "iris-classifier-v1")["report"] == REPORT


def test_deleting_a_version_removes_its_own_report_too() -> None:
    b = version()
    b["metadata"]["deletionTimestamp"] = NOW
    b["status"]["report"] = REPORT
    keys = {d.key for d in decide(b).s3_deletes}
    assert REPORT["uri"].split("kubeml/", 1)[1] in keys and len(keys) == 2
    # Another namespace's page, or a retained version's, stays.
    foreign = copy.deepcopy(b)
    foreign["status"]["report"] = {**REPORT, "uri": REPORT["uri"].replace("/default/", "/victim/")}
    assert len(decide(foreign).s3_deletes) == 1
    retained = copy.deepcopy(b)
    retained["spec"]["deletionPolicy"] = "Retain"
    assert decide(retained).s3_deletes == []

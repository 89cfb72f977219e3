"""Registry decisions for one model: every version's artifact, aliases and deletion.

Aliases are a property of the whole model, so the versions of one model are
decided together: one outcome moves an alias (a conditional patch of the loser's
spec), and writes each version's own status and events.

Namespaces are tenants. A version may point only at an artifact in its own
namespace's model space (``namespaces/<ns>/models/``) or under a prefix the cluster
admin shared (``KUBEML_SHARED_ARTIFACTS``); anything else is refused, never read,
served or deleted. On deletion the operator removes only an artifact in the
namespace's own space that no remaining version uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..conditions import Status, find, set_condition
from ..schedules import parse_time
from ..settings import Settings
from ..storage import layout, parse_uri
from .outcome import Outcome, Patch, Ref, S3Delete
from .registry import AliasChange, reconcile_aliases

READY = "Ready"
HISTORY_LIMIT = 50
FINALIZER = "kubeml.io/finalizer"
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ArtifactCheck:
    """What the operator found in S3 (a failure has reason and message)."""

    sha256: str | None = None
    size: int | None = None
    etag: str | None = None
    reason: str | None = None
    message: str = ""
    transient: bool = False


@dataclass(frozen=True)
class ModelView:
    """Everything observed about one model."""

    versions: Sequence[Mapping[str, Any]]  # every version, those being deleted included
    checks: Mapping[str, ArtifactCheck] = field(default_factory=dict)  # made this time
    serving: Mapping[str, Sequence[str]] = field(default_factory=dict)  # version -> Deployments
    shared_uris: frozenset[str] = frozenset()  # artifacts other models of the namespace use
    namespace_terminating: bool = False
    # Training-run uid -> the report that run recorded (TrainingRun status.report).
    reports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def artifact_refusal(mv: Mapping[str, Any], settings: Settings) -> str | None:
    """Why the operator must not touch this version's artifact (None: it may)."""
    uri = str(mv["spec"]["artifact"]["uri"])
    ns = mv["metadata"]["namespace"]
    if layout.model_artifact_owner(uri, settings.bucket) == ns:
        return None
    if any(uri.startswith(p) for p in settings.shared_artifact_prefixes):
        return None
    space = f"s3://{settings.bucket}/{layout.models_prefix(ns)}"
    return (
        f"{uri} is outside namespace {ns}'s model space ({space}) and not under a prefix "
        "the cluster admin shared; the operator neither verifies, serves nor deletes it"
    )


def owned_key(mv: Mapping[str, Any], settings: Settings) -> tuple[str, str] | None:
    """(bucket, key) of the artifact if it lies in the version's own namespace."""
    uri = str(mv["spec"]["artifact"]["uri"])
    if layout.model_artifact_owner(uri, settings.bucket) != mv["metadata"]["namespace"]:
        return None
    return parse_uri(uri)


def needs_hash(body: Mapping[str, Any], etag: str | None, size: int | None) -> bool:
    """Hash again only when the object changed since it was last verified."""
    st = body.get("status") or {}
    return not (
        etag is not None
        and st.get("verifiedEtag") == etag
        and st.get("verifiedSha256") == body["spec"]["artifact"]["sha256"]
        and size == body["spec"]["artifact"]["size"]
    )


def checks_due(
    versions: Sequence[Mapping[str, Any]],
    last_checked: Mapping[str, datetime],
    settings: Settings,
    now: datetime,
) -> tuple[list[str], float | None]:
    """Which artifacts to look at now, and in how many seconds the next one is due.

    A version is looked at when it has no verdict for its current spec, after a
    transient failure (soon), and otherwise every ``artifact_recheck_seconds``.
    """
    due: list[str] = []
    wait: float | None = None
    for mv in versions:
        if mv["metadata"].get("deletionTimestamp") or artifact_refusal(mv, settings):
            continue
        name = mv["metadata"]["name"]
        interval = _interval(mv, settings)
        last = last_checked.get(name) or _verified_at(mv)
        left = interval - (now - last).total_seconds() if last is not None else 0.0
        if left <= 0:
            due.append(name)
            # Checked now: the verdict is written and looked at again in due time.
            left = max(interval, RETRY_SECONDS)
        wait = left if wait is None else min(wait, left)
    return due, wait


def _interval(mv: Mapping[str, Any], settings: Settings) -> float:
    status = mv.get("status") or {}
    ready = find(status.get("conditions"), READY)
    if ready is None or ready.get("observedGeneration") != mv["metadata"].get("generation"):
        return 0.0
    if ready.get("reason") in TRANSIENT_REASONS:
        return RETRY_SECONDS
    return settings.artifact_recheck_seconds


# Storage failures that say nothing about the artifact itself.
TRANSIENT_REASONS = frozenset({"EndpointUnreachable", "StorageUnavailable", "TLSError"})


def _verified_at(mv: Mapping[str, Any]) -> datetime | None:
    ready = find((mv.get("status") or {}).get("conditions"), READY)
    stamp = (mv.get("status") or {}).get("verifiedTime") or (ready or {}).get("lastTransitionTime")
    return parse_time(str(stamp)) if stamp else None


def decide(view: ModelView, settings: Settings, *, now: str) -> Outcome:
    out = Outcome()
    changes = reconcile_aliases(list(view.versions), now)
    still_used = {
        str(v["spec"]["artifact"]["uri"])
        for v in view.versions
        if not v["metadata"].get("deletionTimestamp")
    } | view.shared_uris
    for mv in view.versions:
        name = mv["metadata"]["name"]
        change = changes.get(name) or AliasChange()
        status = _status(mv, view.checks.get(name), settings, now, out)
        report = view.reports.get(produced_by(mv) or "")
        if report is not None:
            # Kept once recorded: the run may be deleted, the version's record stays.
            status["report"] = dict(report)
        _record_aliases(mv, status, change, out)
        serving = sorted(view.serving.get(name) or [])
        if serving:
            status["deployments"] = serving
        else:
            status.pop("deployments", None)
        if mv["metadata"].get("deletionTimestamp"):
            _deleting(mv, status, serving, view, still_used, settings, now, out)
        elif FINALIZER not in (mv["metadata"].get("finalizers") or []):
            finalizers = [*(mv["metadata"].get("finalizers") or []), FINALIZER]
            out.patches.append(_meta_patch(mv, {"finalizers": finalizers}, "add finalizer"))
        out.status(mv, status)
    # A version with a claim seen for the first time gets only its status write now
    # (which records the claim's revision); its patches wait for the next decision,
    # which that write triggers. Written first, a patch would make the claim look as
    # late as the patch (registry.py).
    # A version being deleted only gives its claims up.
    waiting = {
        b["metadata"]["name"]
        for b in view.versions
        if changes[b["metadata"]["name"]].new_claims and not b["metadata"].get("deletionTimestamp")
    }
    if waiting:
        out.patches[:] = [p for p in out.patches if p.ref.name not in waiting]
    return out


def _status(
    mv: Mapping[str, Any],
    check: ArtifactCheck | None,
    settings: Settings,
    now: str,
    out: Outcome,
) -> dict[str, Any]:
    status: dict[str, Any] = dict(mv.get("status") or {})
    status["observedGeneration"] = mv["metadata"].get("generation")
    refusal = artifact_refusal(mv, settings)
    if refusal is not None:
        _verdict(mv, status, ("False", "ArtifactNotAllowed", refusal), now, out)
    elif check is not None:
        _verdict(mv, status, _judge(mv, status, check, now), now, out)
    return status


def _judge(
    mv: Mapping[str, Any], status: dict[str, Any], check: ArtifactCheck, now: str
) -> tuple[Status, str, str]:
    artifact = mv["spec"]["artifact"]
    uri = artifact["uri"]
    previous = find(status.get("conditions"), READY)
    if check.reason is not None:
        if check.transient and previous is not None and previous.get("status") == "True":
            # A storage outage is not evidence against the artifact: keep the verdict.
            return "True", str(previous["reason"]), str(previous["message"])
        return "False", check.reason, check.message
    if check.size != artifact["size"]:
        expected = artifact["size"]
        return "False", "ArtifactMismatch", f"{uri} is {check.size} bytes, expected {expected}"
    if check.sha256 != artifact["sha256"]:
        return (
            "False",
            "ArtifactMismatch",
            (f"sha256 of {uri} is {check.sha256}, expected {artifact['sha256']}"),
        )
    status["verifiedSha256"] = check.sha256
    status["verifiedEtag"] = check.etag
    if previous is None or previous.get("status") != "True" or not status.get("verifiedTime"):
        status["verifiedTime"] = now
    return (
        "True",
        "Verified",
        (f"{uri} ({check.size} bytes) matches sha256 {artifact['sha256'][:12]}"),
    )


def _verdict(
    mv: Mapping[str, Any],
    status: dict[str, Any],
    verdict: tuple[Status, str, str],
    now: str,
    out: Outcome,
) -> None:
    state, reason, message = verdict
    if reason != "Verified" and state == "False":
        message = f"modelversion {mv['metadata']['name']}: {message}"
        status.pop("verifiedSha256", None)
        status.pop("verifiedEtag", None)
        previous = find(status.get("conditions"), READY)
        if previous is None or previous.get("reason") != reason:
            out.event(mv, "Warning", reason, message[:1024])
    status["conditions"] = set_condition(
        status.get("conditions"),
        READY,
        state,
        reason,
        message,
        observed_generation=mv["metadata"].get("generation"),
        now=now,
    )


def _record_aliases(
    mv: Mapping[str, Any], status: dict[str, Any], change: AliasChange, out: Outcome
) -> None:
    if change.spec_aliases is not None:
        out.patches.append(
            Patch(
                Ref.of(mv),
                {"spec": {"aliases": change.spec_aliases}},
                str(mv["metadata"].get("resourceVersion") or ""),
                why="alias moved to a newer claim",
            )
        )
    if change.claims:
        status["claims"] = change.claims
    else:
        status.pop("claims", None)
    status["aliases"] = change.status_aliases
    names = sorted(a["name"] for a in change.status_aliases)
    if names:
        status["aliasList"] = ",".join(names)
    else:
        status.pop("aliasList", None)
    if change.history:
        history = [*reversed(change.history), *(status.get("aliasHistory") or [])]
        status["aliasHistory"] = history[:HISTORY_LIMIT]
    for type_, reason, message in change.events:
        out.event(mv, "Normal" if type_ == "Normal" else "Warning", reason, message)


RUN_UID_ANNOTATION = "kubeml.io/training-run-uid"


def produced_by(mv: Mapping[str, Any]) -> str | None:
    """The uid of the TrainingRun that registered this version (None: made by hand)."""
    value = (mv["metadata"].get("annotations") or {}).get(RUN_UID_ANNOTATION)
    return str(value) if value else None


def deletion_blockers(body: Mapping[str, Any], deployments: Sequence[str]) -> list[str]:
    """Why this version may not be deleted yet (empty: it may)."""
    out = []
    # The spec is the user's current intent; status may lag behind a removal
    # the operator has not reconciled yet, and must not strand the version.
    claimed = list((body.get("spec") or {}).get("aliases") or [])
    for alias in sorted(set(claimed)):
        out.append(f"it holds alias {alias}; give the alias to another version first")
    for d in sorted(deployments):
        out.append(f"Deployment {d} serves it; point the Deployment elsewhere first")
    return out


def _deleting(
    mv: Mapping[str, Any],
    status: dict[str, Any],
    serving: Sequence[str],
    view: ModelView,
    still_used: set[str],
    settings: Settings,
    now: str,
    out: Outcome,
) -> None:
    """A version being deleted keeps serving and holding its aliases until they move;
    then its artifact (if it is ours and unused) goes, then the finalizer."""
    finalizers = list(mv["metadata"].get("finalizers") or [])
    if FINALIZER not in finalizers:
        return
    name = mv["metadata"]["name"]
    blockers = [] if view.namespace_terminating else deletion_blockers(mv, serving)
    if blockers:
        message = f"modelversion {name} cannot be deleted yet: " + "; ".join(blockers)
        status["conditions"] = set_condition(
            status.get("conditions"), READY, "False", "DeletionBlocked", message, now=now
        )
        return
    key = owned_key(mv, settings)
    uri = str(mv["spec"]["artifact"]["uri"])
    if mv["spec"].get("deletionPolicy", "Delete") == "Delete":
        if key and uri not in still_used:
            out.s3_deletes.append(S3Delete(key[0], key[1], why=f"modelversion {name} deleted"))
        # Its report goes with it: it describes this version alone (a run registers one).
        report = str((status.get("report") or {}).get("uri") or "")
        if layout.report_owner(report, settings.bucket) == mv["metadata"]["namespace"]:
            bucket, report_key = parse_uri(report)
            out.s3_deletes.append(
                S3Delete(bucket, report_key, why=f"modelversion {name} deleted: its report")
            )
    remaining = [f for f in finalizers if f != FINALIZER]
    out.patches.append(_meta_patch(mv, {"finalizers": remaining}, "remove finalizer"))


def _meta_patch(mv: Mapping[str, Any], meta: dict[str, Any], why: str) -> Patch:
    rv = str(mv["metadata"].get("resourceVersion") or "")
    return Patch(Ref.of(mv), {"metadata": meta}, rv, why=why)

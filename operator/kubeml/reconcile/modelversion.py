"""ModelVersion decisions: is the artifact intact, which aliases it holds, may it go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..conditions import Status, set_condition
from .registry import AliasChange

READY = "Ready"
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class ArtifactCheck:
    """What the controller found in S3 (a failure has reason and message)."""

    sha256: str | None = None
    size: int | None = None
    etag: str | None = None
    reason: str | None = None
    message: str = ""
    transient: bool = False


@dataclass
class Decision:
    status: dict[str, Any]
    spec_aliases: list[str] | None = None  # patch spec.aliases to this
    events: list[tuple[str, str, str]] = field(default_factory=list)


def needs_hash(body: dict[str, Any], etag: str | None, size: int | None) -> bool:
    """Hash again only when the object changed since it was last verified."""
    st = body.get("status") or {}
    return not (
        etag is not None
        and st.get("verifiedEtag") == etag
        and st.get("verifiedSha256") == body["spec"]["artifact"]["sha256"]
        and size == body["spec"]["artifact"]["size"]
    )


def decide(
    body: dict[str, Any],
    check: ArtifactCheck,
    aliases: AliasChange | None,
    deployments: list[str],
    *,
    now: str,
) -> Decision:
    meta, spec = body["metadata"], body["spec"]
    gen = meta.get("generation")
    status: dict[str, Any] = dict(body.get("status") or {})
    status["observedGeneration"] = gen
    decision = Decision(status=status)
    artifact = spec["artifact"]
    uri = artifact["uri"]
    previous_ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == READY), None
    )

    state: Status
    if check.reason is not None:
        reason, message = check.reason, f"modelversion {meta['name']}: {check.message}"
        if check.transient and previous_ready and previous_ready.get("status") == "True":
            # A storage outage is not evidence against the artifact: keep the verdict.
            reason, message = str(previous_ready["reason"]), str(previous_ready["message"])
            state = "True"
        else:
            state = "False"
    elif check.size != artifact["size"]:
        state, reason = "False", "ArtifactMismatch"
        message = f"{uri} is {check.size} bytes, expected {artifact['size']}"
    elif check.sha256 != artifact["sha256"]:
        state, reason = "False", "ArtifactMismatch"
        message = f"sha256 of {uri} is {check.sha256}, expected {artifact['sha256']}"
    else:
        state, reason = "True", "Verified"
        message = f"{uri} ({check.size} bytes) matches sha256 {artifact['sha256'][:12]}"
        status["verifiedSha256"] = check.sha256
        status["verifiedEtag"] = check.etag
        if (
            previous_ready is None
            or previous_ready.get("status") != "True"
            or not status.get("verifiedTime")
        ):
            status["verifiedTime"] = now
    if state == "False":
        status.pop("verifiedSha256", None)
        status.pop("verifiedEtag", None)
        if previous_ready is None or previous_ready.get("reason") != reason:
            decision.events.append(("Warning", reason, message[:1024]))

    status["conditions"] = set_condition(
        status.get("conditions"),
        READY,
        state,
        reason,
        message,
        observed_generation=gen,
        now=now,
    )

    if aliases is not None:
        if aliases.spec_aliases is not None:
            decision.spec_aliases = aliases.spec_aliases
        status["aliases"] = aliases.status_aliases
        names = sorted(a["name"] for a in aliases.status_aliases)
        status["aliasList"] = ",".join(names) if names else None
        if aliases.history:
            history = [*reversed(aliases.history), *(status.get("aliasHistory") or [])]
            status["aliasHistory"] = history[:HISTORY_LIMIT]
        decision.events += aliases.events
    if status.get("aliasList") is None:
        status.pop("aliasList", None)
    status["deployments"] = sorted(deployments) or None
    if status["deployments"] is None:
        status.pop("deployments")
    return decision


def deletion_blockers(body: dict[str, Any], deployments: list[str]) -> list[str]:
    """Why this version may not be deleted yet (empty: it may)."""
    out = []
    # The spec is the user's current intent; status may lag behind a removal
    # the operator has not reconciled yet, and must not strand the version.
    claimed = list((body.get("spec") or {}).get("aliases") or [])
    for alias in sorted(set(claimed)):
        out.append(f"it holds alias {alias}; move the alias to another version first")
    for d in sorted(deployments):
        out.append(f"Deployment {d} serves it; point the Deployment elsewhere first")
    return out

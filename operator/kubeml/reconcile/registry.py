"""The model registry's rules: version numbers and who holds an alias.

Aliases live in `ModelVersion.spec.aliases` (a user or `kubeml promote` sets
them); the operator records in `status.aliases` since when each is held.
When two versions claim one alias the later claim wins, judged by the
resourceVersion at which each claim was first seen: on etcd these are the
revisions of the writes, so they order claims made on different objects even
milliseconds apart, whichever the operator happens to see first. Every claim is
recorded with that revision in `status.claims`; until then it is dated by the
object's current resourceVersion, so the record must be the operator's first write
to a version after a new claim (see modelversion.decide): a finalizer or spec patch
landing first would date the claim by the operator's own write, and an earlier
claim could beat a later one. Moving an alias is one write by the user, and
everyone who resolves it (Deployments, gates) sees the new holder at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Body = Mapping[str, Any]


def version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def next_version(existing: Iterable[Body]) -> int:
    """One above the highest version of the model (versions are never reused)."""
    return 1 + max((int(b["spec"]["version"]) for b in existing), default=0)


def _revision(value: Any) -> int | None:
    text = str(value or "")
    return int(text) if text.isdigit() else None


def claim_order(body: Body, alias: str) -> tuple[int, int]:
    """Sort key of a version's claim on ``alias``: later claims sort higher.

    (1, revision) when the claim's revision is known: a recorded claim carries the
    one recorded when first seen, others the object's current one. A revision that
    is not an integer (not etcd) falls back to: recorded before unrecorded.
    """
    recorded = recorded_claims(body)
    if alias in recorded:
        revision = _revision(recorded[alias])
        return (1, revision) if revision is not None else (0, 0)
    current = _revision((body.get("metadata") or {}).get("resourceVersion"))
    return (1, current) if current is not None else (2, 0)


def recorded_claims(body: Body) -> dict[str, str]:
    """Alias -> the revision its claim was first seen at, as status records it (held
    aliases recorded it before status.claims existed)."""
    status = body.get("status") or {}
    out = {
        str(h["name"]): str(h["claimVersion"])
        for h in status.get("aliases") or []
        if h.get("name") and h.get("claimVersion")
    }
    out.update(
        (str(c["name"]), str(c["claimVersion"]))
        for c in status.get("claims") or []
        if c.get("name") and c.get("claimVersion")
    )
    return out


def claim_records(body: Body) -> tuple[list[dict[str, str]], bool]:
    """What status.claims must say for the claims spec makes now, and whether any
    claim is new (seen now for the first time: dated by this resourceVersion)."""
    recorded = recorded_claims(body)
    seen_at = _revision((body.get("metadata") or {}).get("resourceVersion"))
    records, new = [], False
    for alias in _claims(body):
        if alias in recorded:
            records.append({"name": alias, "claimVersion": recorded[alias]})
        elif seen_at is not None:
            records.append({"name": alias, "claimVersion": str(seen_at)})
            new = True
    return records, new


def _claims(body: Body) -> list[str]:
    return list((body.get("spec") or {}).get("aliases") or [])


def holder(versions: Iterable[Body], alias: str) -> Body | None:
    """The version holding ``alias`` (the latest claim; then the highest version)."""
    claimants = [b for b in versions if alias in _claims(b)]
    if not claimants:
        return None
    return max(claimants, key=lambda b: (claim_order(b, alias), int(b["spec"]["version"])))


@dataclass
class AliasChange:
    """What must change on one ModelVersion for aliases to be consistent."""

    spec_aliases: list[str] | None = None  # new spec.aliases, if it must change
    status_aliases: list[dict[str, str]] = field(default_factory=list)
    claims: list[dict[str, str]] = field(default_factory=list)  # status.claims
    new_claims: bool = False  # a claim seen for the first time: record it before any patch
    history: list[dict[str, Any]] = field(default_factory=list)  # new entries, newest first
    events: list[tuple[str, str, str]] = field(default_factory=list)


def reconcile_aliases(versions: list[Body], now: str) -> dict[str, AliasChange]:
    """Per ModelVersion name: its consistent aliases after resolving every claim."""
    changes: dict[str, AliasChange] = {}
    for b in versions:
        held = (b.get("status") or {}).get("aliases") or []
        claims, new = claim_records(b)
        changes[b["metadata"]["name"]] = AliasChange(
            status_aliases=[dict(h) for h in held], claims=claims, new_claims=new
        )

    aliases = sorted({a for b in versions for a in _claims(b)})
    # Aliases a version held but no longer claims (removed by the user).
    for b in versions:
        name = b["metadata"]["name"]
        ch = changes[name]
        for h in list(ch.status_aliases):
            if h["name"] not in _claims(b):
                ch.status_aliases = [x for x in ch.status_aliases if x["name"] != h["name"]]
                ch.history.append({"alias": h["name"], "action": "Removed", "time": now})
                ch.events.append(("Normal", "AliasRemoved", f"alias {h['name']} removed"))

    for alias in aliases:
        winner = holder(versions, alias)
        assert winner is not None
        wname = winner["metadata"]["name"]
        losers = [b for b in versions if alias in _claims(b) and b is not winner]
        previous = next(
            (
                b["metadata"]["name"]
                for b in losers
                if any(h.get("name") == alias for h in (b.get("status") or {}).get("aliases") or [])
            ),
            None,
        )
        for b in losers:
            name = b["metadata"]["name"]
            ch = changes[name]
            ch.spec_aliases = [a for a in (ch.spec_aliases or _claims(b)) if a != alias]
            if any(h["name"] == alias for h in ch.status_aliases):
                ch.status_aliases = [h for h in ch.status_aliases if h["name"] != alias]
                ch.history.append({"alias": alias, "action": "Removed", "time": now, "next": wname})
                ch.events.append(("Normal", "AliasMoved", f"alias {alias} moved to {wname}"))
        wch = changes[wname]
        if not any(h["name"] == alias for h in wch.status_aliases):
            holding = {"name": alias, "since": now}
            seen_at = next((c["claimVersion"] for c in wch.claims if c["name"] == alias), None)
            if seen_at is not None:
                holding["claimVersion"] = seen_at
            wch.status_aliases.append(holding)
            entry: dict[str, Any] = {"alias": alias, "action": "Assigned", "time": now}
            if previous:
                entry["previous"] = previous
            wch.history.append(entry)
            msg = f"alias {alias} assigned" + (f" (previously {previous})" if previous else "")
            wch.events.append(("Normal", "AliasAssigned", msg))
    return changes

"""The model registry's rules: version numbers and who holds an alias.

Aliases live in `ModelVersion.spec.aliases` (a user or `kubeml promote` sets
them); the operator records in `status.aliases` since when each is held.
When two versions claim one alias, the newest claim wins: a claim the
operator has not yet acknowledged counts as newer than any acknowledged one.
So moving an alias is one write by the user, and everyone who resolves it
(Deployments, gates) sees the new holder at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Body = Mapping[str, Any]
FAR_FUTURE = "9999-12-31T23:59:59Z"


def version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def next_version(existing: Iterable[Body]) -> int:
    """One above the highest version of the model (versions are never reused)."""
    return 1 + max((int(b["spec"]["version"]) for b in existing), default=0)


def _since(body: Body, alias: str) -> str:
    for held in (body.get("status") or {}).get("aliases") or []:
        if held.get("name") == alias:
            return str(held.get("since") or FAR_FUTURE)
    return FAR_FUTURE


def _claims(body: Body) -> list[str]:
    return list((body.get("spec") or {}).get("aliases") or [])


def holder(versions: Iterable[Body], alias: str) -> Body | None:
    """The version holding ``alias`` (newest claim; then highest version)."""
    claimants = [b for b in versions if alias in _claims(b)]
    if not claimants:
        return None
    return max(claimants, key=lambda b: (_since(b, alias), int(b["spec"]["version"])))


@dataclass
class AliasChange:
    """What must change on one ModelVersion for aliases to be consistent."""

    spec_aliases: list[str] | None = None  # new spec.aliases, if it must change
    status_aliases: list[dict[str, str]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # new entries, newest first
    events: list[tuple[str, str, str]] = field(default_factory=list)


def reconcile_aliases(versions: list[Body], now: str) -> dict[str, AliasChange]:
    """Per ModelVersion name: its consistent aliases after resolving every claim."""
    changes: dict[str, AliasChange] = {}
    for b in versions:
        held = (b.get("status") or {}).get("aliases") or []
        changes[b["metadata"]["name"]] = AliasChange(status_aliases=[dict(h) for h in held])

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
            wch.status_aliases.append({"name": alias, "since": now})
            entry: dict[str, Any] = {"alias": alias, "action": "Assigned", "time": now}
            if previous:
                entry["previous"] = previous
            wch.history.append(entry)
            msg = f"alias {alias} assigned" + (f" (previously {previous})" if previous else "")
            wch.events.append(("Normal", "AliasAssigned", msg))
    return changes

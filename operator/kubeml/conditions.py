"""metav1.Condition bookkeeping shared by every controller.

Pure functions over plain wire dicts (what is written to `status.conditions`),
so they serve reconcile code and tests alike without a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
ConditionDict = dict[str, Any]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (second precision, Z)."""
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    cond = find(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: Status,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: str | None = None,
) -> list[ConditionDict]:
    """A new list with ``type_`` set; the others are kept in order.

    ``lastTransitionTime`` moves only when ``status`` changes, so consumers can
    tell how long a state has held even though reason and message are
    refreshed on every reconcile.
    """
    if not reason or not reason[0].isalpha() or not reason.replace("_", "").isalnum():
        raise ValueError(f"condition reason must be one CamelCase word, got {reason!r}")
    previous = find(conditions, type_)
    if previous is not None and previous.get("status") == status:
        transition = previous.get("lastTransitionTime") or now or now_rfc3339()
    else:
        transition = now or now_rfc3339()
    new: ConditionDict = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    out = [dict(c) for c in conditions or () if c.get("type") != type_]
    index = next((i for i, c in enumerate(conditions or ()) if c.get("type") == type_), len(out))
    out.insert(index, new)
    return out


def remove_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type_: str
) -> list[ConditionDict]:
    return [dict(c) for c in conditions or () if c.get("type") != type_]

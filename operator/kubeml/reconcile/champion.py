"""Whom a "beat the champion" gate compares a run with.

The training Job measures the alias holder it was given on the run's own test split
and records which version that was. The gate judges against exactly that
measurement. If the alias moved while the run trained, the comparison no longer
says anything about the version now holding it: the run fails with
``ChampionChanged`` instead of passing silently.

Runs that start before any version holds the alias race for it. They are decided
by their metrics, not by who finishes first: a racer that finds a fellow racer
already registered compares with that version's test metrics (the same data
version means the same test split) and takes the alias if it is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import labels

# On a ModelVersion registered by a beat-gated run: the version its Job measured
# ("" when no version held the alias, i.e. the run raced for the first one).
COMPARED_WITH = f"{labels.PREFIX}/compared-with"


@dataclass(frozen=True)
class Comparison:
    name: str | None = None  # the version compared with; None: nobody held the alias
    metrics: Mapping[str, Any] | None = None
    error: str | None = None
    changed: str = ""  # why the comparison no longer holds (ChampionChanged)
    claim: bool = False  # won a race for the alias on metrics: take it
    annotations: dict[str, str] = field(default_factory=dict)


def compare(
    alias: str,
    result: Mapping[str, Any],
    holder: Mapping[str, Any] | None,
    dataset_version: str,
    first_alias: str,
) -> Comparison:
    measured = result.get("champion")
    holder_name = holder["metadata"]["name"] if holder is not None else None
    if measured:
        name = str(measured.get("name"))
        found = Comparison(
            name,
            result.get("championMetrics"),
            result.get("championError"),
            annotations={COMPARED_WITH: name},
        )
        if holder_name != name:
            now = f"{holder_name} holds it now" if holder_name else "no version holds it now"
            why = f"alias {alias} moved while the run trained: it was compared with {name}; {now}"
            return Comparison(**{**found.__dict__, "changed": why})
        return found
    raced = {COMPARED_WITH: ""}
    if holder is None:
        return Comparison(annotations=raced)
    return _racer(alias, holder, dataset_version, first_alias, raced)


def _racer(
    alias: str,
    holder: Mapping[str, Any],
    dataset_version: str,
    first_alias: str,
    raced: dict[str, str],
) -> Comparison:
    """No version held the alias when the run started, and one does now."""
    name = holder["metadata"]["name"]
    spec = holder.get("spec") or {}
    same_data = (spec.get("lineage") or {}).get("datasetVersion") == dataset_version
    if not same_data:
        return Comparison(
            name,
            changed=f"alias {alias} was given to {name} (trained on other data) while the run "
            "trained; the run has no measurement of it",
            annotations=raced,
        )
    fellow = (holder["metadata"].get("annotations") or {}).get(COMPARED_WITH) == ""
    return Comparison(
        name, spec.get("metrics") or {}, claim=fellow and alias == first_alias, annotations=raced
    )

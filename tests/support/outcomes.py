"""Reading a decision's Outcome the way the unit tests ask about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeml.reconcile.outcome import Outcome


@dataclass
class Seen:
    outcome: Outcome

    @property
    def status(self) -> dict[str, Any]:
        """The status written for the decided object (the first status write)."""
        return self.outcome.statuses[0].status

    def created(self, kind: str) -> list[dict[str, Any]]:
        return [c.obj for c in self.outcome.create if c.obj["kind"] == kind]

    @property
    def job(self) -> dict[str, Any] | None:
        jobs = self.created("Job")
        return jobs[0] if jobs else None

    @property
    def model_version(self) -> dict[str, Any] | None:
        mvs = self.created("ModelVersion")
        return mvs[0] if mvs else None

    @property
    def events(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.reason, e.message) for e in self.outcome.events]

    @property
    def stale_jobs(self) -> list[str]:
        return [r.name for r in self.outcome.delete if r.kind == "Job"]

    @property
    def apply(self) -> list[dict[str, Any]]:
        return self.outcome.apply

    @property
    def delete(self) -> list[tuple[str, str, str]]:
        return [(r.api_version, r.kind, r.name) for r in self.outcome.delete]

"""One decision in progress: the object decided for, its next status, the outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from ..conditions import Status, set_condition
from .outcome import EventType, Outcome


@dataclass
class Step:
    body: Mapping[str, Any]
    status: dict[str, Any]
    now: str
    out: Outcome = field(default_factory=Outcome)

    @classmethod
    def begin(cls, body: Mapping[str, Any], now: str) -> Self:
        """Start from the observed status, for the generation decided; the outcome
        writes it (the driver skips the write if nothing changed)."""
        status = {
            **(body.get("status") or {}),
            "observedGeneration": body["metadata"].get("generation"),
        }
        step = cls(body, status, now)
        step.out.status(body, status)
        return step

    def cond(self, type_: str, state: Status, reason: str, message: str) -> None:
        self.status["conditions"] = set_condition(
            self.status.get("conditions"),
            type_,
            state,
            reason,
            message,
            observed_generation=self.body["metadata"].get("generation"),
            now=self.now,
        )

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.out.event(self.body, type_, reason, message[:1024])

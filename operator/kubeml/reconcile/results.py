"""Result manifests: what a finished Job wrote to S3, as the operator could read it.

Only a result proven absent ends a run for lack of one; a store that cannot be
reached right now is a reason to look again, never a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RETRY_SECONDS = 15.0


@dataclass(frozen=True)
class ResultRead:
    uri: str
    doc: Mapping[str, Any] | None = None
    absent: bool = False
    error: str = ""  # could not be read for now (S3 unreachable, throttled, ...)

    @property
    def unreadable(self) -> bool:
        return self.doc is None and not self.absent

    def describe(self) -> str:
        if self.absent:
            return f"{self.uri} does not exist"
        return f"{self.uri} could not be read: {self.error or 'unknown error'}"

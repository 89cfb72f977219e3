"""What a decision returns: everything the driver must do for one reconcile.

A decision reads what was observed and returns one Outcome; only the driver
(kubeml.driver) talks to the API and to S3. Writes that another actor may race
(spec fields, finalizers) carry the resourceVersion they were decided from, so a
concurrent change turns into a conflict and a fresh decision, never a lost update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Ref:
    """One object on the API server."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        meta = obj["metadata"]
        return cls(str(obj["apiVersion"]), str(obj["kind"]), meta["namespace"], meta["name"])

    def __str__(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class StatusWrite:
    """The next status of an object, as decided from ``seen`` (the observed object).

    The driver adds the kstatus conditions, writes only if something changed, and
    makes the write conditional on ``seen``'s resourceVersion (or on the version its
    own earlier write in the same outcome produced).
    """

    seen: Mapping[str, Any]
    status: dict[str, Any]

    @property
    def ref(self) -> Ref:
        return Ref.of(self.seen)


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch of spec or metadata, conditional on ``resource_version``."""

    ref: Ref
    patch: dict[str, Any]
    resource_version: str
    why: str = ""


@dataclass(frozen=True)
class Create:
    """Create an object. ``exists_ok``: an object already there under that name is the
    goal (a deterministic child); otherwise the name was taken by someone else and the
    decision must be made again (e.g. a model version number)."""

    obj: dict[str, Any]
    exists_ok: bool = True


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about ``regarding`` (an observed object, with its uid)."""

    regarding: Mapping[str, Any]
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class S3Delete:
    """Remove an object the operator wrote (the decision has proven it owns it)."""

    bucket: str
    key: str
    why: str = ""


@dataclass(frozen=True)
class Finished:
    """A Dataset preparation or TrainingRun reached its outcome in this decision. The
    driver counts it (kubeml_pipeline_* metrics) once the status recording the outcome
    is written: a decision that loses its write is made again and reports it then, and
    a finished object's later decisions do not report it again."""

    kind: str
    succeeded: bool
    seconds: float | None  # from the Job's creation to the outcome
    stages: tuple[tuple[str, float], ...] = ()


@dataclass
class Outcome:
    """One reconcile's result. The driver runs, in this order: S3 deletes, creates,
    applies, deletes, patches, status writes, finished pipelines (metrics), events;
    then looks again after ``requeue_after`` seconds if set."""

    statuses: list[StatusWrite] = field(default_factory=list)
    create: list[Create] = field(default_factory=list)
    apply: list[dict[str, Any]] = field(default_factory=list)  # server-side apply
    delete: list[Ref] = field(default_factory=list)
    patches: list[Patch] = field(default_factory=list)
    s3_deletes: list[S3Delete] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)
    requeue_after: float | None = None

    def status(self, seen: Mapping[str, Any], status: dict[str, Any]) -> None:
        self.statuses.append(StatusWrite(seen, status))

    def event(
        self, regarding: Mapping[str, Any], type_: EventType, reason: str, message: str
    ) -> None:
        self.events.append(Event(regarding, type_, reason, message))

    def look_again(self, seconds: float | None) -> None:
        """Keep the soonest of several wishes to look again."""
        if seconds is None:
            return
        seconds = max(0.0, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    def merge(self, other: Outcome) -> None:
        self.statuses += other.statuses
        self.create += other.create
        self.apply += other.apply
        self.delete += other.delete
        self.patches += other.patches
        self.s3_deletes += other.s3_deletes
        self.events += other.events
        self.finished += other.finished
        self.look_again(other.requeue_after)

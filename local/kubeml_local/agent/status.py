"""Pure builders of pod status: container states, phase and conditions.

The worker keeps one :class:`ContainerRecord` per container and asks :func:`pod_status` for
the wire form, which it writes with a strategic-merge patch on ``pods/status`` (conditions
merge by type, so conditions other writers own survive).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

RUNTIME = "kubeml-local"
OWNED_CONDITIONS = (
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def exit_code(returncode: int) -> int:
    """A signal death is reported like container runtimes do: 128 + signal number."""
    return returncode if returncode >= 0 else 128 - returncode


def termination_reason(code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if code == 0 else "Error"


def waiting(reason: str, message: str = "") -> Json:
    body: Json = {"reason": reason}
    if message:
        body["message"] = message
    return {"waiting": body}


def running(started_at: dt.datetime) -> Json:
    return {"running": {"startedAt": rfc3339(started_at)}}


def terminated(
    code: int,
    reason: str,
    started_at: dt.datetime | None,
    finished_at: dt.datetime,
    container_id: str = "",
    message: str = "",
) -> Json:
    body: Json = {"exitCode": code, "reason": reason, "finishedAt": rfc3339(finished_at)}
    if started_at is not None:
        body["startedAt"] = rfc3339(started_at)
    if container_id:
        body["containerID"] = container_id
    if message:
        body["message"] = message
    return {"terminated": body}


@dataclass
class ContainerRecord:
    """What the agent knows of one container; mutated by its runner."""

    name: str
    image: str
    init: bool = False
    sidecar: bool = False
    state: Json = field(default_factory=lambda: waiting("ContainerCreating"))
    last_state: Json = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    # True once the container has stopped for good (no restart will follow).
    final: bool = False

    @property
    def exit_code(self) -> int | None:
        term = self.state.get("terminated")
        return None if term is None else int(term["exitCode"])

    @property
    def is_running(self) -> bool:
        return "running" in self.state

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    def to_status(self) -> Json:
        body: Json = {
            "name": self.name,
            "image": self.image,
            "imageID": f"{RUNTIME}://{self.image}",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            body["containerID"] = self.container_id
        return body


def restart_allowed(policy: str, code: int) -> bool:
    """Whether a container that exited with ``code`` is restarted under ``policy``."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return code != 0
    return False


def init_policy(pod_policy: str, sidecar: bool) -> str:
    """Init containers rerun on failure unless the pod says Never; sidecars always."""
    if sidecar:
        return "Always"
    return "Never" if pod_policy == "Never" else "OnFailure"


def pod_phase(inits: Sequence[ContainerRecord], mains: Sequence[ContainerRecord]) -> str:
    """Phase from container records (the kubelet's getPhase, simplified to our states)."""
    plain_inits = [r for r in inits if not r.sidecar]
    if any(r.final and not r.succeeded for r in plain_inits):
        return "Failed"
    if not all(r.succeeded and r.final for r in plain_inits):
        return "Pending"
    if not mains:
        return "Succeeded"
    if all(r.final for r in mains):
        return "Succeeded" if all(r.succeeded for r in mains) else "Failed"
    if any(r.is_running or r.last_state or r.final for r in mains):
        return "Running"
    return "Pending"


def _names(records: Iterable[ContainerRecord]) -> str:
    return "[" + " ".join(r.name for r in records) + "]"


def desired_conditions(
    inits: Sequence[ContainerRecord],
    mains: Sequence[ContainerRecord],
    *,
    sandbox_ready: bool,
    phase: str,
    readiness_gates: Sequence[str] = (),
    existing: Sequence[Mapping[str, Any]] = (),
) -> list[Json]:
    terminal = phase in ("Succeeded", "Failed")
    conds: list[Json] = [{"type": "PodScheduled", "status": "True"}]
    conds.append(
        {
            "type": "PodReadyToStartContainers",
            "status": "True" if sandbox_ready and not terminal else "False",
        }
    )
    pending_inits = [r for r in inits if not r.sidecar and not (r.succeeded and r.final)]
    pending_inits += [r for r in inits if r.sidecar and not (r.started or r.last_state or r.final)]
    if pending_inits:
        conds.append(
            {
                "type": "Initialized",
                "status": "False",
                "reason": "ContainersNotInitialized",
                "message": f"containers with incomplete status: {_names(pending_inits)}",
            }
        )
    else:
        conds.append({"type": "Initialized", "status": "True"})
    unready = [r for r in inits if r.sidecar and not r.ready] + [r for r in mains if not r.ready]
    if terminal:
        ready: Json = {"status": "False", "reason": "PodCompleted"}
    elif unready:
        ready = {
            "status": "False",
            "reason": "ContainersNotReady",
            "message": f"containers with unready status: {_names(unready)}",
        }
    else:
        ready = {"status": "True"}
    conds.append({"type": "ContainersReady", **ready})
    gate_status = {str(c.get("type")): c.get("status") for c in existing}
    missing = [g for g in readiness_gates if gate_status.get(g) != "True"]
    if ready["status"] == "True" and missing:
        ready = {
            "status": "False",
            "reason": "ReadinessGatesNotReady",
            "message": f'corresponding condition of pod readiness gate "{missing[0]}" '
            "does not exist.",
        }
    conds.append({"type": "Ready", **ready})
    return conds


def with_transition_times(
    desired: Sequence[Json], previous: Sequence[Mapping[str, Any]], when: dt.datetime
) -> list[Json]:
    """Keep lastTransitionTime of conditions whose status did not change."""
    before = {str(c.get("type")): c for c in previous}
    out = []
    for cond in desired:
        old = before.get(cond["type"])
        stamp = (
            old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        ) or rfc3339(when)
        # reason/message default to null: in a strategic-merge patch that removes what an
        # earlier status had, instead of merging a stale reason into the new condition.
        out.append(
            {
                "reason": None,
                "message": None,
                **cond,
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
        )
    return out


@dataclass(frozen=True)
class PodView:
    """Everything pod_status needs besides container records."""

    host_ip: str
    pod_ip: str | None
    start_time: dt.datetime | None
    sandbox_ready: bool
    readiness_gates: tuple[str, ...] = ()
    observed_generation: int | None = None
    reason: str = ""
    message: str = ""


def pod_status(
    view: PodView,
    inits: Sequence[ContainerRecord],
    mains: Sequence[ContainerRecord],
    previous_conditions: Sequence[Mapping[str, Any]],
    when: dt.datetime,
) -> Json:
    phase = pod_phase(inits, mains)
    conds = desired_conditions(
        inits,
        mains,
        sandbox_ready=view.sandbox_ready,
        phase=phase,
        readiness_gates=view.readiness_gates,
        existing=previous_conditions,
    )
    status: Json = {
        "phase": phase,
        "conditions": with_transition_times(conds, previous_conditions, when),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "containerStatuses": [r.to_status() for r in mains],
    }
    if inits:
        status["initContainerStatuses"] = [r.to_status() for r in inits]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.start_time is not None:
        status["startTime"] = rfc3339(view.start_time)
    if view.observed_generation is not None:
        status["observedGeneration"] = view.observed_generation
    if view.reason:
        status["reason"] = view.reason
    if view.message:
        status["message"] = view.message
    return status


def without_times(status: Mapping[str, Any]) -> Json:
    """The status minus probe/transition stamps, to decide whether a write is needed."""
    return {k: v for k, v in status.items() if k != "conditions"} | {
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions", [])
        ]
    }


# -- restart back-off ---------------------------------------------------------------------

FIRST_RESTART_S = 1.0
BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 300.0
# A container that ran this long without crashing starts its back-off over (kubelet: 2x max).
BACKOFF_RESET_S = 600.0


def restart_delay(consecutive_crashes: int) -> float:
    """Delay before restart number ``consecutive_crashes`` (1-based): 1 s for the first so a
    one-off crash costs little, then 10 s doubling up to 5 min like the kubelet."""
    if consecutive_crashes <= 1:
        return FIRST_RESTART_S
    return min(BACKOFF_INITIAL_S * float(2 ** (consecutive_crashes - 2)), BACKOFF_MAX_S)


def next_crash_count(previous: int, ran_seconds: float) -> int:
    return 1 if ran_seconds >= BACKOFF_RESET_S else previous + 1

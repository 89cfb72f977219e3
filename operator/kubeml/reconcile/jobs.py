"""Observing batch/v1 Jobs: what state a Job is in, and why it failed.

Retries, deadlines and fail-fast rules are the Job's own fields; the operator
only reads the outcome the Job controller reached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Exit codes of our runtime programs (see kubeml.runtime): a bad input is
# permanent, so the Job's podFailurePolicy fails it at once instead of retrying.
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 3
EXIT_OOM_KILLED = 137


@dataclass(frozen=True)
class JobState:
    name: str
    active: bool
    succeeded: bool
    failed: bool
    reason: str | None = None
    message: str = ""
    exit_code: int | None = None
    start_time: str | None = None
    completion_time: str | None = None


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


_EXIT = re.compile(r"exit code (\d+)")


def observe(job: dict[str, Any] | None) -> JobState | None:
    """The state of a Job as its controller reports it (None if there is no Job)."""
    if job is None:
        return None
    status = job.get("status") or {}
    name = job["metadata"]["name"]
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    if complete is not None:
        return JobState(
            name,
            False,
            True,
            False,
            start_time=status.get("startTime"),
            completion_time=status.get("completionTime") or complete.get("lastTransitionTime"),
        )
    if failed is not None:
        message = str(failed.get("message") or "")
        match = _EXIT.search(message)
        return JobState(
            name,
            False,
            False,
            True,
            reason=failed.get("reason") or "JobFailed",
            message=message,
            exit_code=int(match.group(1)) if match else None,
            start_time=status.get("startTime"),
            completion_time=failed.get("lastTransitionTime"),
        )
    return JobState(name, True, False, False, start_time=status.get("startTime"))


def failure_reason(state: JobState, *, memory_limit: str | None, deadline: int) -> tuple[str, str]:
    """A condition reason and message for a Job that failed without a result manifest."""
    if state.reason == "DeadlineExceeded":
        return "DeadlineExceeded", (
            f"job {state.name} ran longer than activeDeadlineSeconds={deadline} and was stopped"
        )
    if state.exit_code == EXIT_OOM_KILLED:
        limit = memory_limit or "the node's memory"
        return "OOMKilled", (
            f"job {state.name} was killed for exceeding its memory limit {limit}; "
            "raise spec.resources.limits.memory or reduce the data"
        )
    detail = f": {state.message}" if state.message else ""
    return "JobFailed", f"job {state.name} failed ({state.reason}){detail}"


def pod_failure_policy(container: str) -> dict[str, Any]:
    """Fail the Job at once on a bad input or an OOM kill; retry anything else."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "In",
                    "values": [EXIT_BAD_INPUT, EXIT_OOM_KILLED],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }

"""Dataset decisions, from apply to a published version and every failure path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeml.conditions import find
from kubeml.reconcile import dataset as ds
from kubeml.reconcile.results import ResultRead
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml
from tests.support.outcomes import Seen

SETTINGS = Settings(bucket="kubeml", s3_endpoint="http://127.0.0.1:9000")
NOW = "2026-11-26T12:00:00Z"
LATER = "2026-11-26T12:05:00Z"
VERSION_A = "a" * 64
VERSION_B = "b" * 64


def body(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    doc["metadata"].update(namespace="ml", uid="uid-1", generation=generation)
    if status is not None:
        doc["status"] = status
    return doc


def job(name: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": list(conditions)}}


def complete(name: str) -> dict[str, Any]:
    return job(name, {"type": "Complete", "status": "True", "lastTransitionTime": NOW})


def failed(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return job(
        name,
        {
            "type": "Failed",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": NOW,
        },
    )


def ok_result(version: str = VERSION_A) -> dict[str, Any]:
    return {
        "ok": True,
        "version": version,
        "uri": f"s3://kubeml/datasets/{version}/",
        "rows": {"total": 150, "train": 90, "validation": 30, "test": 30},
        "columns": [
            {"name": "petal length (cm)", "type": "number", "role": "feature"},
            {"name": "target", "type": "integer", "role": "target"},
        ],
        "profile": {"uri": f"s3://kubeml/datasets/{version}/profile.json", "sha256": "c" * 64},
    }


def decide(
    b: dict[str, Any],
    job: dict[str, Any] | None,
    result: dict[str, Any] | None,
    settings: Settings,
    *,
    now: str,
    tick: str = "",
    result_error: str | None = None,
    other_jobs: tuple[str, ...] = (),
    unreachable: bool = False,
) -> Seen:
    """One decision, with the result as the controller would have read it."""
    target = ds.Target(ds.job_name(b["metadata"]["name"], b["spec"], tick), tick)
    read = None
    if result is not None:
        read = ResultRead("s3://kubeml/r.json", doc=result)
    elif unreachable:
        read = ResultRead("s3://kubeml/r.json", error=result_error or "connection refused")
    elif result_error is not None:
        read = ResultRead(result_error, absent=True)
    return Seen(ds.decide(b, target, job, read, settings, now=now, other_jobs=other_jobs))


def run_to_completion(b: dict[str, Any], result: dict[str, Any]) -> Seen:
    first = decide(b, None, None, SETTINGS, now=NOW)
    assert first.job is not None
    b = copy.deepcopy(b)
    b["status"] = first.status
    return decide(b, complete(first.job["metadata"]["name"]), result, SETTINGS, now=LATER)


def test_new_dataset_gets_a_job_and_a_preparing_condition() -> None:
    d = decide(body(), None, None, SETTINGS, now=NOW)
    assert d.job is not None
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "Preparing")
    assert ready["observedGeneration"] == 1
    assert d.status["observedGeneration"] == 1
    assert d.status["jobName"] == d.job["metadata"]["name"]


def test_job_name_is_deterministic_and_tracks_the_spec() -> None:
    a = decide(body(), None, None, SETTINGS, now=NOW).job
    b = decide(body(), None, None, SETTINGS, now=LATER).job
    assert a is not None and b is not None
    assert a["metadata"]["name"] == b["metadata"]["name"]
    changed = body(generation=2)
    changed["spec"]["split"]["seed"] = 7
    c = decide(changed, None, None, SETTINGS, now=NOW).job
    assert c is not None and c["metadata"]["name"] != a["metadata"]["name"]
    assert len(c["metadata"]["name"]) <= 63


def test_job_is_hardened_and_gets_credentials_only_by_secret_ref() -> None:
    d = decide(body(), None, None, SETTINGS, now=NOW)
    assert d.job is not None
    spec = d.job["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "kubeml-s3", "key": key}
        assert "value" not in env[key]
    assert container["command"] == ["kubeml", "prepare"]
    assert pod["restartPolicy"] == "Never"
    rule_codes = spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    assert 2 in rule_codes and 137 in rule_codes
    owner = d.job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Dataset", "uid-1", True)


def test_running_job_is_not_recreated() -> None:
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = decide(
        body(status=first.status), job(first.job["metadata"]["name"]), None, SETTINGS, now=LATER
    )
    assert d.job is None
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "Preparing"
    assert ready["lastTransitionTime"] == NOW


def test_success_publishes_the_version() -> None:
    d = run_to_completion(body(), ok_result())
    st = d.status
    assert st["version"] == VERSION_A and st["shortVersion"] == VERSION_A[:12]
    assert st["rows"]["total"] == 150
    ready, validated = find(st["conditions"], "Ready"), find(st["conditions"], "Validated")
    assert ready is not None and validated is not None
    assert (ready["status"], ready["reason"]) == ("True", "Prepared")
    assert ready["lastTransitionTime"] == LATER
    assert validated["status"] == "True"
    assert [e[1] for e in d.events] == ["Prepared"]


def test_finished_preparation_is_sticky() -> None:
    done = run_to_completion(body(), ok_result())
    # The Job was cleaned up (or deleted by hand): nothing is re-run.
    again = decide(body(status=done.status), None, None, SETTINGS, now=LATER)
    assert again.job is None
    assert again.status == done.status


def test_spec_change_makes_a_new_version_and_keeps_history() -> None:
    done = run_to_completion(body(), ok_result(VERSION_A))
    changed = body(generation=2, status=done.status)
    changed["spec"]["split"]["seed"] = 7
    start = decide(changed, None, None, SETTINGS, now=LATER, other_jobs=(done.status["jobName"],))
    assert start.job is not None
    assert start.stale_jobs == []  # the old Job stays until the new one has an outcome
    changed["status"] = start.status
    end = decide(
        changed,
        complete(start.job["metadata"]["name"]),
        ok_result(VERSION_B),
        SETTINGS,
        now=LATER,
        other_jobs=(done.status["jobName"],),
    )
    assert end.status["version"] == VERSION_B
    assert [h["version"] for h in end.status["history"]] == [VERSION_A]
    assert end.stale_jobs == [done.status["jobName"]]


def test_unchanged_content_is_reported_as_unchanged() -> None:
    done = run_to_completion(body(), ok_result(VERSION_A))
    changed = body(generation=2, status=done.status)
    changed["spec"]["validation"]["minRows"] = 10  # stricter rules, same data
    start = decide(changed, None, None, SETTINGS, now=LATER)
    assert start.job is not None
    changed["status"] = start.status
    end = decide(
        changed, complete(start.job["metadata"]["name"]), ok_result(VERSION_A), SETTINGS, now=LATER
    )
    ready = find(end.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "Unchanged"
    assert "history" not in end.status
    assert end.events == []


def test_validation_failure_lists_every_failed_check() -> None:
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    name = first.job["metadata"]["name"]
    result = {
        "ok": False,
        "reason": "ValidationFailed",
        "message": "2 checks failed",
        "failures": ["column 'a' has 3 nulls", "column 'b' above max 5"],
    }
    d = decide(
        body(status=first.status), failed(name, "PodFailurePolicy"), result, SETTINGS, now=LATER
    )
    ready, validated = (
        find(d.status["conditions"], "Ready"),
        find(d.status["conditions"], "Validated"),
    )
    assert ready is not None and validated is not None
    assert (ready["status"], ready["reason"]) == ("False", "ValidationFailed")
    assert "column 'a' has 3 nulls" in validated["message"]
    assert "column 'b' above max 5" in validated["message"]
    # And it is not retried when the operator sees it again.
    again = decide(body(status=d.status), None, None, SETTINGS, now=LATER)
    assert again.job is None


@pytest.mark.parametrize(
    ("job_reason", "message", "expected", "needle"),
    [
        (
            "PodFailurePolicy",
            "Container prepare for pod ml/x failed with exit code 137 matching FailJob rule",
            "OOMKilled",
            "1Gi",
        ),
        (
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
            "DeadlineExceeded",
            "activeDeadlineSeconds=3600",
        ),
        (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "JobFailed",
            "backoff limit",
        ),
    ],
)
def test_job_failures_without_a_result(
    job_reason: str, message: str, expected: str, needle: str
) -> None:
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = decide(
        body(status=first.status),
        failed(first.job["metadata"]["name"], job_reason, message),
        None,
        SETTINGS,
        now=LATER,
        result_error="key missing",
    )
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == expected
    assert needle in ready["message"]
    assert "iris" in ready["message"]


def test_succeeded_job_without_result_says_so() -> None:
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = decide(
        body(status=first.status),
        complete(first.job["metadata"]["name"]),
        None,
        SETTINGS,
        now=LATER,
        result_error="s3://kubeml/results/x.json: no such key",
    )
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "ResultMissing"
    assert "s3://kubeml/results/x.json" in ready["message"]


def test_refresh_keeps_the_dataset_ready() -> None:
    done = run_to_completion(body(), ok_result(VERSION_A))
    d = decide(
        body(status=done.status), None, None, SETTINGS, now=LATER, tick="2026-11-27T03:00:00Z"
    )
    assert d.job is not None and d.job["metadata"]["name"] != done.status["jobName"]
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Refreshing")


def test_memory_limit_reaches_the_program() -> None:
    b = body()
    b["spec"]["resources"] = {"limits": {"memory": "512Mi"}}
    d = decide(b, None, None, SETTINGS, now=NOW)
    assert d.job is not None
    env = {
        e["name"]: e.get("value") for e in d.job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBEML_MEMORY_LIMIT_BYTES"] == str(512 * 1024 * 1024)


def test_seeing_the_finished_job_again_changes_nothing() -> None:
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    name = first.job["metadata"]["name"]
    done = decide(body(status=first.status), complete(name), ok_result(), SETTINGS, now=NOW)
    again = decide(body(status=done.status), complete(name), ok_result(), SETTINGS, now=LATER)
    assert again.status == done.status
    assert again.events == []


def test_an_unreachable_store_is_retried_never_terminal() -> None:
    # Bug: a brief S3 outage when the Job finished ended the Dataset in ResultMissing
    # forever. Only a result proven absent is terminal.
    first = decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    name = first.job["metadata"]["name"]
    b = body(status=first.status)
    down = decide(b, complete(name), None, SETTINGS, now=LATER, unreachable=True)
    ready = find(down.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == (
        "False",
        "StorageUnavailable",
    )
    assert "s3://kubeml/r.json" in ready["message"] and "connection refused" in ready["message"]
    assert down.outcome.requeue_after is not None and down.outcome.requeue_after > 0
    assert down.events == []
    # When the store answers again, the result is published.
    back = decide(body(status=down.status), complete(name), ok_result(), SETTINGS, now=LATER)
    ready = find(back.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Prepared")


def test_a_schedule_the_scheduler_cannot_read_shows_as_a_condition() -> None:
    b = body()
    b["spec"]["refresh"] = {"schedule": "61 25 * * *"}  # admitted by an older CRD
    t = ds.target(b, datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    d = Seen(ds.decide(b, t, None, None, SETTINGS, now=NOW))
    cond = find(d.status["conditions"], "RefreshScheduled")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "InvalidSchedule")
    assert "iris" in cond["message"] and "minute '61'" in cond["message"]


def test_a_valid_schedule_asks_to_be_looked_at_when_it_is_due() -> None:
    b = body()
    b["metadata"]["creationTimestamp"] = "2026-11-26T10:00:00Z"
    b["spec"]["refresh"] = {"schedule": "*/15 * * * *"}
    t = ds.target(b, datetime(2026, 11, 26, 12, 7, 30, tzinfo=UTC))
    assert t.tick == "2026-11-26T12:00:00Z" and t.next_in == 450.0
    d = Seen(ds.decide(b, t, None, None, SETTINGS, now=NOW))
    assert d.outcome.requeue_after == 450.0
    assert find(d.status["conditions"], "RefreshScheduled") is None


def test_what_cleaning_removed_is_in_status_and_the_message() -> None:
    result = {**ok_result(), "removed": {"missingTarget": 2, "duplicates": 3}}
    d = run_to_completion(body(), result)
    assert d.status["removed"] == {"missingTarget": 2, "duplicates": 3}
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None
    assert ready["message"].endswith("; removed 2 without a target, 3 duplicate")


def test_a_version_without_cleaning_drops_the_old_counts() -> None:
    cleaned = run_to_completion(body(), {**ok_result(VERSION_A), "removed": {"duplicates": 1}})
    changed = body(generation=2, status=cleaned.status)
    changed["spec"]["split"]["seed"] = 7
    start = decide(changed, None, None, SETTINGS, now=LATER)
    assert start.job is not None
    changed["status"] = start.status
    end = decide(
        changed, complete(start.job["metadata"]["name"]), ok_result(VERSION_B), SETTINGS, now=LATER
    )
    assert "removed" not in end.status
    ready = find(end.status["conditions"], "Ready")
    assert ready is not None and "removed" not in ready["message"]

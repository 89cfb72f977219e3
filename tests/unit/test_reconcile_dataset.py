"""Dataset decisions, from apply to a published version and every failure path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeml.conditions import find
from kubeml.reconcile import dataset as ds
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml

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


def run_to_completion(b: dict[str, Any], result: dict[str, Any]) -> ds.Decision:
    first = ds.decide(b, None, None, SETTINGS, now=NOW)
    assert first.job is not None
    b = copy.deepcopy(b)
    b["status"] = first.status
    return ds.decide(b, complete(first.job["metadata"]["name"]), result, SETTINGS, now=LATER)


def test_new_dataset_gets_a_job_and_a_preparing_condition() -> None:
    d = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert d.job is not None
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "Preparing")
    assert ready["observedGeneration"] == 1
    assert d.status["observedGeneration"] == 1
    assert d.status["jobName"] == d.job["metadata"]["name"]


def test_job_name_is_deterministic_and_tracks_the_spec() -> None:
    a = ds.decide(body(), None, None, SETTINGS, now=NOW).job
    b = ds.decide(body(), None, None, SETTINGS, now=LATER).job
    assert a is not None and b is not None
    assert a["metadata"]["name"] == b["metadata"]["name"]
    changed = body(generation=2)
    changed["spec"]["split"]["seed"] = 7
    c = ds.decide(changed, None, None, SETTINGS, now=NOW).job
    assert c is not None and c["metadata"]["name"] != a["metadata"]["name"]
    assert len(c["metadata"]["name"]) <= 63


def test_job_is_hardened_and_gets_credentials_only_by_secret_ref() -> None:
    d = ds.decide(body(), None, None, SETTINGS, now=NOW)
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
    first = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = ds.decide(
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
    again = ds.decide(body(status=done.status), None, None, SETTINGS, now=LATER)
    assert again.job is None
    assert again.status == done.status


def test_spec_change_makes_a_new_version_and_keeps_history() -> None:
    done = run_to_completion(body(), ok_result(VERSION_A))
    changed = body(generation=2, status=done.status)
    changed["spec"]["split"]["seed"] = 7
    start = ds.decide(
        changed, None, None, SETTINGS, now=LATER, other_jobs=(done.status["jobName"],)
    )
    assert start.job is not None
    assert start.stale_jobs == []  # the old Job stays until the new one has an outcome
    changed["status"] = start.status
    end = ds.decide(
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
    start = ds.decide(changed, None, None, SETTINGS, now=LATER)
    assert start.job is not None
    changed["status"] = start.status
    end = ds.decide(
        changed, complete(start.job["metadata"]["name"]), ok_result(VERSION_A), SETTINGS, now=LATER
    )
    ready = find(end.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "Unchanged"
    assert "history" not in end.status
    assert end.events == []


def test_validation_failure_lists_every_failed_check() -> None:
    first = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    name = first.job["metadata"]["name"]
    result = {
        "ok": False,
        "reason": "ValidationFailed",
        "message": "2 checks failed",
        "failures": ["column 'a' has 3 nulls", "column 'b' above max 5"],
    }
    d = ds.decide(
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
    again = ds.decide(body(status=d.status), None, None, SETTINGS, now=LATER)
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
    first = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = ds.decide(
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
    first = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    d = ds.decide(
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
    d = ds.decide(
        body(status=done.status), None, None, SETTINGS, now=LATER, tick="2026-11-27T03:00:00Z"
    )
    assert d.job is not None and d.job["metadata"]["name"] != done.status["jobName"]
    ready = find(d.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Refreshing")


def test_memory_limit_reaches_the_program() -> None:
    b = body()
    b["spec"]["resources"] = {"limits": {"memory": "512Mi"}}
    d = ds.decide(b, None, None, SETTINGS, now=NOW)
    assert d.job is not None
    env = {
        e["name"]: e.get("value") for e in d.job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBEML_MEMORY_LIMIT_BYTES"] == str(512 * 1024 * 1024)


def test_seeing_the_finished_job_again_changes_nothing() -> None:
    first = ds.decide(body(), None, None, SETTINGS, now=NOW)
    assert first.job is not None
    name = first.job["metadata"]["name"]
    done = ds.decide(body(status=first.status), complete(name), ok_result(), SETTINGS, now=NOW)
    again = ds.decide(body(status=done.status), complete(name), ok_result(), SETTINGS, now=LATER)
    assert again.status == done.status
    assert again.events == []

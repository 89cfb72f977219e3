"""Stage timings: measured in the Job, completed and bounded by the operator, written to
status once, and counted once when the outcome is recorded."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from kubeml import metrics
from kubeml.reconcile import stages
from kubeml.reconcile.outcome import Finished
from kubeml.runtime import stages as runtime_stages
from tests.unit import test_reconcile_dataset as ds_cases
from tests.unit import test_reconcile_trainingrun as tr_cases

CREATED = "2026-11-26T12:00:00Z"


def job_created(job: dict[str, Any], at: str = CREATED) -> dict[str, Any]:
    return {**job, "metadata": {**job["metadata"], "creationTimestamp": at}}


def with_stages(doc: dict[str, Any], started: str, *names: str) -> dict[str, Any]:
    return {
        **doc,
        "startedAt": started,
        "stages": [{"name": n, "seconds": 1.5} for n in names],
    }


def test_the_wait_for_the_pod_comes_first_then_the_jobs_own_stages() -> None:
    doc = with_stages({"ok": True}, "2026-11-26T12:00:07.250Z", "fetch", "validate", "upload")
    got = stages.from_result("Dataset", doc, {"metadata": {"creationTimestamp": CREATED}})
    assert got == [
        {"name": "pod", "seconds": 7.25},
        {"name": "fetch", "seconds": 1.5},
        {"name": "validate", "seconds": 1.5},
        {"name": "upload", "seconds": 1.5},
    ]


def test_names_a_pod_made_up_and_impossible_numbers_are_dropped() -> None:
    doc = {
        "startedAt": "not a time",
        "stages": [
            {"name": "fetch", "seconds": 2},
            {"name": "mine-now", "seconds": 1},  # a pod must not mint label values
            {"name": "pod", "seconds": 1},  # only the operator measures the wait
            {"name": "fit", "seconds": -1},
            {"name": "evaluate", "seconds": float("nan")},
            {"name": "upload", "seconds": "3"},
            "fit",
        ],
    }
    got = stages.from_result("TrainingRun", doc, {"metadata": {"creationTimestamp": CREATED}})
    assert got == [{"name": "fetch", "seconds": 2.0}]


def test_a_pod_clock_a_little_behind_never_makes_a_negative_wait() -> None:
    assert stages.seconds_between(CREATED, "2026-11-26T11:59:59Z") == 0.0
    assert stages.seconds_between(None, CREATED) is None


def test_the_runtime_reports_its_start_and_stages_in_order() -> None:
    watch = runtime_stages.Stopwatch()
    watch.lap("fetch")
    watch.lap("upload")
    doc = runtime_stages.report({"ok": True}, watch.stages)
    assert [s["name"] for s in doc["stages"]] == ["fetch", "upload"]
    assert all(s["seconds"] >= 0 for s in doc["stages"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["startedAt"])
    started = datetime.fromisoformat(doc["startedAt"].replace("Z", "+00:00"))
    assert started <= datetime.now(UTC)


def test_a_prepared_dataset_records_its_stages_and_reports_one_finished_run() -> None:
    first = ds_cases.decide(ds_cases.body(), None, None, ds_cases.SETTINGS, now=ds_cases.NOW)
    assert first.job is not None
    b = ds_cases.body(status=first.status)
    job = job_created(ds_cases.complete(first.job["metadata"]["name"]))
    doc = with_stages(ds_cases.ok_result(), "2026-11-26T12:00:03Z", "fetch", "validate")
    done = ds_cases.decide(b, job, doc, ds_cases.SETTINGS, now=ds_cases.LATER)
    assert [s["name"] for s in done.status["stages"]] == ["pod", "fetch", "validate"]
    assert done.status["stages"][0]["seconds"] == 3.0
    assert done.outcome.finished == [
        Finished("Dataset", True, 300.0, (("pod", 3.0), ("fetch", 1.5), ("validate", 1.5)))
    ]
    # The next reconciles see the outcome recorded: nothing is counted again.
    again = ds_cases.decide(
        ds_cases.body(status=done.status), job, doc, ds_cases.SETTINGS, now=ds_cases.LATER
    )
    assert again.outcome.finished == [] and again.status == done.status


def test_a_failed_preparation_counts_as_failed() -> None:
    first = ds_cases.decide(ds_cases.body(), None, None, ds_cases.SETTINGS, now=ds_cases.NOW)
    assert first.job is not None
    b = ds_cases.body(status=first.status)
    job = job_created(ds_cases.failed(first.job["metadata"]["name"], "BackoffLimitExceeded"))
    bad = {"ok": False, "reason": "ValidationFailed", "message": "x", "failures": ["y"]}
    done = ds_cases.decide(b, job, bad, ds_cases.SETTINGS, now=ds_cases.LATER)
    [finished] = done.outcome.finished
    assert (finished.kind, finished.succeeded, finished.stages) == ("Dataset", False, ())
    assert "stages" not in done.status


def test_a_finished_run_records_its_stages_and_reports_one_finished_run() -> None:
    b = tr_cases.started()
    assert b["status"]["startTime"] == tr_cases.NOW
    job = job_created(tr_cases.done(), tr_cases.NOW)
    doc = with_stages(
        tr_cases.result(), "2026-11-26T12:00:10Z", "fetch", "search", "fit", "evaluate", "upload"
    )
    d = tr_cases.decide(b, job=job, result=doc, now=tr_cases.LATER)
    names = [s["name"] for s in d.status["stages"]]
    assert names == ["pod", "fetch", "search", "fit", "evaluate", "upload"]
    [finished] = d.outcome.finished
    assert (finished.kind, finished.succeeded, finished.seconds) == ("TrainingRun", True, 300.0)
    assert finished.stages[0] == ("pod", 10.0)
    b2 = copy.deepcopy(b)
    b2["status"] = d.status
    assert tr_cases.decide(b2, job=job, result=doc, now=tr_cases.LATER).outcome.finished == []


def test_a_run_failing_its_gate_counts_as_failed() -> None:
    b = tr_cases.started()
    d = tr_cases.decide(b, job=tr_cases.done(), result=tr_cases.result(accuracy=0.5))
    [finished] = d.outcome.finished
    assert finished.succeeded is False


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_driver_counts_a_finished_run_in_the_histograms() -> None:
    metrics.start_series(["Dataset"])
    runs = {"kind": "TrainingRun", "result": "failed"}
    stage = {"kind": "TrainingRun", "stage": "fit"}
    before = (
        sample("kubeml_pipeline_runs_total", **runs),
        sample("kubeml_pipeline_duration_seconds_count", **runs),
        sample("kubeml_pipeline_stage_duration_seconds_count", **stage),
    )
    metrics.pipeline_finished(Finished("TrainingRun", False, 12.0, (("fit", 3.0),)))
    after = (
        sample("kubeml_pipeline_runs_total", **runs),
        sample("kubeml_pipeline_duration_seconds_count", **runs),
        sample("kubeml_pipeline_stage_duration_seconds_count", **stage),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    # Started at zero: a failure panel shows 0, and the first error is an increase.
    assert (
        REGISTRY.get_sample_value(
            "kubeml_operator_reconciles_total", {"kind": "Dataset", "result": "error"}
        )
        is not None
    )

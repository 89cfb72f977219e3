"""TrainingRun decisions: waiting, one Job, sticky outcomes, gates, registration."""

from __future__ import annotations

import copy
from typing import Any

from kubeml.conditions import find
from kubeml.reconcile import trainingrun as tr
from kubeml.reconcile.results import ResultRead
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml
from tests.support.outcomes import Seen

S = Settings(bucket="kubeml")
NOW, LATER = "2026-11-26T12:00:00Z", "2026-11-26T12:05:00Z"
DV = "d" * 64


def run() -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
    doc["metadata"].update(namespace="ml", uid="run-uid", generation=1)
    return doc


def dataset(ready: bool = True) -> dict[str, Any]:
    cond = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "Prepared" if ready else "ValidationFailed",
        "message": "col x bad",
        "lastTransitionTime": NOW,
    }
    return {"metadata": {"name": "iris"}, "status": {"version": DV, "conditions": [cond]}}


def done(name: str = "iris-rf-train") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": LATER}]
        },
    }


def result(accuracy: float = 0.97) -> dict[str, Any]:
    return {
        "ok": True,
        "metrics": {
            "test": {"accuracy": accuracy, "f1_macro": accuracy},
            "validation": {"accuracy": 0.95, "f1_macro": 0.95},
        },
        "bestParams": {"n_estimators": 50, "max_depth": 3},
        "artifact": {
            "uri": "s3://kubeml/models/iris-classifier/" + "e" * 64 + ".skops",
            "sha256": "e" * 64,
            "size": 1234,
            "format": "skops",
        },
        "signature": {
            "task": "classification",
            "inputs": [{"name": "a", "dtype": "number"}],
            "outputs": [{"name": "predict", "dtype": "integer"}],
            "classes": ["0", "1", "2"],
        },
    }


RESULT_URI = "s3://kubeml/namespaces/ml/results/trainingruns/iris-rf/run-uid.json"


def decide(body: dict[str, Any], **kw: Any) -> Seen:
    """One decision, with the result read as the controller would have read it:
    found, proven absent (``result_error``), or unreachable."""
    args: dict[str, Any] = {
        "dataset": dataset(),
        "job": None,
        "versions": [],
        "settings": S,
        "now": NOW,
    }
    doc = kw.pop("result", None)
    error = kw.pop("result_error", None)
    unreachable = kw.pop("unreachable", False)
    args.update(kw)
    read = None
    if doc is not None:
        read = ResultRead(RESULT_URI, doc=doc)
    elif unreachable:
        read = ResultRead(RESULT_URI, error="Could not connect to the endpoint URL")
    elif tr.result_needed(body, args["job"]) is not None:
        read = ResultRead(RESULT_URI, absent=True, error=error or "")
    return Seen(tr.decide(body, result=read, **args))


def started() -> dict[str, Any]:
    b = run()
    b["status"] = decide(b).status
    return b


def cond(d: Seen, type_: str = "Succeeded") -> dict[str, Any]:
    c = find(d.status["conditions"], type_)
    assert c is not None
    return dict(c)


def test_waits_for_a_missing_or_unready_dataset() -> None:
    d = decide(run(), dataset=None)
    assert d.job is None and cond(d)["reason"] == "DatasetNotFound"
    assert cond(d)["status"] == "Unknown" and cond(d, "Ready")["status"] == "False"
    d = decide(run(), dataset=dataset(ready=False))
    assert d.job is None and cond(d)["reason"] == "DatasetNotReady"
    assert "col x bad" in cond(d)["message"]


def test_ready_dataset_starts_one_job_pinned_to_its_version() -> None:
    d = decide(run())
    assert d.job is not None and d.job["metadata"]["name"] == "iris-rf-train"
    assert d.status["datasetVersion"] == DV
    assert cond(d)["reason"] == "Running"
    env = {
        e["name"]: e.get("value") for e in d.job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert f"s3://kubeml/namespaces/ml/datasets/{DV}/" in env["KUBEML_TRAININGRUN"]
    assert d.job["spec"]["template"]["spec"]["containers"][0]["command"] == ["kubeml", "train"]


def test_running_job_is_left_alone() -> None:
    b = started()
    d = decide(b, job={"metadata": {"name": "iris-rf-train"}, "status": {"active": 1}})
    assert d.job is None and cond(d)["reason"] == "Running"


def test_passing_run_registers_the_first_version_as_champion() -> None:
    d = decide(started(), job=done(), result=result())
    assert cond(d)["status"] == "True" and cond(d, "Ready")["status"] == "True"
    mv = d.model_version
    assert mv is not None and mv["metadata"]["name"] == "iris-classifier-v1"
    assert mv["spec"]["aliases"] == ["champion"]
    assert mv["spec"]["metrics"] == {"accuracy": 0.97, "f1_macro": 0.97}
    assert mv["spec"]["lineage"] == {
        "trainingRun": "iris-rf",
        "dataset": "iris",
        "datasetVersion": DV,
    }
    assert mv["metadata"]["labels"]["kubeml.io/dataset-version"] == DV[:12]
    assert d.status["modelVersion"] == "iris-classifier-v1"
    assert d.status["keyMetric"] == "accuracy=0.9700"
    # kubectl get mv shows it: the version carries the run's key metric.
    assert mv["spec"]["keyMetric"] == "accuracy=0.9700"


def test_later_versions_get_the_next_number_and_no_alias() -> None:
    existing = [
        {
            "metadata": {"name": "iris-classifier-v3", "annotations": {}},
            "spec": {"version": 3, "aliases": ["champion"]},
            "status": {},
        }
    ]
    d = decide(started(), job=done(), result=result(), versions=existing)
    assert d.model_version is not None
    assert d.model_version["spec"]["version"] == 4
    assert "aliases" not in d.model_version["spec"]


def test_registration_is_idempotent_after_a_crash() -> None:
    first = decide(started(), job=done(), result=result())
    assert first.model_version is not None
    created = copy.deepcopy(first.model_version)
    # The operator died after creating the version but before writing status.
    d = decide(started(), job=done(), result=result(), versions=[created])
    assert d.model_version is None
    assert d.status["modelVersion"] == "iris-classifier-v1"


def test_failed_gate_registers_nothing() -> None:
    d = decide(started(), job=done(), result=result(accuracy=0.5))
    assert d.model_version is None
    assert (cond(d)["status"], cond(d)["reason"]) == ("False", "GateFailed")
    assert "accuracy >= 0.85 (got 0.5)" in cond(d)["message"]


def test_outcomes_are_sticky() -> None:
    b = started()
    b["status"] = decide(b, job=done(), result=result(accuracy=0.5)).status
    d = decide(b, job=None)
    assert d.job is None and d.model_version is None
    assert d.status == b["status"]


def test_runtime_failure_reason_is_kept() -> None:
    d = decide(
        started(),
        job={
            "metadata": {"name": "iris-rf-train"},
            "status": {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": "exit code 2",
                        "lastTransitionTime": LATER,
                    }
                ]
            },
        },
        result={
            "ok": False,
            "reason": "TargetMismatch",
            "message": "target column target is continuous",
        },
    )
    assert (cond(d)["reason"], cond(d)["status"]) == ("TargetMismatch", "False")
    assert "continuous" in cond(d)["message"]


def test_deadline_and_oom_without_result() -> None:
    failed = {
        "metadata": {"name": "iris-rf-train"},
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                    "lastTransitionTime": LATER,
                }
            ]
        },
    }
    d = decide(started(), job=failed, result_error="no such key")
    assert cond(d)["reason"] == "DeadlineExceeded" and "900" in cond(d)["message"]


def test_champion_is_passed_to_the_job() -> None:
    champ = {
        "metadata": {"name": "iris-classifier-v2"},
        "spec": {
            "version": 2,
            "artifact": {"uri": "s3://kubeml/x", "sha256": "f" * 64, "size": 1, "format": "skops"},
            "lineage": {"datasetVersion": DV},
            "metrics": {"accuracy": 0.9},
        },
    }
    champ["spec"]["aliases"] = ["champion"]
    gated = run()
    gated["spec"]["gates"] = {"beat": {"alias": "champion", "metric": "accuracy"}}
    d = decide(gated, versions=[champ])
    assert d.job is not None
    env = {
        e["name"]: e.get("value") for e in d.job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert '"name": "iris-classifier-v2"' in env["KUBEML_TRAININGRUN"]


def test_job_created_before_a_crash_is_adopted() -> None:
    first = decide(run())
    assert first.job is not None
    job = {**first.job, "status": done()["status"]}
    # Status was never written: the run looks brand new, but its Job exists.
    d = decide(run(), job=job, result=result())
    assert d.job is None
    assert d.status["datasetVersion"] == DV
    assert d.model_version is not None


def beat_gated() -> dict[str, Any]:
    b = run()
    b["spec"]["gates"] = {"beat": {"alias": "champion", "metric": "accuracy"}}
    b["status"] = decide(b).status
    return b


def version(
    n: int, accuracy: float, *, champion: bool, raced: bool, data: str = DV
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": f"iris-classifier-v{n}",
            "namespace": "ml",
            "resourceVersion": str(100 + n),
            "annotations": {"kubeml.io/compared-with": ""} if raced else {},
        },
        "spec": {
            "model": "iris-classifier",
            "version": n,
            "aliases": ["champion"] if champion else [],
            "lineage": {"datasetVersion": data},
            "metrics": {"accuracy": accuracy},
        },
    }


def measured(accuracy: float, name: str = "iris-classifier-v1") -> dict[str, Any]:
    out = result(accuracy=0.7)
    out["champion"] = {"name": name, "version": int(name.rsplit("v", 1)[1])}
    out["championMetrics"] = {"accuracy": accuracy}
    return out


def test_the_gate_judges_the_champion_the_job_measured_not_the_alias_holder_now() -> None:
    # Bug: with the alias removed while the run trained, a 0.7 run passed "no version
    # holds it" although its Job had measured the champion at 0.933.
    d = decide(beat_gated(), job=done(), result=measured(0.933), versions=[])
    assert (cond(d)["status"], cond(d)["reason"]) == ("False", "GateFailed")
    assert "iris-classifier-v1: 0.933" in cond(d)["message"]
    assert d.model_version is None


def test_a_run_that_beat_a_champion_who_lost_the_alias_meanwhile_fails_explicitly() -> None:
    better = measured(0.6)  # the run (0.7) beat v1 (0.6) as measured
    for holders, now in (
        ([], "no version holds it now"),
        ([version(3, 0.9, champion=True, raced=False)], "iris-classifier-v3 holds it now"),
    ):
        v1 = version(1, 0.6, champion=False, raced=False)
        d = decide(beat_gated(), job=done(), result=better, versions=[v1, *holders])
        assert (cond(d)["status"], cond(d)["reason"]) == ("False", "ChampionChanged")
        assert (
            "compared with iris-classifier-v1" in cond(d)["message"] and now in cond(d)["message"]
        )
        assert d.model_version is None


def test_the_measured_champion_still_holding_the_alias_is_the_one_compared() -> None:
    v1 = version(1, 0.6, champion=True, raced=False)
    d = decide(beat_gated(), job=done(), result=measured(0.6), versions=[v1])
    assert cond(d)["status"] == "True"
    mv = d.model_version
    assert mv is not None and "aliases" not in mv["spec"]  # promotion is not the gate's job
    assert mv["metadata"]["annotations"]["kubeml.io/compared-with"] == "iris-classifier-v1"


def test_runs_racing_for_the_first_version_are_decided_by_their_metrics() -> None:
    # Bug: three beat-gated runs of a new model started together; the worst finished
    # first and became champion, and both better runs failed "metrics are unknown".
    worst = version(1, 0.667, champion=True, raced=True)
    better = result(accuracy=0.933)  # measured no champion: none existed at its start
    d = decide(beat_gated(), job=done(), result=better, versions=[worst])
    assert cond(d)["status"] == "True"
    mv = d.model_version
    assert mv is not None and mv["spec"]["version"] == 2
    assert mv["spec"]["aliases"] == ["champion"]  # the better racer takes the alias
    # A racer that is not better fails against the holder's metrics on the same split.
    best = version(1, 0.95, champion=True, raced=True)
    d = decide(beat_gated(), job=done(), result=better, versions=[best])
    assert (cond(d)["status"], cond(d)["reason"]) == ("False", "GateFailed")
    assert "0.95" in cond(d)["message"]


def test_a_racer_finding_a_champion_trained_on_other_data_cannot_compare() -> None:
    other = version(1, 0.5, champion=True, raced=False, data="e" * 64)
    d = decide(beat_gated(), job=done(), result=result(accuracy=0.99), versions=[other])
    assert (cond(d)["status"], cond(d)["reason"]) == ("False", "ChampionChanged")
    assert "other data" in cond(d)["message"]


def test_the_first_racer_to_finish_with_no_holder_passes_and_takes_the_first_alias() -> None:
    d = decide(beat_gated(), job=done(), result=result(accuracy=0.9), versions=[])
    assert cond(d)["status"] == "True"
    mv = d.model_version
    assert mv is not None and mv["spec"]["aliases"] == ["champion"]
    assert mv["metadata"]["annotations"]["kubeml.io/compared-with"] == ""


def test_an_unreachable_result_is_retried_not_terminal() -> None:
    d = decide(started(), job=done(), unreachable=True)
    assert (cond(d)["status"], cond(d)["reason"]) == ("Unknown", "StorageUnavailable")
    assert RESULT_URI in cond(d)["message"]
    assert d.outcome.requeue_after and d.model_version is None and d.events == []
    b = started()
    b["status"] = d.status
    after = decide(b, job=done(), result=result())
    assert cond(after)["status"] == "True"
    # Proven absent is terminal.
    gone = decide(b, job=done())
    assert (cond(gone)["status"], cond(gone)["reason"]) == ("False", "ResultMissing")


def test_cpu_limits_in_any_admitted_form_reach_the_job() -> None:
    # Bug: "250000u" (admitted by the CRD) crashed a float-based parser.
    for cpu, cores in (("250000u", "1"), ("2", "2"), ("1500m", "1"), ("4e0", "4")):
        b = run()
        b["spec"]["resources"] = {"limits": {"cpu": cpu, "memory": "1Gi"}}
        job = decide(b).job
        assert job is not None
        env = {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["KUBEML_CPU_LIMIT"] == cores, cpu


# A distributed search: an Indexed Job of shards first, then the training Job.


def distributed(pods: int = 3) -> dict[str, Any]:
    b = run()
    b["spec"]["search"]["parallelism"] = pods
    return b


def failed(name: str, message: str = "") -> dict[str, Any]:
    cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{**cond, "message": message, "lastTransitionTime": LATER}]},
    }


def decide_search(body: dict[str, Any], **kw: Any) -> Seen:
    search_job = kw.pop("search_job", None)
    doc = kw.pop("result", None)
    args: dict[str, Any] = {
        "dataset": dataset(),
        "job": None,
        "versions": [],
        "settings": S,
        "now": NOW,
    }
    args.update(kw)
    read = None
    if doc is not None:
        read = ResultRead(RESULT_URI, doc=doc)
    elif tr.result_needed(body, args["job"], search_job) is not None:
        read = ResultRead(RESULT_URI, absent=True)
    return Seen(tr.decide(body, result=read, search_job=search_job, **args))


def test_a_distributed_search_starts_an_indexed_job_of_shards_first() -> None:
    d = decide_search(distributed(3))
    job = d.job
    assert job is not None and job["metadata"]["name"] == "iris-rf-search"
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimitPerIndex"] == 1 and "backoffLimit" not in spec
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubeml", "train", "--shard"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "search"
    # The same pod hardening as every runtime Job.
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    st = d.status
    assert st["searchJobName"] == "iris-rf-search" and st["datasetVersion"] == DV
    assert "jobName" not in st
    assert cond(d)["reason"] == "Running" and "3 pods" in cond(d)["message"]


def test_while_the_shards_run_nothing_else_is_created() -> None:
    b = distributed()
    b["status"] = decide_search(b).status
    running = {"metadata": {"name": "iris-rf-search"}, "status": {"active": 3}}
    d = decide_search(b, search_job=running)
    assert d.job is None and cond(d)["reason"] == "Running"


def test_finished_shards_start_the_training_job_on_the_same_data() -> None:
    b = distributed()
    b["status"] = decide_search(b).status
    d = decide_search(b, search_job=done("iris-rf-search"), dataset=None)
    job = d.job
    assert job is not None and job["metadata"]["name"] == "iris-rf-train"
    assert "completionMode" not in job["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["kubeml", "train"]
    assert d.status["jobName"] == "iris-rf-train" and d.status["datasetVersion"] == DV


def test_the_training_job_result_records_the_trial_table() -> None:
    b = distributed()
    b["status"] = decide_search(b).status
    doc = result()
    doc["trials"] = {
        "uri": "s3://kubeml/namespaces/ml/results/trainingruns/iris-rf/run-uid/trials.parquet",
        "count": 6,
        "parallelism": 3,
        "metric": "accuracy",
        "best": [{"rank": 1, "candidate": 4, "params": {"max_depth": 3}, "score": 0.95}],
    }
    d = decide_search(b, search_job=done("iris-rf-search"), job=done(), result=doc)
    assert cond(d)["status"] == "True"
    assert d.status["trials"] == doc["trials"]


def test_a_failed_shard_fails_the_run_with_its_reason() -> None:
    b = distributed()
    b["status"] = decide_search(b).status
    bad = {"ok": False, "reason": "InvalidParams", "message": "search.space.max_depth=-1: bad"}
    d = decide_search(b, search_job=failed("iris-rf-search"), result=bad)
    assert cond(d)["status"] == "False" and cond(d)["reason"] == "InvalidParams"
    assert "max_depth" in cond(d)["message"] and d.job is None


def test_a_search_job_that_failed_without_a_report_names_the_job() -> None:
    b = distributed()
    b["status"] = decide_search(b).status
    d = decide_search(b, search_job=failed("iris-rf-search", "Job has reached the backoff"))
    assert cond(d)["reason"] == "JobFailed"
    assert "iris-rf-search" in cond(d)["message"]


def test_a_search_job_made_before_a_crash_is_adopted() -> None:
    b = distributed()
    job = decide_search(b).job
    assert job is not None
    job["status"] = {"active": 3}
    d = decide_search(b, search_job=job)
    assert d.job is None
    assert d.status["searchJobName"] == "iris-rf-search" and d.status["datasetVersion"] == DV


def test_parallelism_one_searches_inside_the_training_job() -> None:
    d = decide_search(distributed(1))
    assert d.job is not None and d.job["metadata"]["name"] == "iris-rf-train"
    assert "searchJobName" not in d.status


def test_the_runs_report_is_recorded_whether_or_not_its_gates_pass() -> None:
    page = {
        "uri": "s3://kubeml/namespaces/ml/models/iris-classifier/reports/" + "a" * 64 + ".html",
        "sha256": "a" * 64,
        "size": 99,
    }
    for accuracy in (0.97, 0.5):
        d = decide(started(), job=done(), result={**result(accuracy), "report": page})
        assert d.status["report"] == page
    # Anything else a result may name is left out, never written into status.
    for bad in (
        {**page, "uri": page["uri"].replace("/ml/", "/other/")},  # another namespace's
        {**page, "uri": page["uri"].replace("s3://kubeml/", "s3://elsewhere/")},
        {**page, "uri": page["uri"].replace("reports/", "")},  # not a report key
        {**page, "sha256": "not-a-digest"},
        "s3://kubeml/x.html",
        None,
    ):
        d = decide(started(), job=done(), result={**result(), "report": bad})
        assert "report" not in d.status, bad
    no_size = {k: v for k, v in page.items() if k != "size"}
    d = decide(started(), job=done(), result={**result(), "report": {**no_size, "size": -1}})
    assert d.status["report"] == no_size

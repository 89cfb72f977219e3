"""TrainingRun decisions: wait for data, run one Job, judge the gates, register."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .. import labels, quantity
from ..api import ManifestError, TrainingRun, parse_manifest
from ..api.estimators import DEFAULT_METRICS, ESTIMATORS
from ..conditions import Status, find
from ..settings import Settings
from ..storage import layout
from . import champion, gates, jobs, pods, registry, stages
from .outcome import Create, Outcome
from .results import RETRY_SECONDS, ResultRead
from .step import Step

SUCCEEDED = "Succeeded"
READY = "Ready"
CONTAINER = "train"
DEFAULT_BACKOFF_LIMIT = 1
DEFAULT_DEADLINE = 3600
WAITING = frozenset(
    {
        "Pending",
        "DatasetNotFound",
        "DatasetNotReady",
        "DatasetVersionNotFound",
        "Running",
        "Registering",
    }
)
FIRST_ALIAS = "champion"
SHA256 = re.compile(r"[0-9a-f]{64}")


def job_name(run: str) -> str:
    return f"{run[:50]}-train"


def search_job_name(run: str) -> str:
    return f"{run[:49]}-search"


def parallelism(run: TrainingRun) -> int:
    """Pods of the search; 1 means the training Job searches by itself."""
    return run.spec.search.parallelism if run.spec.search else 1


def result_key(namespace: str, name: str, uid: str) -> str:
    return layout.run_result_key(namespace, name, uid)


def resolve_dataset(
    run: TrainingRun, dataset: dict[str, Any] | None
) -> tuple[str | None, str, str]:
    """(dataset version to train on, waiting reason, message); version None = wait."""
    ref = run.spec.dataset_ref
    if dataset is None:
        return None, "DatasetNotFound", f"dataset {ref.name} does not exist"
    st = dataset.get("status") or {}
    ready = find(st.get("conditions"), READY)
    current = st.get("version")
    if ref.version:
        known = {current, *(h.get("version") for h in st.get("history") or [])}
        if ref.version in known:
            return ref.version, "", ""
        return (
            None,
            "DatasetVersionNotFound",
            (
                f"dataset {ref.name} has no version {ref.version[:12]} (current: "
                f"{(current or 'none')[:12]})"
            ),
        )
    if ready is None or ready.get("status") != "True" or not current:
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not prepared yet"
        return None, "DatasetNotReady", f"dataset {ref.name} is not ready ({why})"
    return str(current), "", ""


def build_job(
    body: dict[str, Any],
    run: TrainingRun,
    dataset_version: str,
    holder: dict[str, Any] | None,
    settings: Settings,
    *,
    search: bool = False,
) -> dict[str, Any]:
    """The training Job, or (``search``) the Indexed Job whose pods score the shards of
    a distributed search before it."""
    meta = body["metadata"]
    spec = run.spec
    res = pods.resources(spec.resources)
    cpu = (res.get("limits") or {}).get("cpu") or (res.get("requests") or {}).get("cpu")
    payload = {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "generation": meta.get("generation"),
        "spec": body["spec"],
        "dataset": {
            "name": spec.dataset_ref.name,
            "version": dataset_version,
            "uri": layout.dataset_uri(settings.bucket, meta["namespace"], dataset_version),
        },
        "champion": _champion_payload(holder),
    }
    env: list[dict[str, Any]] = [
        {"name": "KUBEML_TRAININGRUN", "value": json.dumps(payload, sort_keys=True)},
        {
            "name": "KUBEML_RESULT_KEY",
            "value": result_key(meta["namespace"], meta["name"], meta["uid"]),
        },
        {"name": "TMPDIR", "value": "/tmp"},
        # One BLAS thread per process: searches parallelise across folds instead.
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "OPENBLAS_NUM_THREADS", "value": "1"},
        *pods.s3_env(settings),
    ]
    if cpu is not None:
        env.append({"name": "KUBEML_CPU_LIMIT", "value": str(quantity.whole_cpus(cpu))})
    job_labels = {
        labels.MANAGED_BY: labels.MANAGER,
        labels.PART_OF: "kubeml",
        labels.COMPONENT: "search" if search else "train",
        labels.TRAINING_RUN: meta["name"],
        labels.MODEL: spec.model,
        labels.DATASET: spec.dataset_ref.name,
        labels.DATASET_VERSION: labels.short(dataset_version),
        labels.OWNER_KIND: "TrainingRun",
        labels.OWNER_NAME: meta["name"],
    }
    return pods.runtime_job(
        body,
        name=search_job_name(meta["name"]) if search else job_name(meta["name"]),
        labels=job_labels,
        container=CONTAINER,
        command=["kubeml", "train", "--shard"] if search else ["kubeml", "train"],
        indexed=parallelism(run) if search else None,
        env=env,
        resources=res,
        backoff_limit=spec.backoff_limit
        if spec.backoff_limit is not None
        else DEFAULT_BACKOFF_LIMIT,
        deadline=spec.active_deadline_seconds or DEFAULT_DEADLINE,
        settings=settings,
    )


def _champion_payload(mv: dict[str, Any] | None) -> dict[str, Any] | None:
    if mv is None:
        return None
    spec = mv["spec"]
    return {
        "name": mv["metadata"]["name"],
        "version": spec["version"],
        "artifact": spec["artifact"],
        "datasetVersion": spec["lineage"]["datasetVersion"],
        "metrics": spec.get("metrics") or {},
    }


def build_model_version(
    body: dict[str, Any],
    run: TrainingRun,
    result: dict[str, Any],
    dataset_version: str,
    version: int,
    versions: list[dict[str, Any]],
) -> dict[str, Any]:
    meta = body["metadata"]
    model = run.spec.model
    name = registry.version_name(model, version)
    spec: dict[str, Any] = {
        "model": model,
        "version": version,
        "artifact": result["artifact"],
        "lineage": {
            "trainingRun": meta["name"],
            "dataset": run.spec.dataset_ref.name,
            "datasetVersion": dataset_version,
        },
        "metrics": (result.get("metrics") or {}).get("test") or {},
        "signature": result["signature"],
    }
    shown = key_metric(run, spec["metrics"])
    if shown is not None:
        spec["keyMetric"] = shown
    # The first version of a model becomes its champion, so a Deployment that
    # follows `champion` serves something without a manual promotion.
    if registry.holder(versions, FIRST_ALIAS) is None and not versions:
        spec["aliases"] = [FIRST_ALIAS]
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                labels.MANAGED_BY: labels.MANAGER,
                labels.PART_OF: "kubeml",
                labels.MODEL: model,
                labels.VERSION: str(version),
                labels.TRAINING_RUN: meta["name"],
                labels.DATASET: run.spec.dataset_ref.name,
                labels.DATASET_VERSION: labels.short(dataset_version),
            },
            "annotations": {f"{labels.PREFIX}/training-run-uid": meta["uid"]},
        },
        "spec": spec,
    }


def _job_dataset_version(job: dict[str, Any]) -> str | None:
    containers = job["spec"]["template"]["spec"]["containers"]
    for env in containers[0].get("env") or []:
        if env.get("name") == "KUBEML_TRAININGRUN":
            version = json.loads(env["value"])["dataset"]["version"]
            return str(version)
    return None


def produced_by(versions: list[dict[str, Any]], uid: str) -> dict[str, Any] | None:
    for mv in versions:
        if (mv["metadata"].get("annotations") or {}).get(
            f"{labels.PREFIX}/training-run-uid"
        ) == uid:
            return mv
    return None


def result_needed(
    body: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    search_job: Mapping[str, Any] | None = None,
) -> str | None:
    """The result manifest to read: once the Job has finished (or the search Job has
    failed: its pods report why there), until an outcome is recorded."""
    state = jobs.observe(dict(job) if job is not None else None)
    searched = jobs.observe(dict(search_job) if search_job is not None else None)
    if state is None and searched is not None and searched.failed:
        state = searched
    if state is None or state.active or _terminal(body):
        return None
    meta = body["metadata"]
    return result_key(meta["namespace"], meta["name"], meta["uid"])


def _terminal(body: Mapping[str, Any]) -> bool:
    current = find((body.get("status") or {}).get("conditions"), SUCCEEDED)
    return current is not None and current.get("status") in ("True", "False")


def beat_holder(body: Mapping[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The version the run must beat as the alias stands now (None: no such gate or holder)."""
    beat = ((body.get("spec") or {}).get("gates") or {}).get("beat")
    held = registry.holder(versions, beat["alias"]) if beat else None
    return dict(held) if held is not None else None


class _Step(Step):
    """A run's step: Succeeded and Ready move together."""

    def state(self, succeeded: Status, reason: str, message: str) -> None:
        self.cond(SUCCEEDED, succeeded, reason, message)
        self.cond(READY, "True" if succeeded == "True" else "False", reason, message)

    def finish(self, succeeded: Status, reason: str, message: str) -> Outcome:
        self.state(succeeded, reason, message)
        self.status.setdefault("completionTime", self.now)
        self.event("Normal" if succeeded == "True" else "Warning", reason, message)
        self.out.finished.append(
            stages.finished(
                "TrainingRun",
                succeeded == "True",
                started=self.status.get("startTime"),
                now=self.now,
                stages=self.status.get("stages"),
            )
        )
        return self.out


def decide(
    body: Mapping[str, Any],
    *,
    dataset: Mapping[str, Any] | None,
    job: Mapping[str, Any] | None,
    result: ResultRead | None,
    versions: list[dict[str, Any]],
    settings: Settings,
    now: str,
    search_job: Mapping[str, Any] | None = None,
) -> Outcome:
    meta = body["metadata"]
    step = _Step.begin(body, now)
    if _terminal(body):
        return step.out  # terminal states are sticky: never re-create the Job
    try:
        run = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(run, TrainingRun)
    except ManifestError as err:
        return step.finish("False", "InvalidSpec", f"trainingrun {meta['name']}: {err}")
    observed = jobs.observe(dict(job) if job is not None else None)
    if job is not None and not step.status.get("datasetVersion"):
        _adopt(step, dict(job))
    if parallelism(run) > 1 and observed is None:
        searched = jobs.observe(dict(search_job) if search_job is not None else None)
        if search_job is not None and not step.status.get("datasetVersion"):
            _adopt(step, dict(search_job), search=True)
        if searched is None or searched.active:
            _start_or_wait_search(step, run, searched, dataset, settings)
            return step.out
        if searched.failed:
            return _search_failed(step, run, searched, result)
        # Every shard is written: the training Job picks the winner from them.
    if observed is None or observed.active:
        _start_or_wait(step, run, observed, dataset, versions, settings)
        return step.out
    if result is not None and result.unreadable:
        message = f"job {observed.name} finished; its result {result.describe()}; retrying"
        step.state("Unknown", "StorageUnavailable", f"trainingrun {meta['name']}: {message}")
        step.out.look_again(RETRY_SECONDS)
        return step.out
    doc = result.doc if result is not None else None
    if doc is None:
        return _failed_without_result(step, run, observed, result)
    recorded = stages.from_result("TrainingRun", doc, job)
    if recorded:
        step.status["stages"] = recorded
    if not doc.get("ok"):
        reason = str(doc.get("reason") or "TrainingFailed")
        return step.finish("False", reason, f"trainingrun {meta['name']}: {doc.get('message')}")
    return _judge(step, run, doc, versions, settings.bucket)


def _adopt(step: _Step, job: dict[str, Any], *, search: bool = False) -> None:
    """The operator died after creating the Job but before recording it: the Job
    itself says which dataset version it trains on."""
    step.status["datasetVersion"] = _job_dataset_version(job)
    step.status["searchJobName" if search else "jobName"] = job["metadata"]["name"]
    step.status.setdefault("startTime", job["metadata"].get("creationTimestamp", step.now))


def _start_or_wait(
    step: _Step,
    run: TrainingRun,
    observed: jobs.JobState | None,
    dataset: Mapping[str, Any] | None,
    versions: list[dict[str, Any]],
    settings: Settings,
) -> None:
    status, name = step.status, step.body["metadata"]["name"]
    version = status.get("datasetVersion")
    if observed is None and not status.get("jobName"):
        # After a distributed search the version is the one its shards scored on.
        if not version:
            version, reason, message = resolve_dataset(run, dict(dataset) if dataset else None)
            if version is None:
                step.state("Unknown", reason, message)
                return
        status.update(datasetVersion=version, jobName=job_name(name))
        status.setdefault("startTime", step.now)
    if observed is None:
        # New, or vanished before finishing (deleted by hand): (re-)create it.
        holder = beat_holder(step.body, versions)
        job = build_job(dict(step.body), run, str(version), holder, settings)
        step.out.create.append(Create(job))
    # The same message whether the Job was just created or seen running: the Job's
    # own events then change nothing, and cost no status write.
    job_name_ = status.get("jobName") or (observed.name if observed else job_name(name))
    step.state(
        "Unknown",
        "Running",
        f"training job {job_name_} running on dataset version {str(version)[:12]}",
    )


def _start_or_wait_search(
    step: _Step,
    run: TrainingRun,
    observed: jobs.JobState | None,
    dataset: Mapping[str, Any] | None,
    settings: Settings,
) -> None:
    status, name = step.status, step.body["metadata"]["name"]
    version = status.get("datasetVersion")
    if observed is None and not status.get("searchJobName"):
        version, reason, message = resolve_dataset(run, dict(dataset) if dataset else None)
        if version is None:
            step.state("Unknown", reason, message)
            return
        status.update(
            datasetVersion=version, searchJobName=search_job_name(name), startTime=step.now
        )
    if observed is None:
        # The champion is measured by the training Job that follows, not by the shards.
        job = build_job(dict(step.body), run, str(version), None, settings, search=True)
        step.out.create.append(Create(job))
    shards = parallelism(run)
    step.state(
        "Unknown",
        "Running",
        f"search job {search_job_name(name)} scoring candidates on {shards} pods "
        f"(dataset version {str(version)[:12]})",
    )


def _search_failed(
    step: _Step, run: TrainingRun, observed: jobs.JobState, result: ResultRead | None
) -> Outcome:
    """A shard failed for good: its pods' report (the result manifest) says why, else the
    Job's own failure does."""
    name = step.body["metadata"]["name"]
    if result is not None and result.unreadable:
        message = f"search job {observed.name} failed; its report {result.describe()}; retrying"
        step.state("Unknown", "StorageUnavailable", f"trainingrun {name}: {message}")
        step.out.look_again(RETRY_SECONDS)
        return step.out
    doc = result.doc if result is not None else None
    if doc is not None and not doc.get("ok"):
        reason = str(doc.get("reason") or "TrainingFailed")
        return step.finish("False", reason, f"trainingrun {name}: {doc.get('message')}")
    return _failed_without_result(step, run, observed, None)


def _failed_without_result(
    step: _Step, run: TrainingRun, observed: jobs.JobState, result: ResultRead | None
) -> Outcome:
    missing = result.describe() if result is not None else "is missing"
    if observed.succeeded:
        message = f"job {observed.name} succeeded but its result manifest {missing}"
        return step.finish("False", "ResultMissing", message)
    res = pods.resources(run.spec.resources)
    reason, message = jobs.failure_reason(
        observed,
        memory_limit=pods.memory_limit(res),
        deadline=run.spec.active_deadline_seconds or DEFAULT_DEADLINE,
    )
    return step.finish("False", reason, f"trainingrun {step.body['metadata']['name']}: {message}")


def key_metric(run: TrainingRun, metrics: Mapping[str, Any]) -> str | None:
    """The first metric and its test value, e.g. accuracy=0.9667, for display."""
    task = ESTIMATORS[run.spec.estimator.name].task
    key: str = run.spec.metrics[0] if run.spec.metrics else DEFAULT_METRICS[task][0]
    return f"{key}={metrics[key]:.4f}" if key in metrics else None


def report_ref(value: Any, namespace: str, bucket: str) -> dict[str, Any] | None:
    """The report a result names, if it is one: an s3:// page with a sha256 in the
    namespace's own model space. Anything else is left out rather than let a malformed
    manifest make the whole status write fail validation."""
    if not isinstance(value, Mapping):
        return None
    uri, sha, size = value.get("uri"), value.get("sha256"), value.get("size")
    if not isinstance(uri, str) or not isinstance(sha, str) or not SHA256.fullmatch(sha):
        return None
    if len(uri) > 2048 or layout.report_owner(uri, bucket) != namespace:
        return None
    out: dict[str, Any] = {"uri": uri, "sha256": sha}
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        out["size"] = size
    return out


def _judge(
    step: _Step,
    run: TrainingRun,
    doc: Mapping[str, Any],
    versions: list[dict[str, Any]],
    bucket: str,
) -> Outcome:
    """Record the metrics, judge the gates, and register a version if they pass."""
    status, name = step.status, step.body["metadata"]["name"]
    metrics = (doc.get("metrics") or {}).get("test") or {}
    status["metrics"] = metrics
    if (doc.get("metrics") or {}).get("validation"):
        status["validationMetrics"] = doc["metrics"]["validation"]
    status["bestParams"] = doc.get("bestParams") or {}
    if doc.get("trials"):
        status["trials"] = doc["trials"]
    report = report_ref(doc.get("report"), step.body["metadata"]["namespace"], bucket)
    if report is not None:
        status["report"] = report
    shown = key_metric(run, metrics)
    if shown is not None:
        status["keyMetric"] = shown
    comparison = _comparison(step.body, run, doc, versions)
    verdicts = gates.evaluate(
        run.spec.gates,
        metrics,
        champion_name=comparison.name,
        champion_metrics=comparison.metrics,
        champion_error=comparison.error,
    )
    status["gates"] = [v.wire() for v in verdicts]
    passed = all(v.passed for v in verdicts)
    # A run that lost to the champion it measured has failed its gate, whatever
    # happened to the alias since; one that won, or has nothing to compare with,
    # says no more than that the alias moved.
    if comparison.changed and (passed or comparison.metrics is None):
        message = f"trainingrun {name}: {comparison.changed}; {gates.summary(verdicts)}"
        return step.finish("False", "ChampionChanged", message)
    if not passed:
        return step.finish("False", "GateFailed", f"trainingrun {name}: {gates.summary(verdicts)}")
    mv = _register(step, run, doc, versions, comparison)
    status["modelVersion"] = mv
    return step.finish("True", "Succeeded", f"{gates.summary(verdicts)}; registered {mv}")


def _comparison(
    body: Mapping[str, Any],
    run: TrainingRun,
    doc: Mapping[str, Any],
    versions: list[dict[str, Any]],
) -> champion.Comparison:
    beat = run.spec.gates.beat if run.spec.gates else None
    if beat is None:
        return champion.Comparison()
    version = str((body.get("status") or {}).get("datasetVersion") or doc.get("datasetVersion"))
    return champion.compare(beat.alias, doc, beat_holder(body, versions), version, FIRST_ALIAS)


def _register(
    step: _Step,
    run: TrainingRun,
    doc: Mapping[str, Any],
    versions: list[dict[str, Any]],
    comparison: champion.Comparison,
) -> str:
    """The name of this run's version, creating it if it does not exist yet. The number
    is one above the highest; a concurrent run may take it first, and the creation
    then conflicts and the run is decided again."""
    mine = produced_by(versions, step.body["metadata"]["uid"])
    if mine is not None:
        return str(mine["metadata"]["name"])
    mv = build_model_version(
        dict(step.body),
        run,
        dict(doc),
        str(step.status["datasetVersion"]),
        registry.next_version(versions),
        versions,
    )
    mv["metadata"]["annotations"].update(comparison.annotations)
    beat = run.spec.gates.beat if run.spec.gates else None
    if comparison.claim and beat is not None and beat.alias not in mv["spec"].get("aliases", []):
        mv["spec"]["aliases"] = [*mv["spec"].get("aliases", []), beat.alias]
    step.out.create.append(Create(mv, exists_ok=False))
    return str(mv["metadata"]["name"])

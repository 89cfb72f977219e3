"""TrainingRun decisions: wait for data, run one Job, judge the gates, register."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import labels
from ..api import ManifestError, TrainingRun, parse_manifest
from ..api.estimators import DEFAULT_METRICS, ESTIMATORS
from ..conditions import Status, find, set_condition
from ..settings import Settings
from . import gates, jobs, pods, registry

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


@dataclass
class Decision:
    status: dict[str, Any]
    job: dict[str, Any] | None = None
    model_version: dict[str, Any] | None = None  # create this ModelVersion
    events: list[tuple[str, str, str]] = field(default_factory=list)


def job_name(run: str) -> str:
    return f"{run[:50]}-train"


def result_key(namespace: str, name: str, uid: str) -> str:
    return f"results/trainingruns/{namespace}/{name}/{uid}.json"


def dataset_uri(bucket: str, version: str) -> str:
    return f"s3://{bucket}/datasets/{version}/"


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
    champion: dict[str, Any] | None,
    settings: Settings,
) -> dict[str, Any]:
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
            "uri": dataset_uri(settings.bucket, dataset_version),
        },
        "champion": _champion_payload(champion),
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
        cores = max(1, int(pods.quantity_bytes(cpu)))  # "2" -> 2, "500m" -> 1
        env.append({"name": "KUBEML_CPU_LIMIT", "value": str(cores)})
    job_labels = {
        labels.MANAGED_BY: labels.MANAGER,
        labels.PART_OF: "kubeml",
        labels.COMPONENT: "train",
        labels.TRAINING_RUN: meta["name"],
        labels.MODEL: spec.model,
        labels.DATASET: spec.dataset_ref.name,
        labels.DATASET_VERSION: labels.short(dataset_version),
        labels.OWNER_KIND: "TrainingRun",
        labels.OWNER_NAME: meta["name"],
    }
    return pods.runtime_job(
        body,
        name=job_name(meta["name"]),
        labels=job_labels,
        container=CONTAINER,
        command=["kubeml", "train"],
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


def decide(
    body: dict[str, Any],
    *,
    dataset: dict[str, Any] | None,
    job: dict[str, Any] | None,
    result: dict[str, Any] | None,
    result_error: str | None,
    champion: dict[str, Any] | None,
    versions: list[dict[str, Any]],
    settings: Settings,
    now: str,
) -> Decision:
    meta = body["metadata"]
    gen = meta.get("generation")
    status: dict[str, Any] = dict(body.get("status") or {})
    status["observedGeneration"] = gen
    conds = status.get("conditions") or []
    decision = Decision(status=status)

    def state(succeeded: Status, reason: str, message: str) -> None:
        nonlocal conds
        ready: Status = "True" if succeeded == "True" else "False"
        conds = set_condition(
            conds, SUCCEEDED, succeeded, reason, message, observed_generation=gen, now=now
        )
        conds = set_condition(
            conds, READY, ready, reason, message, observed_generation=gen, now=now
        )
        status["conditions"] = conds

    def finish(succeeded: Status, reason: str, message: str) -> Decision:
        state(succeeded, reason, message)
        status.setdefault("completionTime", now)
        decision.events.append(
            ("Normal" if succeeded == "True" else "Warning", reason, message[:1024])
        )
        return decision

    current = find(conds, SUCCEEDED)
    if current is not None and current.get("status") in ("True", "False"):
        return decision  # terminal states are sticky: never re-create the Job

    try:
        run = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(run, TrainingRun)
    except ManifestError as err:
        return finish("False", "InvalidSpec", f"trainingrun {meta['name']}: {err}")

    observed = jobs.observe(job)
    dataset_version = status.get("datasetVersion")
    if job is not None and not dataset_version:
        # The operator died after creating the Job but before recording it:
        # the Job itself says which dataset version it trains on.
        dataset_version = _job_dataset_version(job)
        status["datasetVersion"] = dataset_version
        status["jobName"] = job["metadata"]["name"]
        status.setdefault("startTime", (job.get("metadata") or {}).get("creationTimestamp", now))
    if observed is None and not status.get("jobName"):
        version, reason, message = resolve_dataset(run, dataset)
        if version is None:
            state("Unknown", reason, message)
            return decision
        dataset_version = version
        status["datasetVersion"] = version
        status["jobName"] = job_name(meta["name"])
        status["startTime"] = now
        decision.job = build_job(body, run, version, champion, settings)
        state(
            "Unknown",
            "Running",
            f"training job {status['jobName']} created on dataset version {version[:12]}",
        )
        return decision
    if observed is None:
        # The Job vanished before finishing (deleted by hand): run it again.
        assert dataset_version is not None
        decision.job = build_job(body, run, dataset_version, champion, settings)
        state("Unknown", "Running", f"training job {status['jobName']} re-created")
        return decision
    if observed.active:
        state("Unknown", "Running", f"training job {observed.name} running")
        return decision

    assert dataset_version is not None
    if result is not None and not result.get("ok"):
        reason = str(result.get("reason") or "TrainingFailed")
        return finish("False", reason, f"trainingrun {meta['name']}: {result.get('message')}")
    if result is None:
        if observed.succeeded:
            return finish(
                "False",
                "ResultMissing",
                f"job {observed.name} succeeded but its result manifest could not "
                f"be read: {result_error or 'missing'}",
            )
        res = pods.resources(run.spec.resources)
        reason, message = jobs.failure_reason(
            observed,
            memory_limit=pods.memory_limit(res),
            deadline=run.spec.active_deadline_seconds or DEFAULT_DEADLINE,
        )
        return finish("False", reason, f"trainingrun {meta['name']}: {message}")

    metrics = (result.get("metrics") or {}).get("test") or {}
    status["metrics"] = metrics
    if (result.get("metrics") or {}).get("validation"):
        status["validationMetrics"] = result["metrics"]["validation"]
    status["bestParams"] = result.get("bestParams") or {}
    task = ESTIMATORS[run.spec.estimator.name].task
    key: str = run.spec.metrics[0] if run.spec.metrics else DEFAULT_METRICS[task][0]
    if key in metrics:
        status["keyMetric"] = f"{key}={metrics[key]:.4f}"
    verdicts = gates.evaluate(
        run.spec.gates,
        metrics,
        champion_name=(champion or {}).get("metadata", {}).get("name") if champion else None,
        champion_metrics=result.get("championMetrics"),
        champion_error=result.get("championError"),
    )
    status["gates"] = [v.wire() for v in verdicts]
    if not all(v.passed for v in verdicts):
        return finish(
            "False", "GateFailed", f"trainingrun {meta['name']}: {gates.summary(verdicts)}"
        )

    mine = produced_by(versions, meta["uid"])
    if mine is None:
        number = registry.next_version(versions)
        decision.model_version = build_model_version(
            body, run, result, dataset_version, number, versions
        )
        name = decision.model_version["metadata"]["name"]
    else:
        name = mine["metadata"]["name"]
    status["modelVersion"] = name
    return finish("True", "Succeeded", f"{gates.summary(verdicts)}; registered {name}")

"""TrainingRun controller: one training Job per run, then a ModelVersion if it passes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from .. import labels, metrics
from ..k8s import client, objects
from ..reconcile import jobs, registry
from ..reconcile import trainingrun as decide_run
from . import common

GROUP, VERSION, PLURAL = "kubeml.io", "v1alpha1", "trainingruns"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_NUMBERING_ATTEMPTS = 10


def model_versions(namespace: str, model: str) -> list[dict[str, Any]]:
    items = client.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions"
    )["items"]
    return [i for i in items if (i.get("spec") or {}).get("model") == model]


def reconcile_sync(namespace: str, name: str) -> list[tuple[str, str, str]]:
    api = client.api_client()
    body = objects.get(api, API_VERSION, "TrainingRun", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    spec = body.get("spec") or {}
    dataset = objects.get(
        api, API_VERSION, "Dataset", namespace, (spec.get("datasetRef") or {}).get("name", "")
    )
    job = objects.get(api, "batch/v1", "Job", namespace, decide_run.job_name(name))
    state = jobs.observe(job)
    result, result_error = None, None
    if state is not None and not state.active:
        result, result_error = common.read_result(
            decide_run.result_key(namespace, name, body["metadata"]["uid"])
        )
    model = str(spec.get("model", ""))
    beat = (spec.get("gates") or {}).get("beat")
    events: list[tuple[str, str, str]] = []
    # Version numbers come from the registry as it is now; a concurrent run
    # may take the same number first, so creation retries on a conflict.
    for _ in range(MAX_NUMBERING_ATTEMPTS):
        versions = model_versions(namespace, model)
        holder = registry.holder(versions, beat["alias"]) if beat else None
        champion = dict(holder) if holder is not None else None
        decision = decide_run.decide(
            body,
            dataset=dataset,
            job=job,
            result=result,
            result_error=result_error,
            champion=champion,
            versions=versions,
            settings=common.settings(),
            now=common.now(),
        )
        if decision.model_version is None:
            break
        try:
            objects.create(api, decision.model_version)
            break
        except ApiException as err:
            if err.status != 409:
                raise
    else:
        raise kopf.TemporaryError("could not allocate a model version number", delay=5)
    if decision.job is not None:
        objects.apply(api, decision.job)
    common.write_status(api, "TrainingRun", body, decision.status)
    events += decision.events
    return events


async def reconcile(namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
    async def work() -> None:
        with metrics.measured("TrainingRun"):
            events = await asyncio.to_thread(reconcile_sync, namespace, name)
        if events and body is not None:
            await common.post_events(body, events)

    await common.serialised("TrainingRun", namespace, name, work)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_run_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    common.touch()
    if type == "DELETED" or namespace is None:
        return
    await reconcile(namespace, name, dict(body))


common.register_resync("TrainingRun", API_VERSION, PLURAL, reconcile)


@kopf.on.event("batch", "v1", "jobs", labels={labels.OWNER_KIND: "TrainingRun"})
async def on_train_job_event(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    common.touch()
    await common.reconcile_owner(
        API_VERSION, "TrainingRun", namespace, labels.get("kubeml.io/owner-name"), reconcile
    )


@kopf.on.event(GROUP, VERSION, "datasets")
async def on_dataset_for_runs(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """Runs waiting for a dataset start as soon as it becomes Ready."""
    if namespace is None or type == "DELETED":
        return
    runs = await asyncio.to_thread(
        client.custom().list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
    )
    for run in runs["items"]:
        if (run.get("spec") or {}).get("datasetRef", {}).get("name") == name and not (
            run.get("status") or {}
        ).get("jobName"):
            await reconcile(namespace, run["metadata"]["name"], run)

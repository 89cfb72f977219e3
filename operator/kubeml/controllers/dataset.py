"""Dataset controller: preparation Jobs in, published versions out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import labels, metrics, schedules
from ..k8s import client, objects
from ..labels import OWNER_NAME
from ..reconcile import dataset as decide_dataset
from ..reconcile import jobs
from . import common

GROUP, VERSION, PLURAL = "kubeml.io", "v1alpha1", "datasets"
API_VERSION = f"{GROUP}/{VERSION}"


def refresh_tick(body: dict[str, Any], now: datetime) -> str:
    """The occasion the current preparation answers: the latest scheduled
    refresh or on-demand request (annotation), whichever is newer."""
    meta = body["metadata"]
    scheduled = schedules.latest_tick(
        (body["spec"].get("refresh") or {}).get("schedule"), meta["creationTimestamp"], now
    )
    requested = schedules.requested_tick(
        (meta.get("annotations") or {}).get(labels.REFRESH_REQUESTED), now
    )
    return max(scheduled, requested)


def reconcile_sync(namespace: str, name: str) -> list[tuple[str, str, str]]:
    api = client.api_client()
    body = objects.get(api, API_VERSION, "Dataset", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    tick = refresh_tick(body, datetime.now(UTC))
    job_name = decide_dataset.job_name(name, body["spec"], tick)
    job = objects.get(api, "batch/v1", "Job", namespace, job_name)
    siblings = objects.list_(
        api, "batch/v1", "Job", namespace, f"{labels.OWNER_KIND}=Dataset,{labels.OWNER_NAME}={name}"
    )
    result, result_error = None, None
    state = jobs.observe(job)
    if state is not None and not state.active:
        result, result_error = common.read_result(
            decide_dataset.result_key(namespace, name, job_name)
        )
    decision = decide_dataset.decide(
        body,
        job,
        result,
        common.settings(),
        now=common.now(),
        tick=tick,
        result_error=result_error,
        other_jobs=tuple(j["metadata"]["name"] for j in siblings),
    )
    if decision.job is not None:
        objects.apply(api, decision.job)
    for stale in decision.stale_jobs:
        objects.delete(api, "batch/v1", "Job", namespace, stale)
    common.write_status(api, "Dataset", body, decision.status)
    return decision.events


async def reconcile(namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
    async def work() -> None:
        with metrics.measured("Dataset"):
            events = await asyncio.to_thread(reconcile_sync, namespace, name)
        if events and body is not None:
            await common.post_events(body, events)

    await common.serialised("Dataset", namespace, name, work)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_dataset_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    common.touch()
    if type == "DELETED" or namespace is None:
        return
    await reconcile(namespace, name, dict(body))


# kopf timers would put a finalizer on every Dataset; the resync loop in
# common does the same periodic, level-based pass without one.
common.register_resync("Dataset", API_VERSION, PLURAL, reconcile)


@kopf.on.event("batch", "v1", "jobs", labels={labels.OWNER_KIND: "Dataset"})
async def on_prepare_job_event(
    type: str, labels: Mapping[str, str], namespace: str | None, **_: Any
) -> None:
    common.touch()
    await common.reconcile_owner(
        API_VERSION, "Dataset", namespace, labels.get(OWNER_NAME), reconcile
    )

"""Dataset controller: preparation Jobs in, published versions out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import labels, metrics
from ..k8s import client, objects
from ..labels import OWNER_NAME
from ..reconcile import dataset as decide_dataset
from ..reconcile import jobs
from . import common

GROUP, VERSION, PLURAL = "kubeml.io", "v1alpha1", "datasets"
API_VERSION = f"{GROUP}/{VERSION}"


# cronsim speaks five-field cron only; the CRD also allows the usual macros.
CRON_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def refresh_tick(spec: dict[str, Any], created: str, now: datetime) -> str:
    """The latest scheduled refresh at or before now (empty if none is due yet)."""
    schedule = (spec.get("refresh") or {}).get("schedule")
    if not schedule:
        return ""
    from cronsim import CronSim, CronSimError

    start = datetime.fromisoformat(created.replace("Z", "+00:00"))
    expr = CRON_MACROS.get(schedule.strip(), schedule)
    # Walk backwards from now: one step, whatever the schedule's frequency.
    try:
        latest = next(iter(CronSim(expr, now.replace(second=0, microsecond=0), reverse=True)))
    except (CronSimError, StopIteration):
        # The CRD's pattern is loose; an unparseable schedule means no refresh.
        common.log.warning("ignoring unparseable refresh schedule %r", schedule)
        return ""
    if latest <= start:
        return ""
    return str(latest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def reconcile_sync(namespace: str, name: str) -> list[tuple[str, str, str]]:
    api = client.api_client()
    body = objects.get(api, API_VERSION, "Dataset", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    tick = refresh_tick(body["spec"], body["metadata"]["creationTimestamp"], datetime.now(UTC))
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
    if decision.status != (body.get("status") or {}):
        objects.patch_status(api, body, decision.status)
    return decision.events


async def reconcile(namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
    async def work() -> None:
        with metrics.measured("Dataset"):
            events = await asyncio.to_thread(reconcile_sync, namespace, name)
        if events and body is not None:
            common.post_events(body, events)

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
    owner = labels.get(OWNER_NAME)
    if owner and namespace:
        parent = await asyncio.to_thread(
            objects.get, client.api_client(), API_VERSION, "Dataset", namespace, owner
        )
        if parent is not None:
            await reconcile(namespace, owner, parent)

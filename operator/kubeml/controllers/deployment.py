"""Deployment (kubeml.io) controller: server Deployments, Service, HPA and monitoring."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from .. import labels, metrics
from ..k8s import client, objects
from ..labels import RETRAINING_FOR
from ..reconcile import deployment as decide_dep
from ..reconcile import server_objects
from . import common, retraining

GROUP, VERSION, PLURAL = "kubeml.io", "v1alpha1", "deployments"
API_VERSION = f"{GROUP}/{VERSION}"


@functools.cache
def _has_api(group_version: str) -> bool:
    try:
        objects.request(client.api_client(), "GET", f"/apis/{group_version}")
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def prometheus_operator_installed() -> bool:
    # Checked once per process; installing the Prometheus Operator later needs
    # an operator restart to be picked up (documented).
    return _has_api("monitoring.coreos.com/v1")


def reconcile_sync(namespace: str, name: str) -> list[tuple[str, str, str]]:
    api = client.api_client()
    body = objects.get(api, API_VERSION, "Deployment", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    model = (body.get("spec") or {}).get("model")
    versions = [
        i
        for i in client.custom().list_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelversions"
        )["items"]
        if i["spec"].get("model") == model and not i["metadata"].get("deletionTimestamp")
    ]
    apps = {
        track: objects.get(
            api, "apps/v1", "Deployment", namespace, server_objects.app_name(name, track)
        )
        for track in ("stable", "canary")
    }
    decision = decide_dep.decide(
        body,
        versions,
        apps,
        prometheus_operator=prometheus_operator_installed(),
        settings=common.settings(),
        now=common.now(),
    )
    for obj in decision.apply:
        objects.apply(api, obj)
    for api_version, kind, obj_name in decision.delete:
        if kind == "Deployment" and apps.get("canary") is None:
            continue
        objects.delete(api, api_version, kind, namespace, obj_name)
    plan = retraining.reconcile(api, body, decision.status, versions)
    if plan.status is None:
        decision.status.pop("retraining", None)
    else:
        decision.status["retraining"] = plan.status
    decision.events += plan.events
    common.write_status(api, "Deployment", body, decision.status)
    return decision.events


async def reconcile(namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
    async def work() -> None:
        with metrics.measured("Deployment"):
            events = await asyncio.to_thread(reconcile_sync, namespace, name)
        if events and body is not None:
            await common.post_events(body, events)

    await common.serialised("Deployment", namespace, name, work)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_deployment_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    common.touch()
    if type == "DELETED" or namespace is None:
        return
    await reconcile(namespace, name, dict(body))


common.register_resync("Deployment", API_VERSION, PLURAL, reconcile)


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={labels.MANAGED_BY: labels.MANAGER, labels.COMPONENT: "server"},
)
async def on_server_event(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    common.touch()
    await common.reconcile_owner(
        API_VERSION, "Deployment", namespace, labels.get("kubeml.io/deployment"), reconcile
    )


@kopf.on.event(GROUP, VERSION, "modelversions")
async def on_version_for_deployments(
    spec: Mapping[str, Any], namespace: str | None, **_: Any
) -> None:
    """Alias moves and verification results change what a Deployment serves."""
    if namespace is None:
        return
    items = await asyncio.to_thread(
        client.custom().list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
    )
    for d in items["items"]:
        if (d.get("spec") or {}).get("model") == spec.get("model"):
            await reconcile(namespace, d["metadata"]["name"], d)


@kopf.on.event(GROUP, VERSION, "trainingruns", labels={labels.RETRAINING_FOR: kopf.PRESENT})
async def on_retraining_run_event(
    labels: Mapping[str, str], namespace: str | None, **_: Any
) -> None:
    """A retraining run's outcome decides a promotion: act on it without waiting for resync."""
    await common.reconcile_owner(
        API_VERSION, "Deployment", namespace, labels.get(RETRAINING_FOR), reconcile
    )

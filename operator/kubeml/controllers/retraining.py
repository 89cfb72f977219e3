"""Retraining I/O for a Deployment: gather what the plan needs, carry it out.

Called from the Deployment reconcile (so it shares its serialisation and its
resync), after the serving decision, with the status that decision produced.
"""

from __future__ import annotations

import logging
import urllib.request
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient

from .. import labels
from ..conditions import is_true
from ..k8s import objects
from ..reconcile import retraining, server_objects

log = logging.getLogger("kubeml")
API_VERSION = "kubeml.io/v1alpha1"
SCRAPE_TIMEOUT_SECONDS = 2.0


def read_drift(api: ApiClient, namespace: str, name: str) -> retraining.DriftReading:
    """The drift gauges of the Deployment's ready server pods, read directly from
    each pod (no Prometheus needed for the loop; Prometheus alerts on the same)."""
    selector = ",".join(f"{k}={v}" for k, v in server_objects.selector(name).items())
    texts: list[str] = []
    for pod in objects.list_(api, "v1", "Pod", namespace, selector):
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not is_true((pod.get("status") or {}).get("conditions"), "Ready"):
            continue
        url = f"http://{ip}:{server_objects.PORT}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_SECONDS) as resp:
                texts.append(resp.read().decode("utf-8", "replace"))
        except OSError as err:  # one unreachable pod must not stop the loop
            pod_name = pod["metadata"]["name"]
            log.warning("drift: reading %s of pod %s/%s: %s", url, namespace, pod_name, err)
    return retraining.drift_from_metrics(texts)


def reconcile(
    api: ApiClient, body: dict[str, Any], status: dict[str, Any], versions: list[dict[str, Any]]
) -> retraining.Plan:
    """Plan and carry out one retraining step; returns the plan (its status and events)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    policy = spec.get("retraining")
    if not policy:
        return retraining.Plan(status=None)
    ns, name = meta["namespace"], meta["name"]
    template = objects.get(api, API_VERSION, "TrainingRun", ns, policy["template"]["name"])
    dataset = None
    if template is not None:
        dataset = objects.get(
            api, API_VERSION, "Dataset", ns, template["spec"]["datasetRef"]["name"]
        )
    runs = objects.list_(api, API_VERSION, "TrainingRun", ns, f"{labels.RETRAINING_FOR}={name}")
    plan = retraining.plan(
        {**body, "status": status},
        template=template,
        dataset=dataset,
        runs=runs,
        versions=versions,
        drift=lambda: read_drift(api, ns, name),
        now=datetime.now(UTC),
    )
    for mv_name, aliases in plan.aliases.items():
        mv = {
            "apiVersion": API_VERSION,
            "kind": "ModelVersion",
            "metadata": {"namespace": ns, "name": mv_name},
        }
        objects.merge_patch(api, mv, {"spec": {"aliases": aliases}})
    if plan.refresh is not None and plan.status is not None:
        assert dataset is not None
        stamp = plan.status["refreshRequestedTime"]
        objects.merge_patch(
            api, dataset, {"metadata": {"annotations": {labels.REFRESH_REQUESTED: stamp}}}
        )
    if plan.run is not None:
        objects.apply(api, plan.run)
    return plan

"""The floor for operator benchmarks: a minimal kopf operator.

It watches what the benchmark asks it to with kopf's defaults and does the least a
controller can. FLOOR_MODE=react (default): nothing for a ModelVersion, and for a
Dataset that publishes a new version, one ConfigMap named after it (the cheapest
object to create in reaction to an event); bench/operator_steady.py and
bench/retrain_latency.py. FLOOR_MODE=jobs: one Job per TrainingRun and per Dataset,
nothing else; bench/operator_scale.py. Run beside KubeML's operator, on one cluster.

    python bench/floor_operator.py   (KUBECONFIG set; standalone, all namespaces)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import kopf
from kubernetes import client, config


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.scanning.disabled = True


@kopf.on.event("kubeml.io", "v1alpha1", "modelversions")
def on_version(**_: Any) -> None:
    """Watched, nothing to do: the cost of keeping up with the objects."""


MODE = os.environ.get("FLOOR_MODE", "react")
_api: client.ApiClient | None = None


def api() -> client.ApiClient:
    global _api
    if _api is None:
        config.load_kube_config()
        _api = client.ApiClient()
    return _api


def _ignore_conflict(create: Any, *args: Any) -> None:
    try:
        create(*args)
    except client.ApiException as err:
        if err.status != 409:
            raise


if MODE == "react":

    @kopf.on.event("kubeml.io", "v1alpha1", "datasets", field="status.version", value=kopf.PRESENT)
    def on_dataset(body: kopf.Body, namespace: str, **_: Any) -> None:
        version = str(body["status"]["version"])[:12]
        meta = client.V1ObjectMeta(name=f"floor-{version}", namespace=namespace)
        core = client.CoreV1Api(api())
        _ignore_conflict(
            core.create_namespaced_config_map, namespace, client.V1ConfigMap(metadata=meta)
        )


def job(name: str, namespace: str) -> client.V1Job:
    """A Job that would run one short container (its pods stay Pending in the bench)."""
    container = client.V1Container(name="work", image="busybox", command=["true"])
    pod = client.V1PodSpec(restart_policy="Never", containers=[container])
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=f"floor-{name}"[:63], namespace=namespace),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=pod)),
    )


if MODE == "jobs":

    @kopf.on.event("kubeml.io", "v1alpha1", "trainingruns")
    @kopf.on.event("kubeml.io", "v1alpha1", "datasets")
    def on_object(type: str | None, name: str, namespace: str, **_: Any) -> None:
        if type in (None, "ADDED"):
            batch = client.BatchV1Api(api())
            _ignore_conflict(batch.create_namespaced_job, namespace, job(name, namespace))


if __name__ == "__main__":
    os.environ.setdefault("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    kopf.configure(verbose=False)
    asyncio.run(kopf.operator(clusterwide=True, standalone=True))

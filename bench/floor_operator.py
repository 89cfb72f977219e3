"""The floor for operator benchmarks: a minimal kopf operator.

It watches what the benchmark asks it to (ModelVersions and Datasets) with kopf's
defaults and does the least a controller can: nothing for a ModelVersion, and for
a Dataset that publishes a new version, one ConfigMap named after it (the cheapest
object to create in reaction to an event). Run by bench/operator_steady.py and
bench/retrain_latency.py beside KubeML's operator, on the same cluster.

    python bench/floor_operator.py   (KUBECONFIG set; --standalone, all namespaces)
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


_api: client.CoreV1Api | None = None


def core() -> client.CoreV1Api:
    global _api
    if _api is None:
        config.load_kube_config()
        _api = client.CoreV1Api()
    return _api


@kopf.on.event("kubeml.io", "v1alpha1", "datasets", field="status.version", value=kopf.PRESENT)
def on_dataset(body: kopf.Body, namespace: str, **_: Any) -> None:
    version = str(body["status"]["version"])[:12]
    meta = client.V1ObjectMeta(name=f"floor-{version}", namespace=namespace)
    try:
        core().create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=meta))
    except client.ApiException as err:
        if err.status != 409:
            raise


if __name__ == "__main__":
    os.environ.setdefault("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    kopf.configure(verbose=False)
    asyncio.run(kopf.operator(clusterwide=True, standalone=True))

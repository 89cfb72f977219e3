"""What the operator watches, and which reconciles each change wakes.

Every watched object goes into the cache; ``keys`` says which objects' reconciles
must run because it changed. Children are watched through server-side label
selectors, so the operator holds only what it made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..conditions import find
from ..driver.cache import ObjectCache
from ..labels import DEPLOYMENT, OWNER_KIND, OWNER_NAME, RETRAINING_FOR
from ..reconcile.dataset import base_name
from ..reconcile.trainingrun import SUCCEEDED
from .common import (
    APPS,
    HPAS,
    HTTPROUTES,
    INGRESSES,
    JOBS,
    KUBEML,
    OURS,
    PODS,
    SERVERS,
    SERVICES,
    labels_of,
)

Key = tuple[str, str, str]  # (controller, namespace, name)
Keys = Callable[[ObjectCache, Mapping[str, Any]], Iterator[Key]]


@dataclass(frozen=True)
class Watch:
    api_version: str
    kind: str
    plural: str
    keys: Keys
    selector: str = ""  # server-side label selector

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def _where(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _retraining_deployments(cache: ObjectCache, ns: str) -> Iterator[Key]:
    for d in cache.list(
        KUBEML, "Deployment", ns, lambda d: bool((d.get("spec") or {}).get("retraining"))
    ):
        yield "Deployment", ns, d["metadata"]["name"]


def dataset_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    """A Dataset's change wakes itself, the Datasets appending to it, the runs
    waiting for it, and the retraining loops that may train on its new version."""
    ns, name = _where(obj)
    yield "Dataset", ns, name
    for d in cache.list(KUBEML, "Dataset", ns, lambda d: base_name(d) == name):
        yield "Dataset", ns, d["metadata"]["name"]

    def waiting(run: Mapping[str, Any]) -> bool:
        spec, status = run.get("spec") or {}, run.get("status") or {}
        done = find(status.get("conditions"), SUCCEEDED)
        finished = done is not None and done.get("status") in ("True", "False")
        return (spec.get("datasetRef") or {}).get("name") == name and not finished

    for run in cache.list(KUBEML, "TrainingRun", ns, waiting):
        yield "TrainingRun", ns, run["metadata"]["name"]
    yield from _retraining_deployments(cache, ns)


def run_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    ns, name = _where(obj)
    yield "TrainingRun", ns, name
    model = (obj.get("spec") or {}).get("model")
    if model and (obj.get("status") or {}).get("report"):
        # The version it registered shows the report the run recorded.
        yield "Model", ns, str(model)
    if labels_of(obj).get(RETRAINING_FOR):
        yield "Deployment", ns, labels_of(obj)[RETRAINING_FOR]
    for d in cache.list(KUBEML, "Deployment", ns):
        template = (((d.get("spec") or {}).get("retraining") or {}).get("template") or {}).get(
            "name"
        )
        if template == name:
            yield "Deployment", ns, d["metadata"]["name"]


def version_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    """Alias moves and verdicts change the registry and what Deployments serve."""
    ns, _ = _where(obj)
    model = (obj.get("spec") or {}).get("model")
    if model:
        yield "Model", ns, str(model)
    for d in cache.list(
        KUBEML, "Deployment", ns, lambda d: (d.get("spec") or {}).get("model") == model
    ):
        yield "Deployment", ns, d["metadata"]["name"]


def deployment_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    """What a Deployment serves decides whether a version may be deleted."""
    ns, name = _where(obj)
    yield "Deployment", ns, name
    model = (obj.get("spec") or {}).get("model")
    if model:
        yield "Model", ns, str(model)


def job_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    ns, _ = _where(obj)
    owner_kind, owner = labels_of(obj).get(OWNER_KIND), labels_of(obj).get(OWNER_NAME)
    if owner_kind in ("Dataset", "TrainingRun") and owner:
        yield owner_kind, ns, owner


def server_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    ns, _ = _where(obj)
    if labels_of(obj).get(DEPLOYMENT):
        yield "Deployment", ns, labels_of(obj)[DEPLOYMENT]


def no_keys(cache: ObjectCache, obj: Mapping[str, Any]) -> Iterator[Key]:
    return iter(())


WATCHES = (
    Watch(KUBEML, "Dataset", "datasets", dataset_keys),
    Watch(KUBEML, "TrainingRun", "trainingruns", run_keys),
    Watch(KUBEML, "ModelVersion", "modelversions", version_keys),
    Watch(KUBEML, "Deployment", "deployments", deployment_keys),
    Watch(*JOBS, "jobs", job_keys, OURS),
    Watch(*APPS, "deployments", server_keys, SERVERS),
    Watch(*SERVICES, "services", server_keys, SERVERS),
    Watch(*HPAS, "horizontalpodautoscalers", server_keys, SERVERS),
    Watch(*INGRESSES, "ingresses", server_keys, SERVERS),
    # Server pods: their addresses, for reading drift; a pod's change wakes nothing
    # (its Deployment reports readiness).
    Watch(*PODS, "pods", no_keys, SERVERS),
)

POLLED = (Watch(*HTTPROUTES, "httproutes", server_keys, SERVERS),)
"""Kinds of optional APIs: listed into the cache at start and at each resync when
served (skipped when not), never watched: kopf resolves its watches once at start,
and a watch whose CRD is removed later would end the operator. The Deployment
controller re-reads its own HTTPRoute while no Gateway has accepted it."""

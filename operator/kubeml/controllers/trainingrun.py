"""TrainingRun: observe the dataset, the Job, its result and the registry, then decide."""

from __future__ import annotations

from typing import Any

from ..driver.engine import Controller
from ..driver.world import World
from ..reconcile import trainingrun as decide
from ..reconcile.outcome import Outcome
from .common import JOBS, KUBEML, deleting, read_result


def versions_of(world: World, namespace: str, model: str) -> list[dict[str, Any]]:
    return world.cache.list(
        KUBEML, "ModelVersion", namespace, lambda v: (v.get("spec") or {}).get("model") == model
    )


def reconcile(world: World, namespace: str, name: str) -> Outcome | None:
    body = world.cache.get(KUBEML, "TrainingRun", namespace, name)
    if body is None or deleting(body):
        return None
    spec = body.get("spec") or {}
    dataset_name = str((spec.get("datasetRef") or {}).get("name") or "")
    job = world.cache.get(*JOBS, namespace, decide.job_name(name))
    search_job = world.cache.get(*JOBS, namespace, decide.search_job_name(name))
    key = decide.result_needed(body, job, search_job)
    return decide.decide(
        body,
        dataset=world.cache.get(KUBEML, "Dataset", namespace, dataset_name),
        job=job,
        result=read_result(world, key) if key else None,
        versions=versions_of(world, namespace, str(spec.get("model", ""))),
        settings=world.settings,
        now=world.now(),
        search_job=search_job,
    )


def subjects(world: World, namespace: str, name: str) -> list[dict[str, Any]]:
    body = world.cache.get(KUBEML, "TrainingRun", namespace, name)
    return [body] if body is not None else []


CONTROLLER = Controller("TrainingRun", reconcile, subjects)

"""Dataset: observe the preparation Job and its result, then decide."""

from __future__ import annotations

from typing import Any

from ..driver.engine import Controller
from ..driver.world import World
from ..labels import OWNER_KIND, OWNER_NAME
from ..reconcile import dataset as decide
from ..reconcile.outcome import Outcome
from .common import JOBS, KUBEML, deleting, labels_of, read_result


def reconcile(world: World, namespace: str, name: str) -> Outcome | None:
    body = world.cache.get(KUBEML, "Dataset", namespace, name)
    if body is None or deleting(body):
        return None  # its Jobs go with it (owner references)
    base_name = decide.base_name(body)
    base = decide.resolve_base(
        body, world.cache.get(KUBEML, "Dataset", namespace, base_name) if base_name else None
    )
    target = decide.target(body, world.clock(), base)
    job = world.cache.get(*JOBS, namespace, target.job_name)
    others = world.cache.list(
        *JOBS,
        namespace,
        lambda j: (
            labels_of(j).get(OWNER_KIND) == "Dataset" and labels_of(j).get(OWNER_NAME) == name
        ),
    )
    key = decide.result_needed(body, job, target)
    return decide.decide(
        body,
        target,
        job,
        read_result(world, key) if key else None,
        world.settings,
        now=world.now(),
        other_jobs=tuple(j["metadata"]["name"] for j in others),
    )


def subjects(world: World, namespace: str, name: str) -> list[dict[str, Any]]:
    body = world.cache.get(KUBEML, "Dataset", namespace, name)
    return [body] if body is not None else []


CONTROLLER = Controller("Dataset", reconcile, subjects)

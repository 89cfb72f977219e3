"""kubeml.io Deployment: observe the servers, the registry and the retraining loop."""

from __future__ import annotations

import copy
import logging
import time
import urllib.request
from typing import Any

from ..conditions import is_true
from ..driver.engine import Controller
from ..driver.world import World
from ..k8s import objects
from ..labels import DEPLOYMENT, MANAGED_BY, MANAGER, RETRAINING_FOR, TRACK
from ..reconcile import analysis, exposure, retraining, server_objects
from ..reconcile import deployment as decide
from ..reconcile.outcome import Outcome
from .common import APPS, HTTPROUTES, INGRESSES, KUBEML, PODS, SERVICES, deleting, labels_of
from .trainingrun import versions_of

log = logging.getLogger("kubeml")
SCRAPE_TIMEOUT_SECONDS = 2.0
# Pod IPs are reached directly, never through an HTTP proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def observe(world: World, body: dict[str, Any]) -> decide.DeploymentView:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    spec = body.get("spec") or {}
    apps = {
        track: world.cache.get(*APPS, ns, server_objects.app_name(name, track))
        for track in ("stable", "canary")
    }
    template = dataset = None
    runs: list[dict[str, Any]] = []
    policy = spec.get("retraining")
    if policy:
        template = world.cache.get(KUBEML, "TrainingRun", ns, policy["template"]["name"])
        if template is not None:
            ref = ((template.get("spec") or {}).get("datasetRef") or {}).get("name", "")
            dataset = world.cache.get(KUBEML, "Dataset", ns, ref)
        runs = world.cache.list(
            KUBEML, "TrainingRun", ns, lambda r: labels_of(r).get(RETRAINING_FOR) == name
        )
    return decide.DeploymentView(
        body,
        versions_of(world, ns, str(spec.get("model", ""))),
        apps,
        world.prometheus_operator,
        template,
        dataset,
        runs,
        canary_service=world.cache.get(*SERVICES, ns, server_objects.app_name(name, "canary")),
        exposed=observe_exposure(world, body),
    )


def observe_exposure(world: World, body: dict[str, Any]) -> exposure.Observed:
    """The Deployment's Ingress and HTTPRoute, as far as the decision needs them.

    The watch holds only Ingresses we labelled: before the first apply, the name is
    looked up, so someone else's Ingress is reported rather than taken over. The
    Gateway API is looked for only while a gateway is asked for, and the route,
    which no watch keeps fresh, is re-read until every Gateway accepted it. Every
    read is at most once per discovery_seconds."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    wanted = (body.get("spec") or {}).get("exposure") or {}
    ingress = world.cache.get(*INGRESSES, ns, name)
    route = world.cache.get(*HTTPROUTES, ns, name)
    if wanted.get("ingress") and ingress is None:
        ingress = _read(world, INGRESSES, ns, name)
    served = False
    if wanted.get("gateway"):
        served = world.served(exposure.GATEWAY_GROUP_VERSION, "httproutes")
        if served and not exposure.accepted_by_all(route):
            route = _read(world, HTTPROUTES, ns, name)
    return exposure.Observed(served, route, ingress)


def _read(world: World, kind: tuple[str, str], ns: str, name: str) -> dict[str, Any] | None:
    """GET one object, or the answer of the last GET if it is recent. Ours (by label)
    goes into the cache, where the driver's writes and deletes look for it."""
    memo = world.memory("exposure-reads")
    now = time.monotonic()
    hit = memo.get((kind, ns, name))
    if hit is None or now - hit[0] >= world.settings.discovery_seconds:
        obj = objects.get(world.api, *kind, ns, name)
        if obj is None:
            world.cache.remove(*kind, ns, name)
        else:
            obj.setdefault("apiVersion", kind[0])
            obj.setdefault("kind", kind[1])
            if labels_of(obj).get(MANAGED_BY) == MANAGER:
                world.cache.put(obj)
        hit = memo[(kind, ns, name)] = (now, obj)
    return copy.deepcopy(hit[1])


def read_drift(world: World, namespace: str, name: str) -> retraining.DriftReading:
    """The drift gauges of the Deployment's ready server pods, read from each pod (no
    Prometheus needed for the loop; Prometheus alerts on the same series)."""
    texts: list[str] = []
    for pod in world.cache.list(*PODS, namespace, lambda p: labels_of(p).get(DEPLOYMENT) == name):
        status = pod.get("status") or {}
        if not status.get("podIP") or not is_true(status.get("conditions"), "Ready"):
            continue
        url = f"http://{status['podIP']}:{server_objects.PORT}/metrics"
        try:
            with _DIRECT.open(url, timeout=SCRAPE_TIMEOUT_SECONDS) as resp:
                texts.append(resp.read().decode("utf-8", "replace"))
        except OSError as err:  # one unreachable pod must not stop the loop
            log.warning(
                "drift: reading %s of pod %s/%s: %s", url, namespace, pod["metadata"]["name"], err
            )
    return retraining.drift_from_metrics(texts)


def read_sample(world: World, namespace: str, name: str, target_version: int) -> analysis.Sample:
    """The new version's forwarded requests, from each ready stable server's /metrics
    (no Prometheus needed; the same series Prometheus scrapes)."""
    texts: list[str] = []
    for pod in world.cache.list(
        *PODS,
        namespace,
        lambda p: labels_of(p).get(DEPLOYMENT) == name and labels_of(p).get(TRACK) == "stable",
    ):
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
            continue
        if not is_true(status.get("conditions"), "Ready"):
            continue
        url = f"http://{status['podIP']}:{server_objects.PORT}/metrics"
        try:
            with _DIRECT.open(url, timeout=SCRAPE_TIMEOUT_SECONDS) as resp:
                texts.append(resp.read().decode("utf-8", "replace"))
        except OSError as err:  # judged on the servers that answered
            log.warning(
                "rollout: reading %s of pod %s/%s: %s", url, namespace, pod["metadata"]["name"], err
            )
    return analysis.sample_from_metrics(texts, target_version)


def reconcile(world: World, namespace: str, name: str) -> Outcome | None:
    body = world.cache.get(KUBEML, "Deployment", namespace, name)
    if body is None or deleting(body):
        return None  # its children go with it (owner references)
    view = observe(world, body)
    now = world.now()
    if decide.wants_drift(view, world.settings, now=now):
        view = decide.DeploymentView(
            **{**view.__dict__, "drift": read_drift(world, namespace, name)}
        )
    if decide.wants_sample(view, world.settings, now=now):
        target = int(((body.get("status") or {}).get("rollout") or {})["to"]["version"])
        view = decide.DeploymentView(
            **{**view.__dict__, "sample": read_sample(world, namespace, name, target)}
        )
    return decide.decide(
        view, world.settings, now=now, drift_poll_seconds=world.settings.drift_poll_seconds
    )


def subjects(world: World, namespace: str, name: str) -> list[dict[str, Any]]:
    body = world.cache.get(KUBEML, "Deployment", namespace, name)
    return [body] if body is not None else []


CONTROLLER = Controller("Deployment", reconcile, subjects)

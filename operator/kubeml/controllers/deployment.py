"""kubeml.io Deployment: observe the servers, the registry and the retraining loop."""

from __future__ import annotations

import copy
import logging
import time
import urllib.request
from datetime import datetime
from typing import Any

from ..api.deployment import retention_hours
from ..conditions import is_true
from ..driver.engine import Controller
from ..driver.world import World
from ..k8s import objects
from ..labels import DEPLOYMENT, MANAGED_BY, MANAGER, RETRAINING_FOR, TRACK
from ..reconcile import analysis, exposure, prometheus, retention, retraining, server_objects
from ..reconcile import deployment as decide
from ..reconcile.outcome import Outcome, S3Delete
from ..storage import StorageError, layout
from . import prometheus_source
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
        for track in ("stable", "canary", "shadow")
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
        shadow_service=world.cache.get(*SERVICES, ns, server_objects.app_name(name, "shadow")),
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


def _pages(world: World, namespace: str, name: str, track: str, what: str) -> list[str]:
    """/metrics of each ready server pod of one track; one that does not answer is
    left out (judged on the servers that answered)."""
    texts: list[str] = []
    for pod in world.cache.list(
        *PODS,
        namespace,
        lambda p: labels_of(p).get(DEPLOYMENT) == name and labels_of(p).get(TRACK) == track,
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
        except OSError as err:
            log.warning(
                "%s: reading %s of pod %s/%s: %s",
                what,
                url,
                namespace,
                pod["metadata"]["name"],
                err,
            )
    return texts


def read_sample(world: World, namespace: str, name: str, body: dict[str, Any]) -> analysis.Sample:
    """The rollout's numbers for the step so far: from Prometheus when the operator is
    configured with one, else from each ready server's /metrics (the same series
    Prometheus scrapes)."""
    st = (body.get("status") or {}).get("rollout") or {}
    policy = ((body.get("spec") or {}).get("rollout") or {}).get("analysis") or {}
    target = int(st["to"]["version"])
    drift = policy.get("maxDriftPsi") is not None
    if world.settings.prometheus_url:
        return prometheus_source.read(
            world.settings.prometheus_url,
            world.settings.prometheus_timeout_seconds,
            prometheus.Selection(
                namespace,
                name,
                int(st["from"]["version"]),
                target,
                prometheus.window_seconds(world.now(), st.get("stepStartTime")),
                drift=drift,
                agreement=policy.get("minAgreement") is not None,
            ),
        )
    stable = _pages(world, namespace, name, "stable", "rollout")
    canary = _pages(world, namespace, name, "canary", "rollout") if drift else []
    return analysis.sample_from_metrics(stable, target, canary)


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
        view = decide.DeploymentView(
            **{**view.__dict__, "sample": read_sample(world, namespace, name, body)}
        )
    shadow_version = decide.wants_shadow_reading(view, now=now)
    if shadow_version is not None:
        pages = _pages(world, namespace, name, "stable", "shadow")
        reading = analysis.sample_from_metrics(pages, shadow_version)
        view = decide.DeploymentView(**{**view.__dict__, "shadow_reading": reading})
    out = decide.decide(
        view, world.settings, now=now, drift_poll_seconds=world.settings.drift_poll_seconds
    )
    keep = ((body.get("spec") or {}).get("capture") or {}).get("retention")
    if keep:
        out.merge(sweep_retention(world, namespace, name, keep))
    return out


def sweep_retention(world: World, namespace: str, name: str, keep: str) -> Outcome:
    """Delete this Deployment's capture and feedback partitions older than ``keep``,
    every retention_sweep_seconds. Only its own two prefixes in its namespace's space
    are listed, and only partition files under them are chosen (reconcile/retention)."""
    out = Outcome()
    every = world.settings.retention_sweep_seconds
    memo = world.memory("retention")
    now = world.clock()
    last: datetime | None = memo.get((namespace, name))
    if last is not None and not retention.due(last, now, every):
        out.look_again(every - (now - last).total_seconds())
        return out
    bucket = world.settings.bucket
    store = world.store_for(bucket)
    roots = [layout.capture_prefix(namespace, name), layout.feedback_prefix(namespace, name)]
    try:
        keys = [o.key for root in roots for o in store.list_prefix(root)]
    except StorageError as err:  # tried again at the next sweep
        log.warning("retention: listing %s/%s's captures in %s: %s", namespace, name, bucket, err)
        memo[(namespace, name)] = now
        out.look_again(every)
        return out
    sweep = retention.expired(keys, roots, now, retention_hours(keep))
    why = f"deployment {namespace}/{name}: older than spec.capture.retention {keep}"
    out.s3_deletes += [S3Delete(bucket, key, why) for key in sweep.delete]
    if sweep.more:
        out.look_again(0.0)  # the next batch right away
    else:
        memo[(namespace, name)] = now
        out.look_again(every)
    return out


def subjects(world: World, namespace: str, name: str) -> list[dict[str, Any]]:
    body = world.cache.get(KUBEML, "Deployment", namespace, name)
    return [body] if body is not None else []


CONTROLLER = Controller("Deployment", reconcile, subjects)

"""The operator process: kopf's watch streams feed the cache; the driver reconciles.

kopf is used for what it is good at here (watch streams that resume, reconnect
and time out deliberately, health probes, graceful shutdown). Every handler is a
watch-event handler that updates the cache and queues the reconciles the change
wakes; the reconciles themselves, their retries and their timing belong to the
driver (``kubeml.driver``), so kopf writes nothing to our objects.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from kopf._cogs.structs.references import Selector  # kopf does not re-export it
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from . import metrics
from .controllers import CONTROLLERS, POLLED, WATCHES, Watch
from .driver.cache import ObjectCache, newer_or_same
from .driver.discovery import Discovery
from .driver.engine import Driver
from .driver.execute import Executor
from .driver.leader import Elector
from .driver.world import Stores, World
from .k8s import client, objects
from .settings import Settings
from .storage import ArtifactStore

log = logging.getLogger("kubeml")


@dataclass
class Runtime:
    driver: Driver
    cache: ObjectCache
    tasks: list[asyncio.Task[None]]
    last_event: float
    elector: Elector | None = None


_runtime: Runtime | None = None


def _configure_kopf(settings: kopf.OperatorSettings) -> None:
    # kopf strips its own finalizer from objects that have no deletion handlers:
    # kubeml.io/finalizer is the driver's (ModelVersions), so kopf gets another name,
    # which it never adds (no kopf handler here needs one).
    settings.persistence.finalizer = "kopf.kubeml.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeml.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubeml.io", key="last-handled-configuration"
    )
    # Watch streams can stall silently; bound them on both sides.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # kopf posts nothing of its own: our driver posts the meaningful events.
    settings.posting.enabled = False
    # kopf waits this long for more events of one object before handing over the last;
    # the driver's queue already merges repeats, so only the delay would remain.
    settings.batching.batch_window = 0.01
    # Cluster-wide CRD scanning would need RBAC on CRDs; the kinds are fixed.
    settings.scanning.disabled = True
    for w in WATCHES:
        if w.selector:
            settings.watching.label_selectors[_selector(w)] = w.selector


def _selector(w: Watch) -> Selector:
    return Selector(group=w.group, version=w.version, plural=w.plural)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _runtime
    _configure_kopf(settings)
    ours = Settings.from_env()
    # Each process is its own leader-election candidate (a leader's container restarted
    # under the same pod name must not resume a lease it held before the crash), and its
    # requests say which process made them (the audit log shows who acted when).
    identity = f"{ours.identity or 'kubeml'}_{uuid.uuid4().hex[:8]}"
    api = client.api_client(identity)
    cache = ObjectCache()
    stores = Stores(ArtifactStore.from_env)
    world = World(
        cache,
        ours,
        api,
        stores,
        prometheus_operator=_has_monitoring_api(api),
        served=Discovery(api, ours.discovery_seconds).served,
    )
    # Polled kinds are kept in the cache too (listed, and written through).
    watched = {(w.api_version, w.kind) for w in (*WATCHES, *POLLED)}
    executor = Executor(api, cache, stores, watched, world.now)
    driver = Driver(world, executor, CONTROLLERS, workers=ours.workers)
    # Like an informer: the cache is complete before the first decision, so no
    # decision is made on a half-listed world (a missing child is re-created, a
    # missing version number reused).
    await asyncio.to_thread(_list_all, api, cache, ours.namespaces)
    _runtime = Runtime(driver, cache, [], time.monotonic())

    def lead() -> None:
        driver.start()
        _enqueue_all(driver, cache)

    if ours.leader_election:
        # A standby keeps its cache warm and reconciles nothing until it leads.
        elector = Elector(api, ours.lease_namespace, ours.lease_name, identity, lead)
        _runtime.elector = elector
        _runtime.tasks.append(asyncio.create_task(elector.run()))
    else:
        lead()
    start_http_server(ours.metrics_port, addr=ours.bind_address)
    _runtime.tasks.append(asyncio.create_task(_resync_forever(api, cache, driver, ours)))
    log.info(
        "kubeml operator configured: bucket=%s namespaces=%s workers=%d leader election=%s",
        ours.bucket,
        ",".join(ours.namespaces) or "<all>",
        ours.workers,
        f"lease {ours.lease_namespace}/{ours.lease_name}" if ours.leader_election else "off",
    )


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _runtime is not None:
        for task in _runtime.tasks:
            task.cancel()
        await _runtime.driver.stop()
        if _runtime.elector is not None:
            # After the workers stopped: hand the Lease over without waiting for it to expire.
            await asyncio.to_thread(_runtime.elector.release)


@kopf.on.probe(id="lastEventAgeSeconds")
def last_event_age(**_: Any) -> float:
    # A stalled watch shows up here as an ever-growing age.
    return round(time.monotonic() - (_runtime.last_event if _runtime else 0.0), 1)


@kopf.on.probe(id="queueDepth")
def queue_depth(**_: Any) -> int:
    return len(_runtime.driver.queue) if _runtime else 0


def _register(w: Watch) -> None:
    @kopf.on.event(group=w.group, version=w.version, plural=w.plural, id=f"watch-{w.kind}")
    async def on_event(event: Mapping[str, Any], type: str | None, **_: Any) -> None:
        if _runtime is None:
            return
        _runtime.last_event = time.monotonic()
        obj = dict(event["object"])
        obj.setdefault("apiVersion", w.api_version)
        obj.setdefault("kind", w.kind)
        if type == "DELETED":
            meta = obj["metadata"]
            _runtime.cache.remove(w.api_version, w.kind, meta.get("namespace", ""), meta["name"])
        elif not _runtime.cache.put(obj):
            return  # older than what our own write already put there
        for kind, ns, name in w.keys(_runtime.cache, obj):
            _runtime.driver.enqueue(kind, ns, name)


for _w in WATCHES:
    _register(_w)


def _has_monitoring_api(api: ApiClient) -> bool:
    # Checked once per process; installing the Prometheus Operator later needs an
    # operator restart to be picked up (documented).
    try:
        objects.request(api, "GET", "/apis/monitoring.coreos.com/v1")
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def _list_all(api: ApiClient, cache: ObjectCache, namespaces: tuple[str, ...]) -> None:
    for w in WATCHES:
        relist(api, cache, w, namespaces)
    for w in POLLED:
        try:
            relist(api, cache, w, namespaces)
        except ApiException as err:
            if err.status != 404:
                raise
            # Not installed (now): whatever the cache held of it is gone with its CRD.
            for ns, name in cache.keys(w.api_version, w.kind):
                cache.remove(w.api_version, w.kind, ns, name)


def relist(api: ApiClient, cache: ObjectCache, w: Watch, namespaces: tuple[str, ...]) -> None:
    """Refill the cache for one kind from a LIST; drop what the LIST no longer has
    unless the cache saw it after the LIST was taken (a watch event raced it)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    versions = []
    for ns in namespaces or (None,):
        items, version = objects.list_with_version(api, w.api_version, w.kind, ns, w.selector)
        versions.append(version)
        for item in items:
            found[(item["metadata"].get("namespace", ""), item["metadata"]["name"])] = item
    for item in found.values():
        cache.put(item)
    listed_at = {"metadata": {"resourceVersion": min(versions, key=_as_int)}}
    for ns, name in cache.keys(w.api_version, w.kind):
        if (ns, name) in found:
            continue
        held = cache.get(w.api_version, w.kind, ns, name)
        if held is not None and newer_or_same(listed_at, held):
            cache.remove(w.api_version, w.kind, ns, name)
    metrics.CACHED_OBJECTS.labels(w.kind).set(cache.count(w.api_version, w.kind))


def _as_int(version: str) -> int:
    return int(version) if version.isdigit() else 0


# Which controller reconciles each primary kind's objects, keyed as the driver keys them.
_PRIMARY = {"Dataset": "Dataset", "TrainingRun": "TrainingRun", "Deployment": "Deployment"}


def _enqueue_all(driver: Driver, cache: ObjectCache) -> None:
    for kind in _PRIMARY:
        for ns, name in cache.keys("kubeml.io/v1alpha1", kind):
            driver.enqueue(kind, ns, name)
    for mv in cache.list("kubeml.io/v1alpha1", "ModelVersion"):
        driver.enqueue("Model", mv["metadata"]["namespace"], str(mv["spec"]["model"]))


async def _resync_forever(
    api: ApiClient, cache: ObjectCache, driver: Driver, settings: Settings
) -> None:
    """The safety net: a slow relist (a watch restart does not report objects deleted
    while it was down) and one reconcile of everything. Time-based work does not
    wait for this; it asks to be looked at again when it is due."""
    while True:
        await asyncio.sleep(settings.resync_seconds)
        try:
            await asyncio.to_thread(functools.partial(_list_all, api, cache, settings.namespaces))
        except Exception as err:  # keep the safety net whatever one LIST does
            log.warning("resync: relisting failed: %s", err)
        _enqueue_all(driver, cache)


def run(settings: Settings) -> None:
    kopf.configure(verbose=False)
    asyncio.run(
        kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,
            liveness_endpoint=f"http://{settings.bind_address}:{settings.health_port}/healthz",
        )
    )

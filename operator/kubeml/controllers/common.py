"""What every controller shares: serialised reconciles per object, events, the clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..conditions import now_rfc3339
from ..settings import Settings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger("kubeml")

_locks: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_settings: Settings | None = None
last_event = time.monotonic()


def touch() -> None:
    """Record that a watch event arrived (reported by the liveness probe)."""
    global last_event
    last_event = time.monotonic()


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


async def serialised(
    kind: str, namespace: str, name: str, work: Callable[[], Awaitable[None]]
) -> None:
    """Run one reconcile of an object at a time.

    Reconciles are triggered by the object's own events, its children's events
    and a resync timer; serialising them keeps status writes in order.
    """
    async with _locks[(kind, namespace, name)]:
        await work()


Reconciler = Callable[[str, str, dict[str, Any] | None], Awaitable[None]]
_resync: dict[str, tuple[str, str, Reconciler]] = {}


def register_resync(kind: str, api_version: str, plural: str, fn: Reconciler) -> None:
    _resync[kind] = (api_version, plural, fn)


async def resync_forever(namespaces: tuple[str, ...]) -> None:
    """Reconcile every object of every kind periodically.

    The level-based safety net: picks up refresh schedules and whatever a lost
    watch event would otherwise leave behind, without a finalizer per object
    (which kopf timers would add).
    """
    from ..k8s import client

    while True:
        await asyncio.sleep(settings().resync_seconds)
        for kind, (api_version, plural, fn) in _resync.items():
            group, version = api_version.split("/")
            try:
                items = await asyncio.to_thread(
                    _list_all, client, group, version, plural, namespaces
                )
            except Exception:  # keep resyncing whatever one list call does
                log.exception("resync: listing %s failed", plural)
                continue
            for item in items:
                meta = item["metadata"]
                try:
                    await fn(meta["namespace"], meta["name"], item)
                except Exception:
                    log.exception(
                        "resync of %s %s/%s failed", kind, meta["namespace"], meta["name"]
                    )


async def reconcile_owner(
    api_version: str, kind: str, namespace: str | None, name: str | None, fn: Reconciler
) -> None:
    """A child's event (a Job, a server Deployment, a retraining run) reconciles the
    object it belongs to, found by the name in the child's labels."""
    if not name or not namespace:
        return
    from ..k8s import client, objects

    parent = await asyncio.to_thread(
        objects.get, client.api_client(), api_version, kind, namespace, name
    )
    if parent is not None:
        await fn(namespace, name, parent)


def _list_all(
    client: Any, group: str, version: str, plural: str, namespaces: tuple[str, ...]
) -> list[dict[str, Any]]:
    api = client.custom()
    if not namespaces:
        return list(api.list_cluster_custom_object(group, version, plural)["items"])
    out: list[dict[str, Any]] = []
    for ns in namespaces:
        out += api.list_namespaced_custom_object(group, version, ns, plural)["items"]
    return out


_store: Any = None


def store() -> Any:
    """The operator's artifact store (credentials from its own env, never a Secret read)."""
    global _store
    if _store is None:
        from ..storage import ArtifactStore

        _store = ArtifactStore.from_env()
    return _store


def read_result(key: str) -> tuple[dict[str, Any] | None, str | None]:
    """A Job's result manifest, or why it could not be read."""
    from ..storage import StorageError

    try:
        result = store().get_json(key)
    except StorageError as err:
        return None, str(err)
    if not isinstance(result, dict):
        return None, f"{store().uri(key)} is not a JSON object"
    return result, None


async def post_events(body: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
    from ..k8s import client
    from ..k8s import events as k8s_events

    await asyncio.to_thread(k8s_events.post, client.api_client(), body, events)


def write_status(
    api: ApiClient,
    kind: str,
    body: dict[str, Any],
    status: dict[str, Any],
    *,
    seen: dict[str, Any] | None = None,
) -> None:
    """Add kstatus's Reconciling and Stalled (judged on ``seen``, the object the
    decision was made for; default ``body``) and patch the status if it changed."""
    from .. import health
    from ..k8s import objects

    status["conditions"] = health.kstatus_conditions(
        kind, {**(seen or body), "status": status}, now=now()
    )
    if status != (body.get("status") or {}):
        objects.patch_status(api, body, status)


def now() -> str:
    return now_rfc3339()

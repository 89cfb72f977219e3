"""The Kubernetes API as plain dicts: the sync client run in threads, and pod reflectors.

Objects stay in wire form (camelCase dicts) end to end: the pure translation code reads
pods exactly as the API serves them, and no model (de)serialisation can choke on fields
newer than the client (``_preload_content=False`` everywhere).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, Configuration, CoordinationV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

Json = dict[str, Any]
SMP = "application/strategic-merge-patch+json"
REQUEST_TIMEOUT = 30.0


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def describe(exc: BaseException) -> str:
    """One line: the apiserver's own message for API errors, else the first line."""
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"HTTP {exc.status}: {message or exc.reason}"
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class Kube:
    def __init__(self, kubeconfig: Path, pool_size: int = 64) -> None:
        cfg = Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        # Many pods' status writes, probes and token requests run at once in threads.
        cfg.connection_pool_maxsize = pool_size
        self.client = ApiClient(cfg)
        self.core = CoreV1Api(self.client)
        self.coordination = CoordinationV1Api(self.client)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one API call in a thread; return the decoded JSON body (or None)."""
        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        resp = await asyncio.to_thread(fn, *args, **kwargs)
        data = resp.data
        return json.loads(data) if data else None

    async def patch_pod_status(self, namespace: str, name: str, status: Json) -> Json:
        result: Json = await self.call(
            self.core.patch_namespaced_pod_status,
            name,
            namespace,
            {"status": status},
            _content_type=SMP,
        )
        return result


EventSink = Callable[[str, Any], None]


class _Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


class PodReflector:
    """List + watch of pods matching a field selector, in a daemon thread (or of other
    objects, with ``list_fn``: a ``list_*_for_all_namespaces`` method).

    Calls ``sink("SYNC", [pods])`` after every (re)list, so the consumer can drop pods it
    knows that are gone, then ``sink(type, pod)`` per watch event. Errors (apiserver down,
    restarts, 410 Gone) lead to a relist with back-off; the thread never dies of them."""

    def __init__(
        self,
        kube: Kube,
        field_selector: str,
        sink: EventSink,
        *,
        watch_timeout: int = 120,
        name: str = "pods",
        list_fn: Callable[..., Any] | None = None,
    ) -> None:
        self.kube = kube
        self.list_fn = list_fn or kube.core.list_pod_for_all_namespaces
        self.field_selector = field_selector
        self.sink = sink
        self.watch_timeout = watch_timeout
        self.name = name
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reflector-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stopped.is_set():
            try:
                listing = json.loads(
                    self.list_fn(
                        field_selector=self.field_selector,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT,
                    ).data
                )
                self.sink("SYNC", listing.get("items") or [])
                rv = listing["metadata"]["resourceVersion"]
                backoff = 0.2
                while not self._stopped.is_set():
                    rv = self._watch_once(rv)
            except _Gone:
                continue
            except Exception as exc:
                log.warning(
                    "%s reflector: %s; relisting in %.1fs",
                    self.name,
                    describe(exc),
                    backoff,
                )
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch_once(self, rv: str) -> str:
        resp = self.list_fn(
            field_selector=self.field_selector,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _preload_content=False,
            _request_timeout=(10, self.watch_timeout + 30),
        )
        try:
            for line in iter_resp_lines(resp):
                if self._stopped.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.sink(str(kind), obj)
        finally:
            resp.release_conn()
        return rv

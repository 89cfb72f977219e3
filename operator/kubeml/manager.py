"""The operator process: kopf configured deliberately, health and metrics endpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from .controllers import common
from .settings import Settings

log = logging.getLogger("kubeml")
_tasks: list[asyncio.Task[None]] = []


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = common.settings()
    # Our own names from the first release: renaming finalizers or annotations
    # later strands the old ones on existing objects.
    settings.persistence.finalizer = "kubeml.io/finalizer"
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
    # Only warnings and errors become Kubernetes Events; our controllers post
    # their own meaningful events (Prepared, GateFailed, ...).
    settings.posting.level = logging.WARNING
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60, 120]
    settings.execution.max_workers = 8
    # Cluster-wide CRD scanning would need RBAC on CRDs; the kinds are fixed.
    settings.scanning.disabled = True
    start_http_server(ours.metrics_port, addr=ours.bind_address)
    _tasks.append(asyncio.create_task(common.resync_forever(ours.namespaces)))
    log.info(
        "kubeml operator configured: bucket=%s namespaces=%s",
        ours.bucket,
        ",".join(ours.namespaces) or "<all>",
    )


@kopf.on.cleanup()
async def stop_background(**_: Any) -> None:
    for task in _tasks:
        task.cancel()


@kopf.on.probe(id="lastEventAgeSeconds")
def last_event_age(**_: Any) -> float:
    # A stalled watch shows up here as an ever-growing age.
    return round(time.monotonic() - common.last_event, 1)


def run(settings: Settings) -> None:
    from . import controllers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=False)
    asyncio.run(
        kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,
            liveness_endpoint=f"http://{settings.bind_address}:{settings.health_port}/healthz",
        )
    )

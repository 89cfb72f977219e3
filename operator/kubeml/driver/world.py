"""What observing needs: the cache, the artifact store, the clock, and a little memory.

Controllers observe through a World; tests of the observing code can build one
around a cache they fill by hand.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient

from .. import metrics
from ..schedules import format_time
from ..settings import Settings
from ..storage import ArtifactStore
from .cache import ObjectCache


@dataclass
class World:
    cache: ObjectCache
    settings: Settings
    api: ApiClient
    store_for: Callable[[str], ArtifactStore]
    prometheus_operator: bool = False
    # (group/version, plural) -> whether the apiserver serves it now (driver.discovery).
    served: Callable[[str, str], bool] = lambda group_version, plural: False
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Facts a controller keeps between reconciles that are not worth a status write
    # (e.g. when an artifact was last looked at). Lost on restart, by design.
    memo: dict[str, dict[Any, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> str:
        return format_time(self.clock())

    def memory(self, name: str) -> dict[Any, Any]:
        with self._lock:
            return self.memo.setdefault(name, {})


class Stores:
    """One ArtifactStore per bucket, made on first use, counting every S3 request."""

    def __init__(self, base: Callable[[], ArtifactStore]) -> None:
        self._base = base
        self._stores: dict[str, ArtifactStore] = {}
        self._lock = threading.Lock()

    def __call__(self, bucket: str) -> ArtifactStore:
        with self._lock:
            if not self._stores:
                first = self._base()
                _count_requests(first)
                self._stores[first.bucket] = first
            store = self._stores.get(bucket)
            if store is None:
                base = next(iter(self._stores.values()))
                store = ArtifactStore(dataclasses.replace(base.settings, bucket=bucket))
                _count_requests(store)
                self._stores[bucket] = store
            return store


def _count_requests(store: ArtifactStore) -> None:
    def count(model: Any, **_: Any) -> None:
        metrics.S3_REQUESTS.labels(getattr(model, "name", "unknown")).inc()

    store.client.meta.events.register("before-call.s3", count)

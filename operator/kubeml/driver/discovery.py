"""Which optional APIs the apiserver serves (the Gateway API), looked up lazily.

Asked only while some object needs the answer, and remembered for a while either
way: a CRD installed (or removed) after the operator started is noticed within
that time, without a watch on CRDs (which would need cluster-wide RBAC on them)
and without a request per reconcile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..k8s import objects


class Discovery:
    def __init__(
        self, api: ApiClient, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api, self.ttl, self.clock = api, ttl_seconds, clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, frozenset[str]]] = {}

    def served(self, group_version: str, plural: str) -> bool:
        """Whether ``plural`` of ``group_version`` (e.g. gateway.networking.k8s.io/v1,
        httproutes) is served now, as of at most ttl seconds ago."""
        with self._lock:
            hit = self._seen.get(group_version)
        if hit is not None and self.clock() - hit[0] < self.ttl:
            return plural in hit[1]
        try:
            doc = objects.request(self.api, "GET", f"/apis/{group_version}")
            plurals = frozenset(str(r.get("name")) for r in doc.get("resources") or [])
        except ApiException as err:
            if err.status != 404:
                raise
            plurals = frozenset()
        with self._lock:
            self._seen[group_version] = (self.clock(), plurals)
        return plural in plurals

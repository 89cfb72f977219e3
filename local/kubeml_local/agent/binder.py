"""The scheduler's part: bind every schedulable pending pod to this node.

A pod is schedulable here when it has no node, asks for the default scheduler, carries no
scheduling gates, is not being deleted, and its nodeSelector (if any) matches our labels.
Affinity, taints and resources are not evaluated: there is one node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubeml_local.agent.kubeapi import Kube, status_of

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER = "default-scheduler"


def schedulable(pod: Mapping[str, Any], node_labels: Mapping[str, str]) -> bool:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("nodeName") or meta.get("deletionTimestamp"):
        return False
    if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
        return False
    if spec.get("schedulingGates"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    selector = spec.get("nodeSelector") or {}
    return all(node_labels.get(k) == v for k, v in selector.items())


def binding_body(pod_name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod_name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


class Binder:
    def __init__(self, kube: Kube, node: str, node_labels: Mapping[str, str]) -> None:
        self.kube = kube
        self.node = node
        self.node_labels = dict(node_labels)
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._pending: set[str] = set()

    def offer(self, pod: Mapping[str, Any]) -> None:
        """Queue a pod seen by the unbound-pods reflector (idempotent per uid)."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        if uid in self._pending or not schedulable(pod, self.node_labels):
            return
        self._pending.add(uid)
        self._queue.put_nowait((str(meta.get("namespace")), str(meta.get("name")), uid))

    async def run(self) -> None:
        while True:
            namespace, name, uid = await self._queue.get()
            retry = await self._bind(namespace, name)
            if retry:
                asyncio.get_running_loop().call_later(
                    1.0, self._queue.put_nowait, (namespace, name, uid)
                )
            else:
                self._pending.discard(uid)

    async def _bind(self, namespace: str, name: str) -> bool:
        try:
            await self.kube.call(
                self.kube.core.create_namespaced_pod_binding,
                name,
                namespace,
                binding_body(name, self.node),
            )
            log.info("bound %s/%s to %s", namespace, name, self.node)
            return False
        except Exception as exc:
            code = status_of(exc)
            if code in (404, 409, 422):  # gone, already bound, or being deleted
                return False
            log.warning("binding %s/%s failed (%s); will retry", namespace, name, code or exc)
            return True

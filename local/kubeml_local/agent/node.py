"""The Node object: registration, status and the heartbeat (status + Lease).

The controller manager here runs without node-lifecycle, so nothing would evict pods if the
heartbeat stopped; we keep it anyway so `kubectl get nodes` and any controller that reads
conditions or Leases see a healthy, current node.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeml_local.agent.kubeapi import SMP, Kube, describe, status_of
from kubeml_local.agent.status import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)

Json = dict[str, Any]
KUBELET_VERSION = "v1.36.3"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class NodeResources:
    cpu: str
    memory: str
    pods: str = "110"
    ephemeral_storage: str = "100Gi"

    def as_dict(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }


def host_memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1])}Ki"
    except OSError:
        pass
    return "8Gi"


def arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def node_labels(name: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch(),
        "node.kubernetes.io/instance-type": "kubeml-local",
    }


def node_object(name: str) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name)},
        "spec": {},
    }


_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def node_conditions(heartbeat: dt.datetime, transitions: Mapping[str, str]) -> list[Json]:
    """``transitions`` maps condition type to its existing lastTransitionTime, if any."""
    stamp = rfc3339(heartbeat)
    return [
        {
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": transitions.get(t, stamp),
        }
        for t, s, r, m in _CONDITIONS
    ]


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def node_status(
    name: str,
    resources: NodeResources,
    host_ip: str,
    heartbeat: dt.datetime,
    transitions: Mapping[str, str],
    kubelet_port: int = 0,
) -> Json:
    machine_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"kubeml-local/{name}").hex
    return {
        "capacity": resources.as_dict(),
        "allocatable": resources.as_dict(),
        "conditions": node_conditions(heartbeat, transitions),
        "addresses": [
            {"type": "InternalIP", "address": host_ip},
            {"type": "Hostname", "address": name},
        ],
        # Where the apiserver reaches our kubelet API (logs); 0: not served.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": machine_id,
            "bootID": boot_id(),
            "kernelVersion": platform.release(),
            "osImage": "kubeml local node agent",
            "containerRuntimeVersion": "kubeml-local://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    }


def lease_body(name: str, node_uid: str | None, renew: dt.datetime) -> Json:
    body: Json = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": rfc3339_micro(renew),
        },
    }
    if node_uid:
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
        ]
    return body


class NodeAgent:
    def __init__(
        self,
        kube: Kube,
        name: str,
        resources: NodeResources,
        host_ip: str,
        heartbeat_seconds: float = 10.0,
        kubelet_port: int = 0,
    ) -> None:
        self.kube = kube
        self.kubelet_port = kubelet_port
        self.name = name
        self.resources = resources
        self.host_ip = host_ip
        self.heartbeat_seconds = heartbeat_seconds
        self.uid: str | None = None
        self._transitions: dict[str, str] = {}

    async def register(self) -> None:
        """Create the Node (or adopt the existing one), then write its status."""
        try:
            node = await self.kube.call(self.kube.core.create_node, node_object(self.name))
            log.info("registered node %s", self.name)
        except Exception as exc:
            if status_of(exc) != 409:
                raise
            node = await self.kube.call(self.kube.core.read_node, self.name)
        self.uid = node["metadata"]["uid"]
        healthy = {t: s for t, s, _, _ in _CONDITIONS}
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("status") == healthy.get(cond["type"]):
                self._transitions[cond["type"]] = cond.get("lastTransitionTime", "")
        await self.post_status()

    async def post_status(self) -> None:
        now = dt.datetime.now(dt.UTC)
        status = node_status(
            self.name, self.resources, self.host_ip, now, self._transitions, self.kubelet_port
        )
        for cond in status["conditions"]:
            self._transitions.setdefault(cond["type"], cond["lastTransitionTime"])
        await self.kube.call(
            self.kube.core.patch_node_status, self.name, {"status": status}, _content_type=SMP
        )

    async def renew_lease(self) -> None:
        body = lease_body(self.name, self.uid, dt.datetime.now(dt.UTC))
        api = self.kube.coordination
        try:
            # A patch needs no resourceVersion (an update of a Lease does).
            await self.kube.call(
                api.patch_namespaced_lease,
                self.name,
                LEASE_NAMESPACE,
                {"spec": body["spec"]},
                _content_type=SMP,
            )
        except Exception as exc:
            if status_of(exc) != 404:
                raise
            await self.kube.call(api.create_namespaced_lease, LEASE_NAMESPACE, body)

    async def heartbeat(self) -> None:
        """Forever: status + Lease every period; re-register if the Node was deleted."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                try:
                    await self.post_status()
                except Exception as exc:
                    if status_of(exc) != 404:
                        raise
                    log.warning("node %s disappeared; registering again", self.name)
                    self._transitions.clear()
                    await self.register()
                await self.renew_lease()
            except Exception as exc:
                log.warning("heartbeat failed: %s", describe(exc))


def default_resources(cpu: str | None, memory: str | None) -> NodeResources:
    return NodeResources(cpu=cpu or str(os.cpu_count() or 2), memory=memory or host_memory())

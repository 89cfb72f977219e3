"""Pure decisions of the service proxy: which addresses a Service listens on, which
endpoints it has, which endpoint a new connection goes to, and the environment variables
the kubelet gives pods for Services. No sockets and no API calls here (see :mod:`.proxy`).

Like kube-proxy's userspace mode: every TCP port of a Service with a ClusterIP gets a
listener on ``clusterIP:port``; an accepted connection is relayed to one of the ready pods
the Service's selector matches, on the ``targetPort`` (a number, or the name of a container
port, resolved per pod). Endpoints come from pods and their Ready condition directly: the
controller manager's endpointslice controller does not run here (EndpointSlices reject
loopback addresses, and every address here is one).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# The apiserver's own Service: it has no selector (and no Endpoints here, see
# components.py), so it is relayed to the apiserver the agent talks to.
MASTER_NAMESPACE = "default"
MASTER_SERVICE = "kubernetes"


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    pod: str = field(default="", compare=False)


@dataclass(frozen=True, order=True)
class PortKey:
    """One port of one Service: what a listener serves."""

    namespace: str
    service: str
    port_name: str

    def __str__(self) -> str:
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.service}{suffix}"


@dataclass(frozen=True)
class ServicePort:
    key: PortKey
    cluster_ip: str
    port: int
    target_port: int | str


def _meta(obj: Mapping[str, Any]) -> Json:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Json:
    return obj.get("spec") or {}


def in_range(ip: str, cidr: str | None) -> bool:
    """Whether ``ip`` is a loopback address inside ``cidr`` (any loopback one if None)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    if addr not in LOOPBACK:
        return False
    return cidr is None or addr in ipaddress.IPv4Network(cidr)


def cluster_ip(service: Mapping[str, Any]) -> str | None:
    """The Service's ClusterIP, or None (headless, ExternalName, not yet allocated)."""
    spec = _spec(service)
    if spec.get("type") == "ExternalName":
        return None
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        return None
    return str(ip)


def service_ports(service: Mapping[str, Any], cidr: str | None) -> list[ServicePort]:
    """The TCP ports to listen on; none for a ClusterIP outside ``cidr`` (this cluster's
    service range): never bind an address another cluster on this machine may own."""
    ip = cluster_ip(service)
    if ip is None or not in_range(ip, cidr):
        return []
    meta = _meta(service)
    out = []
    for p in _spec(service).get("ports") or []:
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        target = p.get("targetPort")
        if target is None or target == "" or target == 0:
            target = int(p["port"])
        key = PortKey(str(meta.get("namespace", "")), str(meta.get("name", "")), p.get("name", ""))
        out.append(ServicePort(key, ip, int(p["port"]), target))
    return out


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Ready, not terminating, with an address: what gets new connections."""
    status = pod.get("status") or {}
    if _meta(pod).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    if not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def resolve_target(pod: Mapping[str, Any], target: int | str) -> int | None:
    """The pod's port for a targetPort: a number, or a named container port."""
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for c in _spec(pod).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == "TCP":
                return int(p["containerPort"])
    return None


def endpoints(
    service: Mapping[str, Any],
    port: ServicePort,
    pods: Iterable[Mapping[str, Any]],
    apiserver: Endpoint | None = None,
) -> tuple[Endpoint, ...]:
    """Ready pods of the Service's namespace that its selector matches, on the target
    port; sorted, so round-robin order is stable while the set does not change. Only
    loopback addresses: nothing is ever relayed off this machine."""
    meta = _meta(service)
    if (meta.get("namespace"), meta.get("name")) == (MASTER_NAMESPACE, MASTER_SERVICE):
        return (apiserver,) if apiserver is not None else ()
    selector = _spec(service).get("selector") or {}
    if not selector:  # endpoints managed by hand: not supported here
        return ()
    found = set()
    for pod in pods:
        if _meta(pod).get("namespace") != meta.get("namespace"):
            continue
        if not selects(selector, _meta(pod).get("labels") or {}) or not pod_ready(pod):
            continue
        target = resolve_target(pod, port.target_port)
        ip = str((pod.get("status") or {}).get("podIP"))
        if target is None or not in_range(ip, None):
            continue
        found.add(Endpoint(ip, target, str(_meta(pod).get("name", ""))))
    return tuple(sorted(found))


def slim_pod(pod: Mapping[str, Any]) -> Json:
    """What endpoints are made of; the proxy keeps every pod of the node in memory."""
    meta, status = _meta(pod), pod.get("status") or {}
    containers = _spec(pod).get("containers") or []
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "deletionTimestamp")
            if k in meta
        },
        "spec": {"containers": [{"ports": c.get("ports") or []} for c in containers]},
        "status": {k: status[k] for k in ("phase", "podIP", "conditions") if k in status},
    }


def slim_service(service: Mapping[str, Any]) -> Json:
    meta = _meta(service)
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
        "spec": _spec(service),
    }


@dataclass(frozen=True)
class Listener:
    """What one ``clusterIP:port`` does: relay to these endpoints."""

    key: PortKey
    endpoints: tuple[Endpoint, ...]


Address = tuple[str, int]


def plan(
    services: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    cidr: str | None,
    apiserver: Endpoint | None = None,
) -> dict[Address, Listener]:
    """Every listener the proxy should have, with its current endpoints."""
    by_namespace: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        by_namespace.setdefault(str(_meta(pod).get("namespace", "")), []).append(pod)
    out: dict[Address, Listener] = {}
    for svc in sorted(services, key=lambda s: (_meta(s).get("namespace"), _meta(s).get("name"))):
        ns_pods = by_namespace.get(str(_meta(svc).get("namespace", "")), [])
        for sp in service_ports(svc, cidr):
            address = (sp.cluster_ip, sp.port)
            if address not in out:  # the apiserver never allocates one twice
                out[address] = Listener(sp.key, endpoints(svc, sp, ns_pods, apiserver))
    return out


@dataclass(frozen=True)
class Changes:
    open: tuple[Address, ...]
    close: tuple[Address, ...]


def diff(current: Iterable[Address], desired: Iterable[Address]) -> Changes:
    have, want = set(current), set(desired)
    return Changes(tuple(sorted(want - have)), tuple(sorted(have - want)))


class RoundRobin:
    """Per Service port, each new connection starts at the next endpoint; the rest of the
    rotation is the order in which to retry when an endpoint refuses."""

    def __init__(self) -> None:
        self._next: dict[PortKey, int] = {}

    def order(self, key: PortKey, eps: Sequence[Endpoint]) -> list[Endpoint]:
        if not eps:
            return []
        start = self._next.get(key, 0) % len(eps)
        self._next[key] = start + 1
        return list(itertools.islice(itertools.cycle(eps), start, start + len(eps)))

    def forget(self, keep: Iterable[PortKey]) -> None:
        keep = set(keep)
        for key in [k for k in self._next if k not in keep]:
            del self._next[key]


# -- environment variables ------------------------------------------------------------------

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def env_prefix(service_name: str) -> str:
    return _NOT_NAME.sub("_", service_name.upper().replace("-", "_"))


def service_env(
    services: Iterable[Mapping[str, Any]], namespace: str, enable_service_links: bool
) -> dict[str, str]:
    """The variables the kubelet sets for the Services of the pod's namespace that have a
    ClusterIP, when ``enableServiceLinks`` (default true): ``<NAME>_SERVICE_HOST``,
    ``_SERVICE_PORT``, ``_SERVICE_PORT_<PORT NAME>`` and the Docker-link style
    ``<NAME>_PORT``, ``<NAME>_PORT_<port>_TCP[_PROTO|_PORT|_ADDR]``.

    The apiserver's ``KUBERNETES_SERVICE_*`` are not made here: the agent gives every pod
    the apiserver's own address for them (see worker.py), which works without the proxy."""
    if not enable_service_links:
        return {}
    env: dict[str, str] = {}
    chosen = [
        s for s in services if _meta(s).get("namespace") == namespace and cluster_ip(s) is not None
    ]
    for svc in sorted(chosen, key=lambda s: str(_meta(s).get("name", ""))):
        env.update(_one_service_env(svc))
    return env


def _one_service_env(service: Mapping[str, Any]) -> dict[str, str]:
    prefix = env_prefix(str(_meta(service).get("name", "")))
    ip = cluster_ip(service) or ""
    ports = _spec(service).get("ports") or []
    env = {f"{prefix}_SERVICE_HOST": ip}
    if not ports:
        return env
    env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
    for p in ports:
        if p.get("name"):
            env[f"{prefix}_SERVICE_PORT_{env_prefix(p['name'])}"] = str(p["port"])
    first = ports[0]
    env[f"{prefix}_PORT"] = f"{(first.get('protocol') or 'TCP').lower()}://{ip}:{first['port']}"
    for p in ports:
        proto = (p.get("protocol") or "TCP").upper()
        base = f"{prefix}_PORT_{p['port']}_{proto}"
        env[base] = f"{proto.lower()}://{ip}:{p['port']}"
        env[f"{base}_PROTO"] = proto.lower()
        env[f"{base}_PORT"] = str(p["port"])
        env[f"{base}_ADDR"] = ip
    return env

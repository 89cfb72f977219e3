"""Where the apiserver is and how pods authenticate to it.

The agent's kubeconfig gives the server URL and CA. Each pod gets a token of its own
ServiceAccount from the TokenRequest API (bound to the pod, so it dies with it) and a
kubeconfig that uses it through ``tokenFile``: client-go re-reads that file, so the
agent's periodic refresh reaches long-running processes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


@dataclass(frozen=True)
class ApiEndpoint:
    server: str
    ca_data: bytes | None
    insecure: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.server)
        return parts.port or (443 if parts.scheme == "https" else 80)


def _named(items: list[Mapping[str, Any]], name: str, what: str) -> Mapping[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def endpoint_from_kubeconfig(path: Path) -> ApiEndpoint:
    config = yaml.safe_load(path.read_text())
    contexts = config.get("contexts") or []
    current = config.get("current-context") or (contexts[0]["name"] if contexts else "")
    context = _named(contexts, current, "context")["context"]
    cluster = _named(config.get("clusters") or [], context["cluster"], "cluster")["cluster"]
    ca: bytes | None = None
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif cluster.get("certificate-authority"):
        ca_path = Path(cluster["certificate-authority"])
        if not ca_path.is_absolute():
            ca_path = path.parent / ca_path
        ca = ca_path.read_bytes()
    return ApiEndpoint(str(cluster["server"]), ca, bool(cluster.get("insecure-skip-tls-verify")))


def pod_kubeconfig(
    endpoint: ApiEndpoint,
    ca_path: Path | None,
    token_path: Path,
    namespace: str,
    service_account: str,
) -> str:
    cluster: dict[str, Any] = {"server": endpoint.server}
    if ca_path is not None:
        cluster["certificate-authority"] = str(ca_path)
    if endpoint.insecure:
        cluster["insecure-skip-tls-verify"] = True
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": user, "user": {"tokenFile": str(token_path)}}],
        "contexts": [
            {"name": "pod", "context": {"cluster": "local", "user": user, "namespace": namespace}}
        ],
        "current-context": "pod",
    }
    return yaml.safe_dump(config, sort_keys=False)


def token_request_body(pod: Mapping[str, Any], audience: str, expiration: int) -> dict[str, Any]:
    metadata = pod.get("metadata") or {}
    spec: dict[str, Any] = {
        "expirationSeconds": max(600, expiration),
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
        },
    }
    if audience:
        spec["audiences"] = [audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def wants_token(pod: Mapping[str, Any]) -> bool:
    """Credentials unless the pod opts out: automountServiceAccountToken false on the pod,
    or on the ServiceAccount (then admission injects no kube-api-access volume)."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return False
    if spec.get("automountServiceAccountToken") is True:
        return True
    return any(
        src.get("serviceAccountToken") is not None
        for v in spec.get("volumes") or []
        for src in (v.get("projected") or {}).get("sources") or []
    )

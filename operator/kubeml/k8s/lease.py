"""Reading and writing the operator's Lease (coordination.k8s.io/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..driver.election import LeaseView
from ..schedules import parse_time
from . import objects

API_VERSION = "coordination.k8s.io/v1"


def read(api: ApiClient, namespace: str, name: str) -> tuple[LeaseView, dict[str, Any] | None]:
    raw = objects.get(api, API_VERSION, "Lease", namespace, name)
    if raw is None:
        return LeaseView(exists=False), None
    spec = raw.get("spec") or {}
    view = LeaseView(
        exists=True,
        holder=str(spec.get("holderIdentity") or ""),
        renewed=_time(spec.get("renewTime")),
        duration=int(spec.get("leaseDurationSeconds") or 15),
        transitions=int(spec.get("leaseTransitions") or 0),
        acquired=_time(spec.get("acquireTime")),
    )
    return view, raw


def write(
    api: ApiClient, namespace: str, name: str, spec: dict[str, Any], raw: dict[str, Any] | None
) -> bool:
    """Create or update the Lease conditionally; False when someone else wrote first."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    body = {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}
    try:
        if raw is None:
            objects.create(api, body)
        else:
            meta["resourceVersion"] = raw["metadata"]["resourceVersion"]
            objects.replace(api, body)
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def _time(value: Any) -> datetime | None:
    return parse_time(str(value)) if value else None

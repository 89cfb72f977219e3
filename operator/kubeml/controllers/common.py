"""What the controllers share: the kinds they read, and reading a Job's result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..driver.world import World
from ..labels import COMPONENT, MANAGED_BY, MANAGER
from ..reconcile.results import ResultRead
from ..storage import BucketNotFound, KeyNotFound, StorageError

KUBEML = "kubeml.io/v1alpha1"
JOBS = ("batch/v1", "Job")
APPS = ("apps/v1", "Deployment")
PODS = ("v1", "Pod")
SERVICES = ("v1", "Service")
HPAS = ("autoscaling/v2", "HorizontalPodAutoscaler")
INGRESSES = ("networking.k8s.io/v1", "Ingress")
HTTPROUTES = ("gateway.networking.k8s.io/v1", "HTTPRoute")
# Server-side label selectors: the operator watches only the children it made.
OURS = f"{MANAGED_BY}={MANAGER}"
SERVERS = f"{OURS},{COMPONENT}=server"


def read_result(world: World, key: str) -> ResultRead:
    """A finished Job's result manifest. Results never change once written, so one
    that was read is kept (in memory) until its object has recorded it."""
    memo = world.memory("results")
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    store = world.store_for(world.settings.bucket)
    uri = store.uri(key)
    try:
        doc = store.get_json(key)
    except BucketNotFound as err:
        # Not proof that the result is absent: the bucket may be restored.
        return ResultRead(uri, error=str(err))
    except KeyNotFound:
        return ResultRead(uri, absent=True)
    except StorageError as err:
        return ResultRead(uri, error=str(err))
    if not isinstance(doc, dict):
        doc = {"ok": False, "reason": "ResultInvalid", "message": f"{uri} is not a JSON object"}
    read = ResultRead(uri, doc=doc)
    if len(memo) > 1000:
        memo.clear()
    memo[key] = read
    return read


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def deleting(obj: Mapping[str, Any] | None) -> bool:
    return obj is not None and bool(obj["metadata"].get("deletionTimestamp"))

"""Kubernetes Events about our objects, posted through the core v1 API.

An Event's name is derived from what it reports (the object's uid and the
resourceVersion the decision was made from, the reason and the message), so a
reconcile that is retried after posting it, or replayed after a crash from the
same observation, posts nothing twice: the second create is a 409.
Events are best effort: a failed post is logged, never raised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..conditions import now_rfc3339
from . import objects

log = logging.getLogger("kubeml")
COMPONENT = "kubeml-operator"
MESSAGE_LIMIT = 1024


def event_name(obj: Mapping[str, Any], reason: str, message: str) -> str:
    meta = obj["metadata"]
    seed = "|".join(
        (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")), reason, message)
    )
    return f"{meta['name'][:200]}.{hashlib.sha256(seed.encode()).hexdigest()[:16]}"


def event_body(
    obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    meta = obj["metadata"]
    message = message[:MESSAGE_LIMIT]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(obj, reason, message), "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def post(api: ApiClient, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    body = event_body(obj, type_, reason, message, now_rfc3339())
    try:
        objects.request(api, "POST", f"/api/v1/namespaces/{ns}/events", body=body)
    except ApiException as err:
        if err.status != 409:  # 409: this very event was posted before
            log.warning("event %s on %s/%s not posted: %s", reason, ns, name, err.reason)

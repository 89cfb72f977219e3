"""Kubernetes Events about our objects, posted through the core v1 API.

kopf.event() needs kopf's posting context, which tasks outside its handlers
(the resync loop) do not have; posting directly works from anywhere.
Events are best effort: a failed post is logged, never raised.
"""

from __future__ import annotations

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


def event_body(
    obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
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
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def post(api: ApiClient, obj: Mapping[str, Any], events: list[tuple[str, str, str]]) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    for type_, reason, message in events:
        body = event_body(obj, type_, reason, message, now_rfc3339())
        try:
            objects.request(api, "POST", f"/api/v1/namespaces/{ns}/events", body=body)
        except ApiException as err:
            log.warning("event %s on %s/%s not posted: %s", reason, ns, name, err.reason)

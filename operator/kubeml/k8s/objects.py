"""Generic reads and writes: server-side apply, status patches, deletes.

Objects are plain dicts as on the wire; paths are derived from apiVersion and
kind so one code path serves Jobs, Deployments, Services and our own kinds.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..labels import FIELD_MANAGER

# kind -> plural, for the kinds the operator writes.
PLURALS = {
    "Job": "jobs",
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "Dataset": "datasets",
    "TrainingRun": "trainingruns",
    "ModelVersion": "modelversions",
    "ConfigMap": "configmaps",
    "Event": "events",
    "Pod": "pods",
}


def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{out}/{name}" if name else out


def request(
    api: ApiClient,
    method: str,
    url: str,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str | None = None,
) -> Any:
    """One REST call returning the decoded JSON body (raises ApiException)."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    elif body is not None:
        headers["Content-Type"] = "application/json"
    return api.call_api(
        url,
        method,
        query_params=query or [],
        header_params=headers,
        body=body,
        response_types_map={200: "object", 201: "object", 202: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _preload_content=True,
    )


_call = request


def get(
    api: ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = _call(api, "GET", path(api_version, kind, namespace, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return result


def list_(
    api: ApiClient, api_version: str, kind: str, namespace: str, selector: str
) -> list[dict[str, Any]]:
    result = _call(
        api, "GET", path(api_version, kind, namespace), query=[("labelSelector", selector)]
    )
    items: list[dict[str, Any]] = result.get("items") or []
    return items


def apply(api: ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply: create or converge, owning exactly the fields we set."""
    meta = obj["metadata"]
    url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    result: dict[str, Any] = _call(
        api,
        "PATCH",
        url,
        body=obj,
        content_type="application/apply-patch+yaml",
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
    )
    return result


def patch_status(api: ApiClient, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Replace our status fields with a merge patch on the status subresource.

    Fields that disappeared from the new status are sent as null so they are
    removed rather than left stale.
    """
    old = obj.get("status") or {}
    patch = {**{k: None for k in old if k not in status}, **status}
    meta = obj["metadata"]
    url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]) + "/status"
    result: dict[str, Any] = _call(
        api, "PATCH", url, body={"status": patch}, content_type="application/merge-patch+json"
    )
    return result


def delete(api: ApiClient, api_version: str, kind: str, namespace: str, name: str) -> None:
    try:
        _call(
            api,
            "DELETE",
            path(api_version, kind, namespace, name),
            body={"propagationPolicy": "Background"},
        )
    except ApiException as err:
        if err.status != 404:
            raise


def create(api: ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Create, failing with 409 if the name is taken (used to claim version numbers)."""
    meta = obj["metadata"]
    result: dict[str, Any] = _call(
        api, "POST", path(obj["apiVersion"], obj["kind"], meta["namespace"]), body=obj
    )
    return result


def merge_patch(api: ApiClient, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    result: dict[str, Any] = _call(
        api, "PATCH", url, body=patch, content_type="application/merge-patch+json"
    )
    return result

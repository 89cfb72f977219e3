"""Generic reads and writes: server-side apply, conditional patches, status, deletes.

Objects are plain dicts as on the wire; paths are derived from apiVersion and
kind so one code path serves Jobs, Deployments, Services and our own kinds.
Every request is counted in ``kubeml_operator_api_requests_total``.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .. import metrics
from ..labels import FIELD_MANAGER

# kind -> plural, for the kinds the operator reads or writes.
PLURALS = {
    "Job": "jobs",
    "Deployment": "deployments",
    "Service": "services",
    "Ingress": "ingresses",
    "HTTPRoute": "httproutes",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "Dataset": "datasets",
    "TrainingRun": "trainingruns",
    "ModelVersion": "modelversions",
    "ConfigMap": "configmaps",
    "Event": "events",
    "Pod": "pods",
    "Namespace": "namespaces",
    "Lease": "leases",
}


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = (
        f"{base}/namespaces/{namespace}/{PLURALS[kind]}" if namespace else f"{base}/{PLURALS[kind]}"
    )
    return f"{out}/{name}" if name else out


def path_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])


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
    code = "error"
    try:
        result = api.call_api(
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
        code = "2xx"
        return result
    except ApiException as err:
        code = str(err.status or "error")
        raise
    finally:
        metrics.API_REQUESTS.labels(method, _resource(url), code).inc()


def _resource(url: str) -> str:
    """The plural (and subresource) a URL names: bounded label values for metrics."""
    parts = [p for p in url.split("?")[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        parts = parts[i + 2 :] if len(parts) > i + 2 else ["namespaces"]
    else:
        parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not parts:
        return "discovery"
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


def get(
    api: ApiClient, api_version: str, kind: str, namespace: str | None, name: str
) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = request(api, "GET", path(api_version, kind, namespace, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return result


def list_(
    api: ApiClient, api_version: str, kind: str, namespace: str | None, selector: str = ""
) -> list[dict[str, Any]]:
    return list_with_version(api, api_version, kind, namespace, selector)[0]


def list_with_version(
    api: ApiClient, api_version: str, kind: str, namespace: str | None, selector: str = ""
) -> tuple[list[dict[str, Any]], str]:
    """Items (with apiVersion and kind filled in, as watch events carry them) and the
    list's resourceVersion."""
    query = [("labelSelector", selector)] if selector else []
    result = request(api, "GET", path(api_version, kind, namespace), query=query)
    items: list[dict[str, Any]] = result.get("items") or []
    for item in items:
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items, str((result.get("metadata") or {}).get("resourceVersion") or "")


def apply(api: ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply: create or converge, owning exactly the fields we set."""
    result: dict[str, Any] = request(
        api,
        "PATCH",
        path_of(obj),
        body=obj,
        content_type="application/apply-patch+yaml",
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
    )
    return result


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch replacing ``old`` status fields by ``new`` ones; fields that
    disappeared are sent as null so they are removed rather than left stale, at any
    depth (a merge patch merges nested objects: status.rollout.stepStartTime dropped
    from a new status.rollout would otherwise stay). Lists are replaced whole."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        before = old.get(k)
        if isinstance(v, dict) and isinstance(before, dict):
            out[k] = status_patch(before, v)
        else:
            out[k] = v
    return out


def patch_status(
    api: ApiClient,
    obj: dict[str, Any],
    status: dict[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Replace our status fields, conditional on ``resource_version`` when given."""
    body: dict[str, Any] = {"status": status_patch(obj.get("status") or {}, status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    result: dict[str, Any] = request(
        api,
        "PATCH",
        path_of(obj) + "/status",
        body=body,
        content_type="application/merge-patch+json",
    )
    return result


def merge_patch(
    api: ApiClient,
    obj: dict[str, Any],
    patch: dict[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """A JSON merge patch; with ``resource_version`` it fails with 409 if the object
    changed since (optimistic concurrency, as the API conventions describe)."""
    body = dict(patch)
    if resource_version:
        body["metadata"] = {**(patch.get("metadata") or {}), "resourceVersion": resource_version}
    result: dict[str, Any] = request(
        api, "PATCH", path_of(obj), body=body, content_type="application/merge-patch+json"
    )
    return result


def delete(api: ApiClient, api_version: str, kind: str, namespace: str, name: str) -> None:
    try:
        request(
            api,
            "DELETE",
            path(api_version, kind, namespace, name),
            body={"propagationPolicy": "Background"},
        )
    except ApiException as err:
        if err.status != 404:
            raise


def create(api: ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Create, failing with 409 if the name is taken."""
    meta = obj["metadata"]
    result: dict[str, Any] = request(
        api, "POST", path(obj["apiVersion"], obj["kind"], meta["namespace"]), body=obj
    )
    return result


def replace(api: ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """PUT the whole object; its metadata.resourceVersion makes the write conditional."""
    result: dict[str, Any] = request(api, "PUT", path_of(obj), body=obj)
    return result

"""Objects the cluster needs once the apiserver answers: the S3 Secret/ConfigMap, the CRDs.

Everything goes through server-side apply, so re-running ``up`` on a live or restarted
cluster converges instead of failing on "already exists".
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubeml_local.binaries import repo_root
from kubeml_local.config import S3_OBJECT_NAME, SYSTEM_NAMESPACE
from kubeml_local.s3 import S3Credentials

FIELD_MANAGER = "kubeml-local"
CRDS_DIR_ENV = "KUBEML_CRDS_DIR"


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def apply(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of one object at its REST path (JSON is valid apply YAML)."""
    result: dict[str, Any] = api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return result


def default_service_account_exists(api: client.ApiClient) -> bool:
    """The serviceaccount controller made `default` in `default`: the controller manager
    is up, and pods (which the ServiceAccount admission plugin checks) can be created."""
    client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    return True


def apply_s3_objects(api: client.ApiClient, creds: S3Credentials) -> None:
    """The S3 Secret and ConfigMap in the system namespace (the chart's operator reads
    them there), and the Secret in ``default``, so that namespace runs workloads as is."""
    apply_workload_namespace(api, SYSTEM_NAMESPACE, creds, restricted=True)
    apply(
        api,
        f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/configmaps/{S3_OBJECT_NAME}",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _s3_meta(SYSTEM_NAMESPACE),
            "data": {
                "AWS_ENDPOINT_URL": creds.endpoint,
                "AWS_REGION": creds.region,
                "KUBEML_BUCKET": creds.bucket,
            },
        },
    )
    apply_workload_namespace(api, "default", creds, restricted=False)


def apply_workload_namespace(
    api: client.ApiClient, name: str, creds: S3Credentials, *, restricted: bool
) -> None:
    """A namespace ready for KubeML workloads: it exists and holds the S3 Secret that the
    pods the operator creates reference (the operator reads no Secrets, so it cannot copy
    one there). Restricted: Pod Security "restricted" is enforced, as the chart's pods and
    every pod the operator creates pass it."""
    meta: dict[str, Any] = {"name": name}
    if restricted:
        meta["labels"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    apply(
        api,
        f"/api/v1/namespaces/{name}",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": meta},
    )
    apply(
        api,
        f"/api/v1/namespaces/{name}/secrets/{S3_OBJECT_NAME}",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _s3_meta(name),
            "type": "Opaque",
            "stringData": {
                "AWS_ACCESS_KEY_ID": creds.access_key,
                "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            },
        },
    )


def _s3_meta(namespace: str) -> dict[str, Any]:
    return {
        "name": S3_OBJECT_NAME,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "kubeml"},
    }


def default_crds_dir() -> Path | None:
    if env := os.environ.get(CRDS_DIR_ENV):
        return Path(env)
    root = repo_root()
    return root / "crds" if root else None


def crd_documents(crds_dir: Path | None) -> Iterator[dict[str, Any]]:
    if crds_dir is None or not crds_dir.is_dir():
        return
    for path in sorted(crds_dir.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                yield doc


def api_error(err: ApiException, limit: int = 600) -> str:
    """The apiserver's own message, short: Status bodies repeat whole CEL rules."""
    try:
        message = str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        message = str(err.reason)
    return f"HTTP {err.status}: " + (message[:limit] + " ..." if len(message) > limit else message)


def apply_crds(api: client.ApiClient, crds_dir: Path | None) -> tuple[list[str], dict[str, str]]:
    """Apply every CRD; return the applied names and, per rejected CRD, the reason.

    A rejected CRD does not stop the cluster: it is the CRD author's bug to see, and the
    rest of the cluster is still useful (the CRD tests report it).
    """
    names: list[str] = []
    rejected: dict[str, str] = {}
    for doc in crd_documents(crds_dir):
        name = doc["metadata"]["name"]
        try:
            apply(api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", doc)
        except ApiException as err:
            if err.status is None or err.status >= 500:
                raise
            rejected[name] = api_error(err)
            continue
        names.append(name)
    return names, rejected


def crds_established(api: client.ApiClient, names: list[str]) -> bool:
    ext = client.ApiextensionsV1Api(api)
    for name in names:
        crd = ext.read_custom_resource_definition(name)
        conditions = (crd.status.conditions if crd.status else None) or []
        if not any(c.type == "Established" and c.status == "True" for c in conditions):
            return False
    return True


def node_ready(api: client.ApiClient, name: str, since: dt.datetime) -> bool:
    """Ready=True, posted after ``since``: on a restart the Node left in etcd still says
    Ready from the previous run, which proves nothing about the new agent."""
    node = client.CoreV1Api(api).read_node(name)
    conditions = (node.status.conditions if node.status else None) or []
    return any(
        c.type == "Ready"
        and c.status == "True"
        and c.last_heartbeat_time is not None
        and c.last_heartbeat_time >= since
        for c in conditions
    )

"""Small helpers over the Kubernetes API for tests: apply, read, wait on conditions."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from kubeml.api import KINDS
from kubeml.k8s import objects
from kubeml_local.readiness import poll
from tests.support.cases import EXAMPLES, load_yaml

PLURALS = {kind: cls.crd.plural for kind, cls in KINDS.items()}


def create(api: client.ApiClient, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    result: dict[str, Any] = objects.request(
        api,
        "POST",
        f"/apis/kubeml.io/v1alpha1/namespaces/{namespace}/{PLURALS[doc['kind']]}",
        body=doc,
        query=[("fieldValidation", "Strict")],
    )
    return result


def get(api: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    return objects.get(api, "kubeml.io/v1alpha1", kind, namespace, name)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def wait_condition(
    api: client.ApiClient,
    namespace: str,
    kind: str,
    name: str,
    type_: str,
    *,
    reasons: tuple[str, ...] = (),
    status: str | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    """Wait until condition `type_` has one of `reasons` (or the given status)."""

    def probe() -> dict[str, Any] | None:
        obj = get(api, namespace, kind, name)
        cond = condition(obj, type_)
        if cond is None:
            return None
        if reasons and cond.get("reason") not in reasons:
            return None
        if status is not None and cond.get("status") != status:
            return None
        return obj

    return poll(probe, timeout=timeout, what=f"{kind} {namespace}/{name} {type_} {reasons}")


def jobs(api: client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    return objects.list_(api, "batch/v1", "Job", namespace, selector)


def list_kind(
    api: client.ApiClient, namespace: str, kind: str, selector: str
) -> list[dict[str, Any]]:
    return objects.list_(api, "kubeml.io/v1alpha1", kind, namespace, selector)


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def new_namespace(api: client.ApiClient, name: str, labels: dict[str, str] | None = None) -> str:
    """Create a namespace and wait for its `default` ServiceAccount (pods are refused
    until the serviceaccount controller has made it)."""
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
    )
    poll(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    return name


def add_s3_secret(api: client.ApiClient, namespace: str, s3_env: dict[str, str]) -> None:
    """The S3 credentials Secret (kubeml-s3) the operator's pods reference."""
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="kubeml-s3"),
            string_data={k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
        ),
    )


def namespace_with_versions(
    api: client.ApiClient, prefix: str, s3_env: dict[str, str], runs: Iterable[dict[str, Any]]
) -> str:
    """A restricted namespace `<prefix>-<random>` with the S3 credentials Secret, the iris
    Dataset Ready, and `runs` (TrainingRuns of one model) trained one after the other:
    run n makes version n, Ready before run n+1 starts. The caller deletes it."""
    name = new_namespace(api, f"{prefix}-{uuid.uuid4().hex[:6]}", RESTRICTED)
    add_s3_secret(api, name, s3_env)
    create(api, name, load_yaml(EXAMPLES / "iris" / "dataset.yaml"))
    wait_condition(api, name, "Dataset", "iris", "Ready", status="True")
    for n, run in enumerate(runs, start=1):
        create(api, name, run)
        version = f"{run['spec']['model']}-v{n}"
        wait_condition(api, name, "ModelVersion", version, "Ready", status="True", timeout=300)
    return name

"""The invalid-manifest table replayed against the real apiserver (schema + CEL).

Each case must be rejected by admission, naming the same field pydantic names;
every example must be accepted. Requests use fieldValidation=Strict, as kubectl
does by default, so unknown fields are errors rather than silently pruned.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeml.api import KINDS
from kubeml.k8s import objects
from tests.support.cases import Case, example_files, invalid_cases, load_yaml, valid_updates

pytestmark = pytest.mark.integration
PLURALS = {kind: cls.crd.plural for kind, cls in KINDS.items()}


def _url(doc: dict[str, Any], namespace: str, name: str | None = None) -> str:
    base = f"/apis/kubeml.io/v1alpha1/namespaces/{namespace}/{PLURALS[doc['kind']]}"
    return f"{base}/{name}" if name else base


def _send(
    api: client.ApiClient, method: str, url: str, body: dict[str, Any], dry_run: bool = True
) -> Any:
    query = [("fieldValidation", "Strict")]
    if dry_run:
        query.append(("dryRun", "All"))
    return objects.request(api, method, url, body=body, query=query)


def _rejection(api: client.ApiClient, method: str, url: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        _send(api, method, url, body)
    assert err.value.status in (400, 422), err.value.body
    return str(json.loads(err.value.body).get("message", err.value.body))


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c.name)
def test_admission_rejects_the_case_naming_the_field(
    case: Case, kube_api: client.ApiClient, namespace: str
) -> None:
    if case.update:
        created = _send(kube_api, "POST", _url(case.base, namespace), case.base, dry_run=False)
        new = dict(case.manifest)
        new["metadata"] = {
            **case.manifest["metadata"],
            "resourceVersion": created["metadata"]["resourceVersion"],
        }
        message = _rejection(kube_api, "PUT", _url(new, namespace, new["metadata"]["name"]), new)
    else:
        message = _rejection(kube_api, "POST", _url(case.manifest, namespace), case.manifest)
    assert case.field in message, message


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_admission_accepts_every_example(
    path: Any, kube_api: client.ApiClient, namespace: str
) -> None:
    doc = load_yaml(path)
    _send(kube_api, "POST", _url(doc, namespace), doc)


@pytest.mark.parametrize(
    ("name", "base", "manifest"), valid_updates(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_admission_accepts_allowed_updates(
    name: str,
    base: dict[str, Any],
    manifest: dict[str, Any],
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    created = _send(kube_api, "POST", _url(base, namespace), base, dry_run=False)
    new = dict(manifest)
    new["metadata"] = {
        **manifest["metadata"],
        "resourceVersion": created["metadata"]["resourceVersion"],
    }
    _send(kube_api, "PUT", _url(new, namespace, new["metadata"]["name"]), new)

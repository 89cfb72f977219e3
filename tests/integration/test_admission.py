"""The invalid-manifest table replayed against the real apiserver (schema + CEL).

Each case must be rejected by admission, naming the same field pydantic names;
every example must be accepted. Requests use fieldValidation=Strict, as kubectl
does by default, so unknown fields are errors rather than silently pruned.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeml.api import KINDS
from kubeml.k8s import objects
from kubeml.schedules import ScheduleError, parse
from tests.support.cases import ROOT, Case, example_files, invalid_cases, load_yaml, valid_updates
from tests.support.cron import schedule

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


def _schedule_admitted(api: client.ApiClient, namespace: str, schedule: str) -> bool:
    doc = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    doc["spec"]["refresh"] = {"schedule": schedule}
    try:
        _send(api, "POST", _url(doc, namespace), doc)
    except ApiException as err:
        rejected = err
    else:
        return True
    # A rejection names the field, as for every other invalid manifest.
    assert rejected.status == 422, rejected.body
    assert "spec.refresh.schedule" in json.loads(rejected.body)["message"], rejected.body
    return False


def test_admission_accepts_exactly_the_schedules_the_scheduler_understands(
    kube_api: client.ApiClient, namespace: str
) -> None:
    """Bug: the CRD pattern anchored only one alternative each, so `@dailyfoo`,
    `61 25 * * *`, `*/0 * * * *` got in, and the scheduler then ignored them."""
    table = load_yaml(ROOT / "tests" / "cases" / "schedules.yaml")
    rng = random.Random(7)
    samples = [(s, True) for s in table["valid"] + table["never"]]
    samples += [(s, False) for s in table["invalid"]]
    samples += [schedule(rng) for _ in range(300)]
    disagreements = []
    for text, _ in samples:
        try:
            parse(text)
            understood = True
        except ScheduleError:
            understood = False
        if _schedule_admitted(kube_api, namespace, text) != understood:
            disagreements.append((text, understood))
    assert not disagreements, disagreements
    assert sum(1 for _, ok in samples if ok) > 25  # both sides are exercised

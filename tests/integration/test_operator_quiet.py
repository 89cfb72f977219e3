"""An unchanged object costs the operator no API request.

Counted twice: by the apiserver's audit log (every request our client or kopf made,
watches aside) and by the operator's own kubeml_operator_api_requests_total.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local.layout import Layout
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
IRIS = ROOT / "examples" / "iris"
OUR_CLIENTS = ("kubeml-operator", "kopf")


def settled(operator: OperatorProcess) -> tuple[float, float]:
    """Wait until the operator has nothing queued or running and its counters stand
    still between two looks; returns (reconciles, API requests) then."""
    last: list[tuple[float, float, float, float]] = []

    def probe() -> tuple[float, float] | None:
        now = (
            operator.metric("kubeml_operator_reconciles_total"),
            operator.metric("kubeml_operator_api_requests_total"),
            operator.metric("kubeml_operator_queue_depth"),
            operator.metric("kubeml_operator_reconciles_active"),
        )
        still = bool(last) and now == last[-1] and now[2] == 0 and now[3] == 0
        last.append(now)
        return (now[0], now[1]) if still else None

    return poll(probe, timeout=120, what="the operator settles", interval=1.0)


def audited(log: Path, offset: int) -> list[dict[str, Any]]:
    """Requests by our clients after ``offset`` in the audit log (watches aside)."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out = []
    for line in lines:
        entry = json.loads(line)
        agent = str(entry.get("userAgent", ""))
        if agent.startswith(OUR_CLIENTS) and entry.get("verb") != "watch":
            out.append(entry)
    return out


def test_reconciling_unchanged_objects_makes_no_api_request(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    state_layout: Layout,
) -> None:
    ns = ml_namespace
    for f in ("dataset.yaml", "trainingrun.yaml", "deployment.yaml"):
        kube.create(kube_api, ns, load_yaml(IRIS / f))
    kube.wait_condition(kube_api, ns, "Deployment", "iris", "Ready", status="True", timeout=600)
    reconciles, requests = settled(operator)
    offset = state_layout.audit_log.stat().st_size

    # A change that is nobody's business but the user's: a label on every object.
    api = client.CustomObjectsApi(kube_api)
    for plural, name in (
        ("datasets", "iris"),
        ("trainingruns", "iris-rf"),
        ("modelversions", "iris-classifier-v1"),
        ("deployments", "iris"),
    ):
        patch = {"metadata": {"labels": {"touched": "yes"}}}
        api.patch_namespaced_custom_object("kubeml.io", "v1alpha1", ns, plural, name, patch)
    poll(
        lambda: operator.metric("kubeml_operator_reconciles_total") >= reconciles + 4,
        timeout=60,
        what="the touched objects reconciled",
    )
    after, after_requests = settled(operator)
    assert after >= reconciles + 4
    assert after_requests == requests, "the operator counted API requests of its own"
    made = audited(state_layout.audit_log, offset)
    assert made == [], [(e["verb"], e["requestURI"], e["userAgent"]) for e in made]

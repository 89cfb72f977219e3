"""Shadow traffic on the real control plane: a shadow version gets exactly its share
of mirrored requests, clients through the Service see only stable's answers, and the
agreement the stable servers count equals a hand computation from both artifacts."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from kubeml_local.readiness import poll
from tests.integration.test_serving import (
    ClientLoop,
    _deployment,
    _run,
    model_of,
    ready_pods,
    service_url,
)
from tests.support import kube
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
PERCENT = 30
ROWS = 40


@pytest.fixture(scope="module")
def two_versions(
    operator: OperatorProcess, kube_api: client.ApiClient, s3_env: dict[str, str]
) -> Iterator[str]:
    """A namespace with two differently trained versions of iris-classifier."""
    # Another family: linear boundaries part from stable's trees away from the data.
    challenger = _run("iris-b", "iris-classifier")
    challenger["spec"]["estimator"] = {"name": "logistic-regression", "params": {"max_iter": 1000}}
    ns = kube.namespace_with_versions(
        kube_api,
        "t-shadow",
        s3_env,
        [_run("iris-a", "iris-classifier", n_estimators=20, max_depth=2), challenger],
    )
    yield ns
    client.CoreV1Api(kube_api).delete_namespace(ns, propagation_policy="Background")


def _metrics(pod: client.V1Pod) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def _sum(pods: list[client.V1Pod], name: str, **labels: str) -> float:
    total = 0.0
    for pod in pods:
        for (metric, lbls), value in _metrics(pod).items():
            if metric == name and frozenset(labels.items()) <= lbls:
                total += value
    return total


# Known inputs over the whole feature range, where the two models part ways.
X = np.random.default_rng(7).uniform(0.0, 8.0, size=(ROWS, 4)).round(2)


def _body() -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input-0", "shape": [ROWS, 4], "datatype": "FP64", "data": X.ravel().tolist()}
        ]
    }


def _agreeing_rows(api: client.ApiClient, ns: str, s3_client: Any) -> int:
    """By hand: the rows of X on which both artifacts predict the same label."""
    v1, mv = model_of(api, ns, "iris-classifier-v1", s3_client)
    v2, _ = model_of(api, ns, "iris-classifier-v2", s3_client)
    frame = pd.DataFrame(X, columns=[c["name"] for c in mv["spec"]["signature"]["inputs"]])
    return int(np.count_nonzero(np.asarray(v1.predict(frame)) == np.asarray(v2.predict(frame))))


def test_a_shadow_gets_its_share_clients_see_only_stable_and_agreement_is_exact(
    kube_api: client.ApiClient, two_versions: str, s3_client: Any
) -> None:
    ns = two_versions
    doc = _deployment(
        "shadowed", alias=None, version=1, replicas=1, shadow={"version": 2, "percent": PERCENT}
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, ns, doc)

    def mirroring() -> dict[str, Any] | None:
        dep = kube.get(kube_api, ns, "Deployment", "shadowed") or {}
        shadow = (dep.get("status") or {}).get("shadow") or {}
        ready = (kube.condition(dep, "Ready") or {}).get("status") == "True"
        return dep if ready and shadow.get("percent") == PERCENT else None

    dep = poll(mirroring, timeout=300, what=f"shadow at {PERCENT}%", interval=1)
    assert dep["status"]["shadow"]["version"] == 2
    assert dep["status"]["shadow"]["desiredPercent"] == PERCENT
    assert dep["status"]["shadow"]["readyReplicas"] >= 1
    assert "canary" not in dep["status"]

    def settled_stable() -> bool | None:
        # Every request of the loop reaches the one stable server that mirrors: none is
        # left from before (its counters would split the sequence).
        sel = "kubeml.io/deployment=shadowed,kubeml.io/track=stable"
        pods = client.CoreV1Api(kube_api).list_namespaced_pod(ns, label_selector=sel).items
        return (len(pods) == 1 and len(ready_pods(kube_api, ns, "shadowed", "stable")) == 1) or None

    poll(settled_stable, timeout=120, what="one stable server", interval=0.5)
    body = _body()
    url = f"{service_url(kube_api, ns, 'shadowed')}/v2/models/iris-classifier/infer"
    with ClientLoop(url, body) as loop:
        loop.share_over(300, "1")
    sent = len(loop.versions) + len(loop.failures)
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) == {"1"}, "a client saw an answer other than stable's"

    # By hand: both artifacts predict the same rows; a mirrored request agrees on
    # the rows where they are equal.
    agree = _agreeing_rows(kube_api, ns, s3_client)
    assert 0 < agree < ROWS, agree

    stable = ready_pods(kube_api, ns, "shadowed", "stable")
    shadows = ready_pods(kube_api, ns, "shadowed", "shadow")
    assert len(stable) == 1 and shadows
    answered_here = _sum(stable, "kubeml_requests_total", version="1")
    assert answered_here == sent
    # The split is exact: of n requests, floor(n * percent / 100) are mirrored.
    want = sent * PERCENT // 100
    target = {"version": "1", "target_version": "2"}

    def settled() -> bool | None:
        answered = _sum(stable, "kubeml_shadow_requests_total", outcome="answered", **target)
        return answered == want or None

    poll(settled, timeout=60, what=f"{want} mirrored answers", interval=0.5)
    assert _sum(stable, "kubeml_shadow_requests_total", **target) == want
    assert _sum(shadows, "kubeml_requests_total", version="2") == want
    compared = _sum(stable, "kubeml_shadow_rows_compared_total", **target)
    agreed = _sum(stable, "kubeml_shadow_rows_agreed_total", **target)
    print(
        f"shadow: {want} of {sent} requests mirrored ({100 * want / sent:.1f}%, want "
        f"{PERCENT}), all {sent} answered by v1, 0 failed; agreement {agreed:.0f}/"
        f"{compared:.0f} = {agreed / compared:.3f}, by hand {agree}/{ROWS} = {agree / ROWS:.3f}"
    )
    assert abs(100 * want / sent - PERCENT) <= 3
    assert compared == want * ROWS
    assert agreed == want * agree

    def reported() -> dict[str, Any] | None:
        dep = kube.get(kube_api, ns, "Deployment", "shadowed") or {}
        shadow = (dep.get("status") or {}).get("shadow") or {}
        return shadow if shadow.get("rowsCompared") == compared else None

    # The operator reads the same counters into status (about every 30 s).
    shadow = poll(reported, timeout=120, what="agreement in status.shadow", interval=1)
    assert shadow["rowsAgreed"] == agreed
    assert shadow["agreement"] == round(agree / ROWS, 6)


def test_a_rollout_judged_on_agreement_is_rolled_back_when_the_new_version_disagrees(
    kube_api: client.ApiClient, two_versions: str, s3_client: Any
) -> None:
    ns = two_versions
    agree = _agreeing_rows(kube_api, ns, s3_client)
    doc = _deployment(
        "judged",
        alias=None,
        version=1,
        replicas=1,
        rollout={
            "steps": [{"setWeight": 10, "pause": {"duration": "60s"}}],
            "analysis": {
                "interval": "3s",
                "minRequests": 10,
                "maxLatencyP99Seconds": 5,
                "minAgreement": 0.9,
                "mirrorWeight": 50,
            },
        },
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, ns, doc)
    kube.wait_condition(kube_api, ns, "Deployment", "judged", "Ready", status="True", timeout=300)
    url = f"{service_url(kube_api, ns, 'judged')}/v2/models/iris-classifier/infer"
    with ClientLoop(url, _body()) as loop:
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "kubeml.io", "v1alpha1", ns, "deployments", "judged", {"spec": {"version": 2}}
        )

        def rolled_back() -> dict[str, Any] | None:
            dep = kube.get(kube_api, ns, "Deployment", "judged") or {}
            ro = (dep.get("status") or {}).get("rollout") or {}
            return dep if ro.get("phase") == "RolledBack" else None

        dep = poll(rolled_back, timeout=300, what="rollback on agreement", interval=0.5)

        def stable_alone() -> bool:
            d = kube.get(kube_api, ns, "Deployment", "judged") or {}
            return "canary" not in (d.get("status") or {}) and not ready_pods(
                kube_api, ns, "judged", "canary"
            )

        poll(stable_alone, timeout=120, what="v1 alone again", interval=0.5)
        after = loop.share_over(50, "1")
    ro = dep["status"]["rollout"]
    checks = {c["name"]: c for c in ro["lastAnalysis"]["checks"]}
    print(
        f"rollout judged on agreement: {ro['message']}; {len(loop.versions)} requests, "
        f"{len(loop.failures)} failed"
    )
    # The same rows in every request: agreement is the hand count's.
    assert checks["agreement"]["value"] == round(agree / ROWS, 6)
    assert checks["agreement"]["passed"] is False and checks["errorRate"]["passed"] is True
    assert f"agreement {agree / ROWS:.4g} below 0.9" in ro["message"]
    assert dep["status"]["stable"]["version"] == 1
    assert loop.failures == [], loop.failures[:10]
    assert after == 100.0

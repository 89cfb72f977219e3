"""Rollout analysis on the real control plane: the drift check read from the new
version's pods, and judgements read from a real Prometheus (healthy: the rollout
passes on Prometheus' numbers; unreachable: inconclusive, never a rollback)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client
from sklearn.datasets import load_iris

from kubeml_local import cluster
from kubeml_local.readiness import poll
from tests.integration.test_serving import ROWS, ClientLoop, _deployment, _run, service_url
from tests.support import kube
from tests.support import prometheus as prom
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess, free_port

pytestmark = pytest.mark.integration
# Requests like the training data (the whole iris set): little drift.
IRIS = {"instances": load_iris().data.tolist()}
PREDICT = "/v1/models/iris-classifier:predict"


@pytest.fixture(scope="module")
def ns(
    operator: OperatorProcess, kube_api: client.ApiClient, s3_env: dict[str, str]
) -> Iterator[str]:
    """A namespace with the iris data and two versions of iris-classifier."""
    name = kube.new_namespace(kube_api, f"t-analysis-{uuid.uuid4().hex[:6]}", kube.RESTRICTED)
    kube.add_s3_secret(kube_api, name, s3_env)
    kube.create(kube_api, name, load_yaml(ROOT / "examples" / "iris" / "dataset.yaml"))
    kube.wait_condition(kube_api, name, "Dataset", "iris", "Ready", status="True")
    kube.create(kube_api, name, _run("iris-a", "iris-classifier", n_estimators=20, max_depth=2))
    kube.create(kube_api, name, _run("iris-b", "iris-classifier", n_estimators=40))
    for v in (1, 2):
        kube.wait_condition(
            kube_api, name, "ModelVersion", f"iris-classifier-v{v}", "Ready", status="True",
            timeout=300,
        )  # fmt: skip
    yield name
    client.CoreV1Api(kube_api).delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def prometheus(
    local_cluster: cluster.Connection,
    prometheus_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ns: str,
) -> Iterator[str]:
    """A real Prometheus scraping the namespace's annotated pods the common way:
    namespace, pod, and the pod's labels by labelmap (kubeml.io/deployment becomes
    kubeml_io_deployment)."""
    conf = prom.config(prom.pod_job(local_cluster, ns, labelmap=True), interval="1s")
    with prom.running(prometheus_bin, tmp_path_factory.mktemp("prometheus"), conf) as url:
        prom.wait_ready(url)
        yield url


@contextmanager
def operator_with(operator: OperatorProcess, **env: str) -> Iterator[None]:
    """The session's operator restarted with extra settings, and restarted without
    them afterwards (one operator reconciles at a time)."""
    operator.stop()
    operator.env.update(env)
    operator.start()
    poll(operator.ready, timeout=60, what="operator ready")
    try:
        yield
    finally:
        operator.stop()
        for key in env:
            operator.env.pop(key, None)
        operator.start()
        poll(operator.ready, timeout=60, what="operator ready again")


def _served(api: client.ApiClient, ns: str, name: str, rollout: dict[str, Any]) -> None:
    doc = _deployment(name, alias=None, version=1, replicas=1, rollout=rollout)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(api, ns, doc)
    kube.wait_condition(api, ns, "Deployment", name, "Ready", status="True", timeout=300)


def _rollout(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    dep = kube.get(api, ns, "Deployment", name) or {}
    return dict((dep.get("status") or {}).get("rollout") or {})


def _to_v2(api: client.ApiClient, ns: str, name: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "kubeml.io", "v1alpha1", ns, "deployments", name, {"spec": {"version": 2}}
    )


def test_a_canary_whose_traffic_drifts_is_rolled_back_on_its_drift_psi(
    kube_api: client.ApiClient, ns: str
) -> None:
    # Read from each pod's /metrics (the session's operator has no Prometheus).
    _served(
        kube_api,
        ns,
        "drifting",
        {
            "steps": [{"setWeight": 50, "pause": {"duration": "120s"}}],
            "analysis": {
                "interval": "3s",
                "minRequests": 5,
                "maxLatencyP99Seconds": 5,
                "maxDriftPsi": 0.5,
            },
        },
    )
    rng = np.random.default_rng(0)
    shifted = (np.array(ROWS * 50) + rng.normal(3.0, 0.5, size=(200, 4))).tolist()
    url = f"{service_url(kube_api, ns, 'drifting')}{PREDICT}"
    with ClientLoop(url, {"instances": shifted}) as loop:
        poll(lambda: len(loop.versions) >= 5 or None, timeout=120, what="answers from v1")
        _to_v2(kube_api, ns, "drifting")
        rolled = poll(
            lambda: (r := _rollout(kube_api, ns, "drifting")).get("phase") == "RolledBack" and r,
            timeout=300,
            what="rollback on drift",
            interval=0.5,
        )
    checks = {c["name"]: c for c in rolled["lastAnalysis"]["checks"]}
    print(f"drifting canary: {rolled['message']}; checks {checks}")
    drift = checks["driftPsi"]
    assert drift["passed"] is False and drift["value"] > 0.5 and drift["limit"] == 0.5
    assert drift["message"].startswith("feature ")
    assert checks["errorRate"]["passed"] is True  # it answered; its inputs drifted
    assert rolled["lastAnalysis"]["source"] == "pods"
    assert "driftPsi" in rolled["message"] and "above 0.5" in rolled["message"]
    assert loop.failures == [], loop.failures[:10]


def test_a_rollout_judged_from_prometheus_passes_when_healthy(
    operator: OperatorProcess, kube_api: client.ApiClient, ns: str, prometheus: str
) -> None:
    policy = {
        "steps": [{"setWeight": 50, "pause": {"duration": "20s"}}],
        "analysis": {
            "interval": "3s",
            "minRequests": 10,
            "maxLatencyP99Seconds": 5,
            # Generous: this asserts where the numbers come from, not how fast a
            # shared machine is.
            "maxErrorRateIncrease": 0.05,
            "maxLatencyP99Ratio": 50,
            "maxDriftPsi": 2,
        },
    }
    with operator_with(operator, KUBEML_PROMETHEUS_URL=prometheus):
        _served(kube_api, ns, "judged", policy)
        url = f"{service_url(kube_api, ns, 'judged')}{PREDICT}"
        passed: list[dict[str, Any]] = []

        def done() -> bool:
            ro = _rollout(kube_api, ns, "judged")
            last = ro.get("lastAnalysis") or {}
            if last.get("result") == "Pass" and last.get("source") == "prometheus":
                passed.append(last)
            d = kube.get(kube_api, ns, "Deployment", "judged") or {}
            st = d.get("status") or {}
            return (
                ro.get("phase") == "Succeeded"
                and (st.get("stable") or {}).get("version") == 2
                and "canary" not in st
                and (kube.condition(d, "Ready") or {}).get("status") == "True"
            )

        with ClientLoop(url, IRIS) as loop:
            poll(lambda: len(loop.versions) >= 5 or None, timeout=120, what="answers from v1")
            _to_v2(kube_api, ns, "judged")
            poll(done, timeout=300, what="the rollout judged from Prometheus", interval=0.5)
            after = loop.share_over(20, "2")
        ro = _rollout(kube_api, ns, "judged")
    print(f"judged from Prometheus: {passed[-1] if passed else None}; {ro['message']}")
    assert passed, ro
    checks = {c["name"]: c for c in passed[-1]["checks"]}
    assert set(checks) == {
        "errorRate",
        "latencyP99Seconds",
        "errorRateIncrease",
        "latencyP99Ratio",
        "driftPsi",
    }
    assert all(c["passed"] is True and "value" in c for c in checks.values()), checks
    assert checks["errorRate"]["value"] == 0
    assert 0 <= checks["driftPsi"]["value"] <= 2
    assert passed[-1]["requests"] >= 10 and "message" not in passed[-1]
    assert after == 100.0
    assert loop.failures == [], loop.failures[:10]


def test_an_unreachable_prometheus_makes_judgements_inconclusive_never_a_rollback(
    operator: OperatorProcess, kube_api: client.ApiClient, ns: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with operator_with(operator, KUBEML_PROMETHEUS_URL=nowhere):
        _served(
            kube_api,
            ns,
            "blind",
            {
                "steps": [{"setWeight": 50, "pause": {"duration": "10s"}}],
                "analysis": {"interval": "2s", "minRequests": 5},
            },
        )
        url = f"{service_url(kube_api, ns, 'blind')}{PREDICT}"
        with ClientLoop(url, {"instances": ROWS}) as loop:
            _to_v2(kube_api, ns, "blind")

            def last_time() -> str | None:
                return (_rollout(kube_api, ns, "blind").get("lastAnalysis") or {}).get("time")

            first = poll(last_time, timeout=300, what="a judgement", interval=0.5)
            # A later judgement: still inconclusive, still no rollback.
            poll(lambda: last_time() not in (None, first), timeout=60, what="another judgement")
            ro = _rollout(kube_api, ns, "blind")
            dep = kube.get(kube_api, ns, "Deployment", "blind") or {}
        client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
            "kubeml.io", "v1alpha1", ns, "deployments", "blind"
        )
    last = ro["lastAnalysis"]
    print(f"Prometheus unreachable: {ro['message']}")
    assert last["result"] == "Inconclusive" and last["source"] == "prometheus"
    assert last["message"].startswith(f"Prometheus at {nowhere}: ")
    assert "refused" in last["message"].lower(), last["message"]
    assert f"inconclusive: Prometheus at {nowhere}" in ro["message"]
    assert ro["phase"] == "Progressing" and ro["failures"] == 0 and not ro["stepPassed"]
    assert (kube.condition(dep, "Degraded") or {}).get("status") != "True"
    assert loop.failures == [], loop.failures[:10]

"""The continuous-improvement loop on the real control plane and S3.

Drift in the server's own traffic asks the Dataset for new data; the new data
trains a version that must beat the champion on the same test split; it is
promoted and rolls out progressively in the default steps (the Deployment has no
spec.rollout: what a user's manifest gets), with clients going through the Service
all along; a promoted version that cannot serve is rolled back.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kubernetes import client
from sklearn.datasets import load_iris

from kubeml.schedules import parse_time
from kubeml.storage import parse_uri
from kubeml_local.readiness import poll
from tests.integration.test_serving import ClientLoop, post, ready_pods, service_url
from tests.support import kube
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
MODEL = "loop"
SHIFT = 4.0


def iris_csv(shift: float) -> tuple[bytes, pd.DataFrame]:
    frame = load_iris(as_frame=True).frame
    features = frame.columns[:-1]
    frame[features] = frame[features] + shift
    return frame.to_csv(index=False).encode(), frame


def manifests(ns: str) -> list[dict[str, Any]]:
    api = "kubeml.io/v1alpha1"
    return [
        {
            "apiVersion": api,
            "kind": "Dataset",
            "metadata": {"name": "flowers"},
            "spec": {
                "source": {"s3": {"key": f"{ns}/incoming/flowers.csv"}},
                "target": "target",
                "split": {"validation": 0.2, "test": 0.3, "seed": 1, "stratify": True},
            },
        },
        {
            "apiVersion": api,
            "kind": "TrainingRun",
            "metadata": {"name": "flowers-train"},
            "spec": {
                "datasetRef": {"name": "flowers"},
                "model": MODEL,
                "estimator": {
                    "name": "decision-tree-classifier",
                    "params": {"random_state": 0, "max_depth": 3},
                },
                "gates": {"thresholds": [{"metric": "accuracy", "min": 0.8}]},
            },
        },
    ]


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "flowers"},
        "spec": {
            "model": MODEL,
            "alias": "champion",
            "replicas": 1,
            "monitoring": {"alerts": {"driftPsi": 0.5}},
            "retraining": {
                "template": {"name": "flowers-train"},
                "promoteAlias": "champion",
                "triggers": {"drift": True},
                "cooldownSeconds": 3600,
            },
        },
    }


def retraining_status(api: client.ApiClient, ns: str) -> dict[str, Any]:
    dep = kube.get(api, ns, "Deployment", "flowers")
    return dict(((dep or {}).get("status") or {}).get("retraining") or {})


def serving(api: client.ApiClient, ns: str, version: int) -> dict[str, Any] | None:
    dep = kube.get(api, ns, "Deployment", "flowers")
    st = (dep or {}).get("status") or {}
    ready = kube.condition(dep, "Ready") or {}
    ok = (st.get("stable") or {}).get("version") == version and ready.get("status") == "True"
    return dep if ok and not st.get("previous") else None


def at_step(api: client.ApiClient, ns: str, step: int, weight: int) -> bool | None:
    """The rollout is at ``step`` and the stable servers forward its weight."""
    st = (kube.get(api, ns, "Deployment", "flowers") or {}).get("status") or {}
    ro = st.get("rollout") or {}
    return (
        ro.get("phase") == "Progressing"
        and ro.get("step") == step
        and (st.get("canary") or {}).get("trafficPercent") == weight
    ) or None


def test_drift_retrains_on_new_data_promotes_and_rolls_back_what_cannot_serve(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    ns, bucket = ml_namespace, s3_env["KUBEML_BUCKET"]
    key = f"{ns}/incoming/flowers.csv"
    original, _ = iris_csv(0.0)
    s3_client.put_object(Bucket=bucket, Key=key, Body=original)
    for doc in manifests(ns):
        kube.create(kube_api, ns, doc)
    kube.wait_condition(
        kube_api, ns, "ModelVersion", f"{MODEL}-v1", "Ready", status="True", timeout=300
    )
    first_version = kube.get(kube_api, ns, "Dataset", "flowers")["status"]["version"]
    kube.create(kube_api, ns, deployment())
    poll(lambda: serving(kube_api, ns, 1), timeout=300, what="flowers serving v1")
    quiet = poll(
        lambda: retraining_status(kube_api, ns).get("message"), timeout=60, what="retraining status"
    )
    assert "no new data in dataset flowers" in quiet
    assert not kube.list_kind(kube_api, ns, "TrainingRun", "kubeml.io/retraining-for=flowers")

    # The world moves: new measurements land in the source, and traffic shows it.
    shifted, frame = iris_csv(SHIFT)
    s3_client.put_object(Bucket=bucket, Key=key, Body=shifted)
    pod = ready_pods(kube_api, ns, "flowers")[0]
    rows = frame[frame.columns[:-1]].to_numpy()[np.random.default_rng(0).permutation(150)]
    base = f"http://{pod.status.pod_ip}:8080"
    code, answer = post(f"{base}/v1/models/{MODEL}:predict", {"instances": rows.tolist()})
    assert code == 200, answer

    # Drift asks the Dataset for new data; the new version trains a retraining run.
    triggered = poll(
        lambda: retraining_status(kube_api, ns).get("lastTrigger"),
        timeout=120,
        what="a retraining trigger",
    )
    assert triggered["reason"] == "Drift", triggered
    assert "PSI" in triggered["message"] and "> 0.5" in triggered["message"]
    ds = kube.get(kube_api, ns, "Dataset", "flowers")
    assert "kubeml.io/refresh-requested" in ds["metadata"]["annotations"]
    ds = poll(
        lambda: (
            d
            if (d := kube.get(kube_api, ns, "Dataset", "flowers"))["status"].get("version")
            not in (None, first_version)
            else None
        ),
        timeout=180,
        what="a new dataset version",
    )
    new_version = ds["status"]["version"]
    runs = poll(
        lambda: (
            kube.list_kind(kube_api, ns, "TrainingRun", "kubeml.io/retraining-for=flowers") or None
        ),
        timeout=120,
        what="a retraining run",
    )
    assert len(runs) == 1
    run = runs[0]
    assert run["spec"]["datasetRef"] == {"name": "flowers", "version": new_version}
    beat_gate = run["spec"]["gates"]["beat"]
    assert (beat_gate["alias"], beat_gate["metric"]) == ("champion", "accuracy")
    assert run["metadata"]["labels"]["kubeml.io/trigger"] == "Drift"
    done = kube.wait_condition(
        kube_api,
        ns,
        "TrainingRun",
        run["metadata"]["name"],
        "Succeeded",
        status="True",
        timeout=300,
    )
    assert done["status"]["modelVersion"] == f"{MODEL}-v2"
    # The old champion, measured on the new test split, lost to the retrained one.
    beat = [g for g in done["status"]["gates"] if f"champion {MODEL}-v1" in g["gate"]]
    assert len(beat) == 1 and beat[0]["passed"], done["status"]["gates"]
    champion_accuracy = float(beat[0]["gate"].split(">= ")[1].split(" ")[0])
    assert champion_accuracy < done["status"]["metrics"]["accuracy"] - 0.2

    # Promoted: v2 takes traffic in the default steps (10% then 50%, 30 s each),
    # each judged on its live requests, then all of it; clients see no failure.
    url = f"{service_url(kube_api, ns, 'flowers')}/v1/models/{MODEL}:predict"
    shares: dict[int, float] = {}
    # All 150 shifted rows in each request: what v2 serves looks like what it learnt
    # from (its drift stays low, checked below).
    with ClientLoop(url, {"instances": rows.tolist()}) as loop:
        for step, weight in ((0, 10), (1, 50)):
            poll(
                lambda s=step, w=weight: at_step(kube_api, ns, s, w),
                timeout=300,
                what=f"step {step + 1} at {weight}% in effect",
                interval=0.5,
            )
            shares[weight] = loop.share_over(300, "2")
            assert at_step(kube_api, ns, step, weight), f"step {step + 1} ended within the window"
        dep = poll(lambda: serving(kube_api, ns, 2), timeout=300, what="flowers serving v2")
        after = loop.share_over(50, "2")
    ro = dep["status"]["rollout"]
    promo = dep["status"]["retraining"]["lastPromotion"]
    took = parse_time(ro["history"][-1]["time"]) - parse_time(promo["time"])  # type: ignore[operator]
    print(
        f"retrained v2 rolled out in the default steps: {shares[10]:.1f}% at 10, "
        f"{shares[50]:.1f}% at 50 (300 requests each), then {after:.0f}%; "
        f"{took.total_seconds():.0f}s from promotion to stable; "
        f"{len(loop.versions)} requests, {len(loop.failures)} failed"
    )
    assert (ro["phase"], ro["steps"]) == ("Succeeded", 2), ro
    assert (ro["from"]["modelVersion"], ro["to"]["modelVersion"]) == (f"{MODEL}-v1", f"{MODEL}-v2")
    reasons = [h["reason"] for h in ro["history"]]
    assert reasons == ["RolloutStarted", "StepStarted", "RolloutSucceeded"], ro["history"]
    assert ro["lastAnalysis"]["result"] == "Pass", ro["lastAnalysis"]
    assert abs(shares[10] - 10) <= 3 and abs(shares[50] - 50) <= 3, shares
    assert after == 100.0
    assert loop.failures == [], loop.failures[:10]

    # Served: the new pod sees the same traffic as no drift at all.
    assert promo["modelVersion"] == f"{MODEL}-v2" and promo["previous"] == f"{MODEL}-v1"
    v2 = kube.get(kube_api, ns, "ModelVersion", f"{MODEL}-v2")
    assert "champion" in v2["spec"]["aliases"]
    pod = ready_pods(kube_api, ns, "flowers", "stable")[0]
    assert pod.metadata.labels["kubeml.io/version"] == "2"
    base = f"http://{pod.status.pod_ip}:8080"
    code, answer = post(f"{base}/v1/models/{MODEL}:predict", {"instances": rows.tolist()})
    assert code == 200, answer
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        page = resp.read().decode()
    psi = [
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("kubeml_feature_drift_psi{")
    ]
    assert psi and max(psi) < 0.5, psi
    # The loop does not run again on data it already trained on.
    assert len(kube.list_kind(kube_api, ns, "TrainingRun", "kubeml.io/retraining-for=flowers")) == 1

    # A promoted version that cannot serve goes back: corrupt v2's artifact.
    b, k = parse_uri(v2["spec"]["artifact"]["uri"])
    data = s3_client.get_object(Bucket=b, Key=k)["Body"].read()
    s3_client.put_object(Bucket=b, Key=k, Body=data[:-8] + b"tampered")
    poll(lambda: serving(kube_api, ns, 1), timeout=300, what="flowers rolled back to v1")
    promo = retraining_status(kube_api, ns)["lastPromotion"]
    assert promo.get("rolledBackTime"), promo
    v1 = kube.get(kube_api, ns, "ModelVersion", f"{MODEL}-v1")
    assert "champion" in v1["spec"]["aliases"]
    events = client.CoreV1Api(kube_api).list_namespaced_event(
        ns, field_selector="involvedObject.kind=Deployment,involvedObject.name=flowers"
    )
    reasons = {e.reason for e in events.items}
    assert {
        "RetrainingTriggered",
        "RetrainingStarted",
        "Promoted",
        "RolloutStarted",
        "RolloutSucceeded",
        "RolledBack",
    } <= reasons

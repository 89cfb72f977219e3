"""Production data on the real control plane and S3: a kubeml.io Deployment with
spec.capture writes every answered request to its namespace's capture prefix, read
back with pyarrow; a server pod deleted during traffic loses none of the records it
acknowledged."""

from __future__ import annotations

import io
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
from kubernetes import client

from kubeml.storage import layout
from kubeml_local.readiness import poll
from tests.integration.test_serving import post, ready_pods
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
MODEL = "iris-capture"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def deployment(name: str, **capture: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "model": MODEL,
            "version": 1,
            "replicas": 1,
            "server": {"grpc": False},
            "capture": capture,
        },
    }


@pytest.fixture(scope="module")
def trained(
    operator: OperatorProcess, kube_api: client.ApiClient, s3_env: dict[str, str]
) -> Iterator[str]:
    """A restricted namespace with the iris data and iris-capture v1."""
    ns = f"t-proddata-{uuid.uuid4().hex[:6]}"
    kube.new_namespace(kube_api, ns, kube.RESTRICTED)
    kube.add_s3_secret(kube_api, ns, s3_env)
    kube.create(kube_api, ns, load_yaml(ROOT / "examples" / "iris" / "dataset.yaml"))
    run = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
    run["metadata"]["name"] = "iris-capture-a"
    run["spec"].update(
        model=MODEL,
        search=None,
        estimator={"name": "decision-tree-classifier", "params": {"random_state": 0}},
    )
    kube.create(kube_api, ns, run)
    kube.wait_condition(
        kube_api, ns, "ModelVersion", f"{MODEL}-v1", "Ready", status="True", timeout=300
    )
    yield ns
    client.CoreV1Api(kube_api).delete_namespace(ns, propagation_policy="Background")


def captured(s3_client: Any, bucket: str, ns: str, name: str) -> list[dict[str, Any]]:
    prefix = layout.capture_prefix(ns, name)
    out: list[dict[str, Any]] = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            assert f"/model={MODEL}/version=1/hour=" in key, key
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
            out.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return out


def at_least(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]] | None:
    return records if len(records) >= n else None


def serve(api: client.ApiClient, ns: str, doc: dict[str, Any]) -> str:
    """Create the Deployment and return its one ready pod's base URL."""
    kube.create(api, ns, doc)
    name = doc["metadata"]["name"]
    kube.wait_condition(api, ns, "Deployment", name, "Ready", status="True", timeout=300)
    pods = poll(lambda: ready_pods(api, ns, name) or None, timeout=120, what="a ready pod")
    return f"http://{pods[0].status.pod_ip}:8080"


def infer(base: str, rows: list[list[float]], rid: str | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "x",
                "shape": [len(rows), 4],
                "datatype": "FP64",
                "data": [v for r in rows for v in r],
            }
        ]
    }
    if rid:
        body["id"] = rid
    return post(f"{base}/v2/models/{MODEL}/infer", body)


def test_every_request_is_captured_in_the_namespaces_prefix(
    kube_api: client.ApiClient, trained: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    ns, bucket = trained, s3_env["KUBEML_BUCKET"]
    base = serve(kube_api, ns, deployment("all", samplePercent=100))
    sent: dict[str, list[list[float]]] = {}
    for i in range(60):
        rows = ROWS[: 1 + i % 3]
        status, doc = infer(base, rows, f"all-{i}" if i % 2 else None)
        assert status == 200, doc
        sent[doc["id"]] = rows
    got = poll(
        lambda: at_least(captured(s3_client, bucket, ns, "all"), len(sent)),
        timeout=60,
        what="60 captured records",
    )
    assert sorted(r["id"] for r in got) == sorted(sent)
    for r in got:
        rows = sent[r["id"]]
        assert r["time"] is not None and r["modelversion"] == f"{MODEL}-v1"
        assert list(r["inputs"].values()) == [list(c) for c in zip(*rows, strict=True)]
        assert len(r["outputs"]["predict"]) == len(rows)


def test_a_pod_deleted_during_traffic_loses_no_acknowledged_record(
    kube_api: client.ApiClient, trained: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    ns, bucket = trained, s3_env["KUBEML_BUCKET"]
    base = serve(kube_api, ns, deployment("deleted", samplePercent=100))
    pod = ready_pods(kube_api, ns, "deleted")[0].metadata.name
    acked: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        # Until the pod stops answering: every 200 is an acknowledged request.
        while not stop.is_set():
            try:
                status, doc = infer(base, ROWS[:1])
            except (OSError, urllib.error.URLError):
                return
            if status == 200:
                acked.append(doc["id"])

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    poll(lambda: len(acked) >= 50 or None, timeout=60, what="50 answered requests")
    client.CoreV1Api(kube_api).delete_namespaced_pod(pod, ns)
    before_delete = len(acked)
    t.join(90)
    stop.set()
    assert not t.is_alive(), "the deleted pod kept answering"
    got = poll(
        lambda: at_least(captured(s3_client, bucket, ns, "deleted"), len(acked)),
        timeout=60,
        what=f"{len(acked)} captured records",
    )
    assert len(acked) >= before_delete
    assert sorted(r["id"] for r in got) == sorted(acked)


def live_metrics(base: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(("kubeml_live_", "kubeml_feedback_records"))
        and s.labels.get("result", "scored") == "scored"
    }


def test_feedback_makes_live_accuracy_equal_a_hand_computation(
    kube_api: client.ApiClient, trained: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    from sklearn.datasets import load_iris

    ns, bucket = trained, s3_env["KUBEML_BUCKET"]
    base = serve(kube_api, ns, deployment("labelled", samplePercent=100))
    X, y = load_iris(return_X_y=True)
    picked = list(range(0, 150, 5))
    answers = []
    for i in picked:
        status, doc = infer(base, [X[i].tolist()])
        assert status == 200, doc
        answers.append((doc["id"], doc["outputs"][0]["data"][0], int(y[i])))
    # Truth the model gets wrong on purpose for a known share of requests.
    truth = [(t + 1) % 3 if k % 4 == 0 else t for k, (_, _, t) in enumerate(answers)]
    batch = [{"id": rid, "truth": t} for (rid, _, _), t in zip(answers, truth, strict=True)]
    status, doc = post(
        f"{base}/v2/models/{MODEL}/feedback",
        {"feedback": [*batch, {"id": "never-sent", "truth": 1}]},
    )
    assert status == 200, doc
    assert doc["scored"] == len(answers) and doc["unknown"] == ["never-sent"]
    expected = sum(int(p) == t for (_, p, _), t in zip(answers, truth, strict=True)) / len(answers)
    live = live_metrics(base)
    assert live["kubeml_live_accuracy"] == pytest.approx(expected)
    assert live["kubeml_live_labelled_rows"] == len(answers)
    status, doc = post(f"{base}/v2/models/{MODEL}/feedback", {"id": "x", "truth": "9"})
    assert status == 400 and "not one of the model's classes" in doc["error"]
    # The labels are stored beside the captures, in the namespace's own prefix.
    prefix = layout.feedback_prefix(ns, "labelled")

    def stored() -> list[dict[str, Any]] | None:
        pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        rows = [
            r
            for page in pages
            for obj in page.get("Contents", [])
            for r in pq.read_table(
                io.BytesIO(s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            ).to_pylist()
        ]
        return at_least(rows, len(answers) + 1)

    rows = poll(stored, timeout=60, what="stored feedback")
    assert {r["id"] for r in rows} == {rid for rid, _, _ in answers} | {"never-sent"}


def stored_rows(s3_client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [
        r
        for page in pages
        for obj in page.get("Contents", [])
        for r in pq.read_table(
            io.BytesIO(s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        ).to_pylist()
    ]


def send_labelled(base: str, picks: list[int], wrong_every: int) -> int:
    """Requests for iris rows, then feedback whose truth disagrees with the model on
    every ``wrong_every``-th one; returns the rows labelled."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    batch = []
    for k, i in enumerate(picks):
        status, doc = infer(base, [X[i].tolist()])
        assert status == 200, doc
        pred = int(doc["outputs"][0]["data"][0])
        batch.append(
            {"id": doc["id"], "truth": (pred + 1) % 3 if k % wrong_every == 0 else int(y[i])}
        )
    status, doc = post(f"{base}/v2/models/{MODEL}/feedback", {"feedback": batch})
    assert status == 200 and doc["scored"] == len(batch), doc
    return len(batch)


def test_a_dataset_from_production_trains_and_low_live_accuracy_retrains_on_it(
    kube_api: client.ApiClient, trained: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    ns, bucket = trained, s3_env["KUBEML_BUCKET"]
    dep = deployment("loop", samplePercent=100)
    dep["spec"].update(
        monitoring={"alerts": {"liveAccuracy": 0.9, "minLabelledRows": 20}},
        retraining={
            "template": {"name": "prod-train"},
            "triggers": {"drift": False, "liveQuality": True},
            "cooldownSeconds": 0,
        },
    )
    base = serve(kube_api, ns, dep)
    # Half the labels disagree with the model: live accuracy near 0.5.
    labelled = send_labelled(base, list(range(0, 150, 3)), wrong_every=2)
    # Written by the server within its flush interval: wait for it, not a fixed time.
    for prefix in (layout.capture_prefix(ns, "loop"), layout.feedback_prefix(ns, "loop")):
        poll(
            lambda p=prefix: at_least(stored_rows(s3_client, bucket, p), labelled),
            timeout=60,
            what=f"{labelled} records under {prefix}",
        )
    prod = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "prod"},
        "spec": {
            "source": {"production": {"deployment": "loop"}},
            "target": "target",
            "split": {"test": 0.2, "seed": 0},
        },
    }
    kube.create(kube_api, ns, prod)
    ds = kube.wait_condition(kube_api, ns, "Dataset", "prod", "Ready", status="True", timeout=300)
    first = ds["status"]["version"]
    assert ds["status"]["rows"]["total"] == labelled
    # More labelled traffic after the first version: a refresh has new data to find.
    more = send_labelled(base, list(range(1, 150, 5)), wrong_every=2)
    # The refresh can only find them once the server has flushed them to S3.
    for prefix in (layout.capture_prefix(ns, "loop"), layout.feedback_prefix(ns, "loop")):
        poll(
            lambda p=prefix: at_least(stored_rows(s3_client, bucket, p), labelled + more),
            timeout=60,
            what=f"{labelled + more} records under {prefix}",
        )
    run = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "prod-train"},
        "spec": {
            "datasetRef": {"name": "prod"},
            "model": MODEL,
            "estimator": {"name": "decision-tree-classifier", "params": {"random_state": 0}},
        },
    }
    kube.create(kube_api, ns, run)
    done = kube.wait_condition(
        kube_api, ns, "TrainingRun", "prod-train", "Succeeded", status="True", timeout=300
    )
    mv = kube.get(kube_api, ns, "ModelVersion", done["status"]["modelVersion"])
    assert mv is not None and mv["spec"]["lineage"]["datasetVersion"] == first

    def retrained() -> dict[str, Any] | None:
        body = kube.get(kube_api, ns, "Deployment", "loop") or {}
        rs = (body.get("status") or {}).get("retraining") or {}
        return rs if rs.get("runs") and (rs.get("lastTrigger") or {}).get("reason") else None

    rs = poll(retrained, timeout=300, what="a retraining run triggered by live accuracy")
    assert rs["lastTrigger"]["reason"] == "LiveQuality", rs
    assert "live accuracy" in rs["lastTrigger"]["message"]
    name = rs["runs"][0]
    again = kube.wait_condition(
        kube_api, ns, "TrainingRun", name, "Succeeded", status="True", timeout=300
    )
    assert again["spec"]["datasetRef"]["name"] == "prod"
    assert again["spec"]["datasetRef"]["version"] != first  # the refreshed production data


def production_dataset(name: str, deployment: str, base: str) -> dict[str, Any]:
    """The README's example (examples/dataset-production.yaml) under other names,
    without its daily refresh."""
    doc = load_yaml(ROOT / "examples" / "dataset-production.yaml")
    doc["metadata"]["name"] = name
    doc["spec"]["source"]["production"].update(deployment=deployment, appendTo={"dataset": base})
    del doc["spec"]["refresh"]
    return doc


def test_production_rows_appended_to_a_dataset_are_versioned_and_train(
    kube_api: client.ApiClient, trained: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    ns, bucket = trained, s3_env["KUBEML_BUCKET"]
    base = serve(kube_api, ns, deployment("appended", samplePercent=100))
    labelled = send_labelled(base, list(range(0, 150, 4)), wrong_every=3)
    for prefix in (layout.capture_prefix(ns, "appended"), layout.feedback_prefix(ns, "appended")):
        poll(
            lambda p=prefix: at_least(stored_rows(s3_client, bucket, p), labelled),
            timeout=60,
            what=f"{labelled} records under {prefix}",
        )
    iris = kube.wait_condition(kube_api, ns, "Dataset", "iris", "Ready", status="True")
    kube.create(kube_api, ns, production_dataset("iris-plus", "appended", "iris"))
    plus = kube.wait_condition(
        kube_api, ns, "Dataset", "iris-plus", "Ready", status="True", timeout=300
    )
    st = plus["status"]
    assert st["rows"]["total"] == iris["status"]["rows"]["total"] + labelled == 150 + labelled
    assert st["base"] == {"dataset": "iris", "version": iris["status"]["version"]}
    assert st["version"] != iris["status"]["version"]
    assert {c["name"] for c in st["columns"]} == {c["name"] for c in iris["status"]["columns"]}

    # A base with other columns: a failed condition naming the columns and both Datasets.
    narrow = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    narrow["metadata"]["name"] = "iris-narrow"
    narrow["spec"]["features"] = ["sepal length (cm)", "petal length (cm)"]
    kube.create(kube_api, ns, narrow)
    kube.create(kube_api, ns, production_dataset("narrow-plus", "appended", "iris-narrow"))
    bad = kube.wait_condition(
        kube_api, ns, "Dataset", "narrow-plus", "Ready", reasons=("ColumnMismatch",), timeout=300
    )
    message = kube.condition(bad, "Ready")["message"]  # type: ignore[index]
    assert "extra columns 'sepal width (cm)', 'petal width (cm)'" in message, message
    assert f"dataset {ns}/narrow-plus" in message and "dataset iris-narrow" in message

    # The base's next version is the next preparation: it now fits.
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "kubeml.io", "v1alpha1", ns, "datasets", "iris-narrow", {"spec": {"features": None}}
    )  # fmt: skip

    def refitted() -> dict[str, Any] | None:
        narrow_now = kube.get(kube_api, ns, "Dataset", "iris-narrow") or {}
        version = (narrow_now.get("status") or {}).get("version")
        body = kube.get(kube_api, ns, "Dataset", "narrow-plus") or {}
        ready = kube.condition(body, "Ready") or {}
        based = ((body.get("status") or {}).get("base") or {}).get("version")
        return body if ready.get("status") == "True" and version and based == version else None

    fixed = poll(refitted, timeout=300, what="narrow-plus prepared on iris-narrow's new version")
    assert fixed["status"]["rows"]["total"] == 150 + labelled

    # Trained through the ordinary TrainingRun path.
    run = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "plus-train"},
        "spec": {
            "datasetRef": {"name": "iris-plus"},
            "model": "iris-appended",
            "estimator": {"name": "decision-tree-classifier", "params": {"random_state": 0}},
        },
    }
    kube.create(kube_api, ns, run)
    done = kube.wait_condition(
        kube_api, ns, "TrainingRun", "plus-train", "Succeeded", status="True", timeout=300
    )
    mv = kube.get(kube_api, ns, "ModelVersion", done["status"]["modelVersion"])
    assert mv is not None and mv["spec"]["lineage"]["datasetVersion"] == st["version"]

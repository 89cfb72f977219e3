"""Serving on the real control plane: predictions, rollouts, canaries, integrity, Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from kubeml import models
from kubeml.schedules import parse_time
from kubeml.storage import parse_uri
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support import prometheus as prom
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.5, 5.0, 1.9]]


def _run(name: str, model: str, **params: Any) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
    doc["metadata"]["name"] = name
    doc["spec"].update(
        model=model,
        search=None,
        estimator={"name": "random-forest-classifier", "params": {"random_state": 0, **params}},
    )
    return doc


def _deployment(name: str, **spec: Any) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "iris" / "deployment.yaml")
    doc["metadata"]["name"] = name
    doc["spec"].update(spec)
    return doc


@pytest.fixture(scope="module")
def served(
    operator: OperatorProcess, kube_api: client.ApiClient, s3_env: dict[str, str]
) -> Iterator[str]:
    """A namespace with the iris data and two versions of iris-classifier (v1 champion)."""
    ns = kube.namespace_with_versions(
        kube_api,
        "t-serving",
        s3_env,
        [
            _run("iris-a", "iris-classifier", n_estimators=20, max_depth=2),
            _run("iris-b", "iris-classifier", n_estimators=40),
        ],
    )
    # The served Deployment every test here can use (it follows champion = v1).
    kube.create(kube_api, ns, _deployment("iris"))
    kube.wait_condition(kube_api, ns, "Deployment", "iris", "Ready", status="True", timeout=300)
    yield ns
    client.CoreV1Api(kube_api).delete_namespace(ns, propagation_policy="Background")


def ready_pods(
    api: client.ApiClient, ns: str, deployment: str, track: str | None = None
) -> list[client.V1Pod]:
    sel = f"kubeml.io/deployment={deployment}" + (f",kubeml.io/track={track}" if track else "")
    out = []
    for p in client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=sel).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        if ready and p.metadata.deletion_timestamp is None and p.status.pod_ip:
            out.append(p)
    return out


def post(url: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def service_url(api: client.ApiClient, ns: str, name: str) -> str:
    """The Service's ClusterIP (a loopback address the node agent's proxy answers on)."""
    ip = client.CoreV1Api(api).read_namespaced_service(name, ns).spec.cluster_ip
    assert ip.startswith("127."), ip
    return f"http://{ip}"


def model_of(api: client.ApiClient, ns: str, mv_name: str, s3_client: Any) -> Any:
    mv = kube.get(api, ns, "ModelVersion", mv_name)
    assert mv is not None
    bucket, key = parse_uri(mv["spec"]["artifact"]["uri"])
    data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return models.load(data, mv["spec"]["artifact"]["sha256"]), mv


def test_predictions_through_v2_and_v1_match_the_models_own(
    kube_api: client.ApiClient,
    served: str,
    s3_client: Any,
) -> None:
    dep = kube.wait_condition(
        kube_api, served, "Deployment", "iris", "Ready", status="True", timeout=300
    )
    assert dep["status"]["stable"]["version"] == 1
    assert dep["status"]["readyReplicas"] == 2
    model, mv = model_of(kube_api, served, "iris-classifier-v1", s3_client)
    names = [c["name"] for c in mv["spec"]["signature"]["inputs"]]
    import pandas as pd

    expected = [int(x) for x in model.predict(pd.DataFrame(ROWS, columns=names))]
    pods = ready_pods(kube_api, served, "iris")
    assert len(pods) == 2
    for pod in pods:
        base = f"http://{pod.status.pod_ip}:8080"
        code, v2 = post(
            f"{base}/v2/models/iris-classifier/infer",
            {
                "inputs": [
                    {
                        "name": n,
                        "shape": [len(ROWS)],
                        "datatype": "FP64",
                        "data": [r[i] for r in ROWS],
                    }
                    for i, n in enumerate(names)
                ]
            },
        )
        assert code == 200, v2
        predict = next(o for o in v2["outputs"] if o["name"] == "predict")
        assert [int(x) for x in predict["data"]] == expected
        code, v1 = post(f"{base}/v1/models/iris-classifier:predict", {"instances": ROWS})
        assert code == 200, v1
        assert [int(x) for x in v1["predictions"]] == expected
        code, bad = post(f"{base}/v1/models/iris-classifier:predict", {"instances": [[1.0, "x"]]})
        assert 400 <= code < 500 and "error" in bad


def test_open_inference_protocol_clients_get_the_models_own_predictions(
    kube_api: client.ApiClient,
    served: str,
    s3_client: Any,
) -> None:
    """tritonclient, the protocol's common client, with its defaults (binary tensors
    both ways), with JSON, and over gRPC, against every server pod."""
    import pandas as pd
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    model, mv = model_of(kube_api, served, "iris-classifier-v1", s3_client)
    names = [c["name"] for c in mv["spec"]["signature"]["inputs"]]
    X = np.array(ROWS * 8, dtype=np.float64)  # 32 rows
    frame = pd.DataFrame(X, columns=names)
    want = np.asarray(model.predict(frame)).astype(np.int64)
    want_proba = model.predict_proba(frame)
    pods = ready_pods(kube_api, served, "iris")
    assert len(pods) == 2
    svc = client.CoreV1Api(kube_api).read_namespaced_service("iris", served)
    assert {p.name: p.port for p in svc.spec.ports} == {"http": 80, "grpc": 8081}
    for pod in pods:
        ports = {p.name: p.container_port for p in pod.spec.containers[0].ports}
        assert ports == {"http": 8080, "grpc": 8081}
        ip = pod.status.pod_ip
        http = httpclient.InferenceServerClient(f"{ip}:8080")
        assert http.is_server_ready() and http.is_model_ready("iris-classifier")
        # Defaults: the input as raw bytes, every output asked for as raw bytes.
        tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X)
        res = http.infer("iris-classifier", [tensor])
        (out,) = res.get_response()["outputs"]
        assert out["parameters"]["binary_data_size"] == 32 * 8 and "data" not in out
        np.testing.assert_array_equal(res.as_numpy("predict"), want)
        # JSON both ways, one FP32 input per feature, probabilities too.
        columns = []
        for i, n in enumerate(names):
            col = httpclient.InferInput(n, [len(X)], "FP32")
            col.set_data_from_numpy(X[:, i].astype(np.float32), binary_data=False)
            columns.append(col)
        outputs = [
            httpclient.InferRequestedOutput("predict", binary_data=False),
            httpclient.InferRequestedOutput("predict_proba", binary_data=False),
        ]
        res = http.infer("iris-classifier", columns, outputs=outputs)
        assert all("data" in o for o in res.get_response()["outputs"])
        f32 = pd.DataFrame(X.astype(np.float32).astype(np.float64), columns=names)
        np.testing.assert_array_equal(res.as_numpy("predict"), model.predict(f32))
        np.testing.assert_allclose(
            np.asarray(res.as_numpy("predict_proba")).reshape(-1, 3), model.predict_proba(f32)
        )
        http.close()
        # gRPC on its own port: metadata, readiness, predictions and probabilities.
        rpc = grpcclient.InferenceServerClient(f"{ip}:8081")
        assert rpc.is_server_live() and rpc.is_model_ready("iris-classifier")
        meta = rpc.get_model_metadata("iris-classifier", as_json=True)
        assert [i["name"] for i in meta["inputs"]] == names
        tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X)
        asked = [grpcclient.InferRequestedOutput(n) for n in ("predict", "predict_proba")]
        res = rpc.infer("iris-classifier", [tensor], outputs=asked)
        np.testing.assert_array_equal(res.as_numpy("predict"), want)
        np.testing.assert_allclose(res.as_numpy("predict_proba").reshape(-1, 3), want_proba)
        bad = grpcclient.InferInput("input-0", [2, 3], "FP64")
        bad.set_data_from_numpy(X[:2, :3])
        with pytest.raises(Exception, match="INVALID_ARGUMENT") as err:
            rpc.infer("iris-classifier", [bad])
        assert "[n, 4]" in str(err.value)
        rpc.close()
        with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'code="200",model="iris-classifier",protocol="grpc"' in metrics
        assert 'code="400",model="iris-classifier",protocol="grpc"' in metrics


def test_moving_the_alias_rolls_the_pods_without_a_failed_request(
    local_cluster: Any,
    kube_api: client.ApiClient,
    served: str,
) -> None:
    kube.create(kube_api, served, _deployment("roll"))
    kube.wait_condition(kube_api, served, "Deployment", "roll", "Ready", status="True", timeout=300)
    results: list[str] = []
    seen_previous: list[int] = []
    stop = threading.Event()

    url = f"{service_url(kube_api, served, 'roll')}/v1/models/iris-classifier:predict"

    def client_loop() -> None:
        # Through the Service, as a client would: a new connection per request.
        while not stop.is_set():
            try:
                code, _ = post(url, {"instances": ROWS}, timeout=5)
                results.append("ok" if code == 200 else f"HTTP {code}")
            except OSError as err:
                results.append(f"{type(err).__name__}: {err}")
            dep = kube.get(kube_api, served, "Deployment", "roll")
            prev = ((dep or {}).get("status") or {}).get("previous")
            if prev:
                seen_previous.append(prev["version"])

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        # This interpreter's kubeml: CI does not activate the virtualenv.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kubeml.cli",
                "promote",
                "iris-classifier",
                "2",
                "--alias",
                "champion",
                "-n",
                served,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)},
        )

        def rolled() -> bool:
            dep = kube.get(kube_api, served, "Deployment", "roll") or {}
            st = dep.get("status") or {}
            pods = ready_pods(kube_api, served, "roll")
            return (
                st.get("stable", {}).get("version") == 2
                and "previous" not in st
                and kube.condition(
                    dep,
                    "Ready",
                ).get("status")
                == "True"  # type: ignore[union-attr]
                and len(pods) == 2
                and all(p.metadata.labels["kubeml.io/version"] == "2" for p in pods)
            )

        poll(rolled, timeout=300, what="rollout to v2", interval=1)
    finally:
        stop.set()
        loop.join(timeout=30)
    failures = [r for r in results if r != "ok"]
    print(f"rollout through the Service: {len(results)} requests, {len(failures)} failed")
    assert len(results) > 20
    assert failures == [], failures[:10]
    assert seen_previous and set(seen_previous) == {1}


class ClientLoop:
    """Clients through the Service, as users reach it, one new connection per request,
    running until stopped; every answer's serving version (response header) kept."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, body
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        data = json.dumps(self.body).encode()
        while not self._stop.is_set():
            req = urllib.request.Request(
                self.url, data=data, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    doc = json.loads(resp.read())
                    version = resp.headers["kubeml-model-version"]
                    if doc.get("model_version", version) != version:
                        self.failures.append(f"header {version}, body {doc['model_version']}")
                    self.versions.append(version)
            except urllib.error.HTTPError as err:
                self.failures.append(f"HTTP {err.code}: {err.read()[:200]!r}")
            except OSError as err:
                self.failures.append(f"{type(err).__name__}: {err}")

    def share_over(self, n: int, version: str, timeout: float = 300) -> float:
        """The share of ``version`` among the next ``n`` answers."""
        start = len(self.versions)
        poll(
            lambda: len(self.versions) >= start + n or None,
            timeout=timeout,
            what=f"{n} answers",
            interval=0.5,
        )
        window = self.versions[start : start + n]
        return 100 * window.count(version) / n


def test_canary_shares_are_exact_by_request_through_the_service(
    kube_api: client.ApiClient,
    served: str,
) -> None:
    # One stable and one canary pod: by replica ratio the canary would get half.
    doc = _deployment(
        "split", alias=None, version=1, replicas=1, canary={"version": 2, "trafficPercent": 25}
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, served, doc)

    def share_in_effect(want: int) -> dict[str, Any] | None:
        dep = kube.get(kube_api, served, "Deployment", "split") or {}
        canary = (dep.get("status") or {}).get("canary") or {}
        ready = kube.condition(dep, "Ready") or {}
        done = canary.get("trafficPercent") == want and ready.get("status") == "True"
        return dep if done else None

    dep = poll(lambda: share_in_effect(25), timeout=300, what="canary at 25%", interval=1)
    assert dep["status"]["canary"]["desiredTrafficPercent"] == 25
    assert {
        p.metadata.labels["kubeml.io/version"]
        for p in ready_pods(kube_api, served, "split", "canary")
    } == {"2"}
    url = f"{service_url(kube_api, served, 'split')}/v2/models/iris-classifier/infer"
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    with ClientLoop(url, body) as loop:
        at_25 = loop.share_over(300, "2")
        # A new share: the stable servers roll to it while the clients keep going.
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "kubeml.io",
            "v1alpha1",
            served,
            "deployments",
            "split",
            {"spec": {"canary": {"version": 2, "trafficPercent": 10}}},
        )
        poll(lambda: share_in_effect(10), timeout=300, what="canary at 10%", interval=1)
        at_10 = loop.share_over(300, "2")
    # gRPC calls through the Service's gRPC port take the same exact share.
    import tritonclient.grpc as grpcclient

    ip = client.CoreV1Api(kube_api).read_namespaced_service("split", served).spec.cluster_ip
    rpc = grpcclient.InferenceServerClient(f"{ip}:8081")
    served_by: list[str] = []
    for _ in range(300):
        tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
        tensor.set_data_from_numpy(np.array([ROWS[0]], dtype=np.float64))
        res = rpc.infer("iris-classifier", [tensor])
        served_by.append(res.get_response().model_version)
        assert res.as_numpy("predict").shape == (1,)
    rpc.close()
    grpc_10 = 100.0 * served_by.count("2") / len(served_by)
    print(
        f"canary share through the Service: {at_25:.1f}% of 300 (want 25), "
        f"{at_10:.1f}% of 300 (want 10), gRPC {grpc_10:.1f}% of 300 (want 10); "
        f"{len(loop.versions)} requests, {len(loop.failures)} failed"
    )
    assert loop.failures == [], loop.failures[:10]
    assert abs(at_25 - 25) <= 3 and abs(at_10 - 10) <= 3, (at_25, at_10)
    assert set(served_by) == {"1", "2"} and abs(grpc_10 - 10) <= 3, grpc_10


def test_a_tampered_artifact_keeps_pods_unready_until_it_is_restored(
    kube_api: client.ApiClient,
    served: str,
    s3_client: Any,
) -> None:
    kube.create(kube_api, served, _run("tamper", "tamper"))
    mv = kube.wait_condition(
        kube_api, served, "ModelVersion", "tamper-v1", "Ready", status="True", timeout=300
    )
    bucket, key = parse_uri(mv["spec"]["artifact"]["uri"])
    data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=key, Body=data[:-10] + b"0123456789")
    doc = _deployment("tampered", model="tamper", replicas=1)
    kube.create(kube_api, served, doc)
    dep = kube.wait_condition(
        kube_api,
        served,
        "Deployment",
        "tampered",
        "Degraded",
        status="True",
        reasons=("ArtifactMismatch",),
        timeout=120,
    )
    assert "sha256" in kube.condition(dep, "Degraded")["message"]  # type: ignore[index]
    core = client.CoreV1Api(kube_api)

    def running_pod() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(served, label_selector="kubeml.io/deployment=tampered")
        return next((p for p in pods.items if p.status.phase == "Running"), None)

    pod = poll(running_pod, timeout=120, what="server pod running")

    def refused() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://{pod.status.pod_ip}:8080/v2/health/ready", timeout=5
            ):
                return None
        except urllib.error.HTTPError as err:
            body: dict[str, Any] = json.loads(err.read())
            return body if err.code == 503 and body.get("reason") == "ArtifactMismatch" else None

    body = poll(refused, timeout=120, what="server refusing readiness")
    assert key.rsplit("/", 1)[-1][:12] in json.dumps(body) or "sha256" in json.dumps(body)
    assert ready_pods(kube_api, served, "tampered") == []
    dep = kube.get(kube_api, served, "Deployment", "tampered")
    assert kube.condition(dep, "Ready")["status"] == "False"  # type: ignore[index]

    # The right bytes back: the same pod verifies again by itself and becomes ready
    # within a minute, without a restart or anything done to the Deployment.
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    restored = time.monotonic()

    def same_pod_ready() -> client.V1Pod | None:
        p = core.read_namespaced_pod(pod.metadata.name, served)
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        return p if ready else None

    again = poll(same_pod_ready, timeout=60, what="the pod ready after the restore", interval=0.5)
    print(f"\n[tamper] pod ready {time.monotonic() - restored:.1f} s after the restore")
    assert again.status.container_statuses[0].restart_count == 0
    code, out = post(
        f"http://{pod.status.pod_ip}:8080/v1/models/tamper:predict", {"instances": ROWS}
    )
    assert code == 200 and len(out["predictions"]) == len(ROWS)
    kube.wait_condition(
        kube_api, served, "Deployment", "tampered", "Ready", status="True", timeout=180
    )


def test_prometheus_discovers_and_scrapes_the_server_pods(
    local_cluster: Any,
    kube_api: client.ApiClient,
    served: str,
    tmp_path: Path,
    prometheus_bin: Path,
) -> None:
    kube.wait_condition(kube_api, served, "Deployment", "iris", "Ready", status="True", timeout=300)
    conf = prom.config(prom.pod_job(local_cluster, served))
    with prom.running(prometheus_bin, tmp_path, conf) as base:
        for pod in ready_pods(kube_api, served, "iris"):
            post(
                f"http://{pod.status.pod_ip}:8080/v1/models/iris-classifier:predict",
                {"instances": ROWS},
            )

        def query() -> list[Any] | None:
            url = (
                f"{base}/api/v1/query?query="
                f"sum%20by%20(pod)%20(kubeml_requests_total%7Bnamespace%3D%22{served}%22%7D)"
            )
            with urllib.request.urlopen(url, timeout=5) as resp:
                result: list[Any] = json.loads(resp.read())["data"]["result"]
            scraped = {r["metric"]["pod"] for r in result if float(r["value"][1]) > 0}
            wanted = {p.metadata.name for p in ready_pods(kube_api, served, "iris")}
            return result if wanted and scraped >= wanted else None

        result = poll(query, timeout=90, what="kubeml_requests_total in Prometheus", interval=1)
        assert {r["metric"]["pod"] for r in result} >= {
            p.metadata.name for p in ready_pods(kube_api, served, "iris")
        }


def test_drift_shows_up_in_the_server_metrics(kube_api: client.ApiClient, served: str) -> None:
    kube.wait_condition(kube_api, served, "Deployment", "iris", "Ready", status="True", timeout=300)
    pod = ready_pods(kube_api, served, "iris")[0]
    base = f"http://{pod.status.pod_ip}:8080"
    rng = np.random.default_rng(0)
    shifted = (np.array(ROWS * 50) + rng.normal(3.0, 0.5, size=(200, 4))).tolist()
    code, _ = post(f"{base}/v1/models/iris-classifier:predict", {"instances": shifted})
    assert code == 200

    def psi() -> dict[str, float] | None:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("kubeml_feature_drift_psi{"):
                values[line.split('feature="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return values if values and max(values.values()) > 0.2 else None

    values = poll(psi, timeout=30, what="drift above the alert threshold")
    assert len(values) == 4


def test_a_faulty_version_is_rolled_back_at_its_first_failed_judgement(
    kube_api: client.ApiClient,
    served: str,
) -> None:
    # The faulty version: trained on three of iris's four features, so it answers
    # every request of the served shape with an error.
    three = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    three["metadata"]["name"] = "iris-three"
    three["spec"]["features"] = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"]
    kube.create(kube_api, served, three)
    kube.wait_condition(kube_api, served, "Dataset", "iris-three", "Ready", status="True")
    run = _run("iris-faulty", "iris-faulty", n_estimators=10)
    run["spec"]["datasetRef"] = {"name": "iris-three"}
    kube.create(kube_api, served, run)
    kube.wait_condition(
        kube_api, served, "ModelVersion", "iris-faulty-v1", "Ready", status="True", timeout=300
    )
    good = _run("iris-good", "iris-faulty", n_estimators=10)
    kube.create(kube_api, served, good)
    kube.wait_condition(
        kube_api, served, "ModelVersion", "iris-faulty-v2", "Ready", status="True", timeout=300
    )
    interval = 5
    doc = _deployment(
        "faulty",
        model="iris-faulty",
        alias=None,
        version=2,
        replicas=1,
        rollout={
            "steps": [{"setWeight": 50, "pause": {"duration": "60s"}}],
            "analysis": {"interval": f"{interval}s", "minRequests": 10, "failureLimit": 0},
        },
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, served, doc)
    kube.wait_condition(
        kube_api, served, "Deployment", "faulty", "Ready", status="True", timeout=300
    )
    url = f"{service_url(kube_api, served, 'faulty')}/v1/models/iris-faulty:predict"
    # v2 serves requests of four features; v1 (three features) fails each of them.
    with ClientLoop(url, {"instances": ROWS}) as loop:
        poll(lambda: len(loop.versions) >= 20 or None, timeout=120, what="answers from v2")
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "kubeml.io", "v1alpha1", served, "deployments", "faulty", {"spec": {"version": 1}}
        )

        def rolled_back_dep() -> dict[str, Any] | None:
            dep = kube.get(kube_api, served, "Deployment", "faulty") or {}
            phase = ((dep.get("status") or {}).get("rollout") or {}).get("phase")
            return dep if phase == "RolledBack" else None

        dep = poll(rolled_back_dep, timeout=300, what="rollback", interval=0.5)

        def back_to_v2() -> bool:
            d = kube.get(kube_api, served, "Deployment", "faulty") or {}
            return (
                "canary" not in (d.get("status") or {})
                and not ready_pods(kube_api, served, "faulty", "canary")
                and kube.condition(d, "Ready").get("status") == "True"  # type: ignore[union-attr]
            )

        poll(back_to_v2, timeout=120, what="stable alone again", interval=0.5)
        after = loop.share_over(50, "2")
    ro = dep["status"]["rollout"]
    degraded = kube.condition(dep, "Degraded") or {}
    took = parse_time(ro["history"][-1]["time"]) - parse_time(ro["stepStartTime"])  # type: ignore[operator]
    rolled_back = took.total_seconds()
    print(
        f"faulty v1 rolled back {rolled_back:.1f}s after its weight took effect "
        f"(interval {interval}s): {ro['message']}; {len(loop.versions)} requests, "
        f"{len(loop.failures)} failed"
    )
    checks = {c["name"]: c for c in ro["lastAnalysis"]["checks"]}
    assert checks["errorRate"]["passed"] is False and checks["errorRate"]["value"] == 1.0
    assert "errorRate 1 above 0.01" in ro["message"]
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "RolledBack")
    assert "errorRate" in degraded["message"]
    # Judged at the weight's first judgement with enough requests: within two intervals
    # (the first may be inconclusive), plus a reconcile and a scrape.
    assert rolled_back <= 2 * interval + 10, rolled_back
    # The faulty version's errors never reached a client: stable answered them.
    assert loop.failures == [], loop.failures[:10]
    assert after == 100.0
    events = client.CoreV1Api(kube_api).list_namespaced_event(served).items
    assert any(e.reason == "RolledBack" and "errorRate" in (e.message or "") for e in events)


def test_a_rollout_waits_at_its_manual_gate_until_the_spec_approves_it(
    kube_api: client.ApiClient,
    served: str,
) -> None:
    doc = _deployment(
        "gated",
        alias=None,
        version=1,
        replicas=1,
        rollout={
            "steps": [{"setWeight": 30, "pause": {}}],
            "analysis": {"interval": "3s", "minRequests": 5, "maxLatencyP99Seconds": 5},
        },
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, served, doc)
    kube.wait_condition(
        kube_api, served, "Deployment", "gated", "Ready", status="True", timeout=300
    )
    custom = client.CustomObjectsApi(kube_api)

    def patch(spec: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(
            "kubeml.io", "v1alpha1", served, "deployments", "gated", {"spec": spec}
        )

    def rollout() -> dict[str, Any]:
        dep = kube.get(kube_api, served, "Deployment", "gated") or {}
        return dict(((dep.get("status") or {}).get("rollout")) or {})

    url = f"{service_url(kube_api, served, 'gated')}/v2/models/iris-classifier/infer"
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    with ClientLoop(url, body) as loop:
        patch({"version": 2})
        poll(
            lambda: rollout().get("waitingFor") == "Approval" or None,
            timeout=300,
            what="the gate",
            interval=0.5,
        )
        message = rollout()["message"]
        # Held at the gate's weight, however long: 300 requests later, still there.
        share = loop.share_over(300, "2")
        held = rollout()
        dep = kube.get(kube_api, served, "Deployment", "gated") or {}
        progressing = kube.condition(dep, "Progressing") or {}
        patch({"rollout": {"approval": {"version": 2, "step": 1}}})
        poll(
            lambda: rollout().get("phase") == "Succeeded" or None,
            timeout=120,
            what="the rollout past its gate",
            interval=0.5,
        )

        def stable_v2_alone() -> bool:
            d = kube.get(kube_api, served, "Deployment", "gated") or {}
            st = d.get("status") or {}
            return (
                (st.get("stable") or {}).get("version") == 2
                and "canary" not in st
                and "previous" not in st
                and (kube.condition(d, "Ready") or {}).get("status") == "True"
            )

        poll(stable_v2_alone, timeout=300, what="v2 stable alone", interval=0.5)
        after = loop.share_over(50, "2")
    print(
        f"gate: held at {share:.1f}% of 300 (weight 30) — {message}; after approval "
        f"{after:.0f}% v2; {len(loop.versions)} requests, {len(loop.failures)} failed"
    )
    assert "spec.rollout.approval to {version: 2, step: 1}" in message
    assert held["phase"] == "Progressing" and held["waitingFor"] == "Approval"
    assert (progressing.get("status"), progressing.get("reason")) == ("True", "WaitingForApproval")
    assert abs(share - 30) <= 3, share
    assert after == 100.0
    assert loop.failures == [], loop.failures[:10]


def test_a_rollout_in_steps_gives_each_step_its_exact_share_then_completes(
    kube_api: client.ApiClient,
    served: str,
) -> None:
    doc = _deployment(
        "stepped",
        alias=None,
        version=1,
        replicas=1,
        rollout={
            "steps": [
                {"setWeight": 10, "pause": {"duration": "20s"}},
                {"setWeight": 50, "pause": {"duration": "20s"}},
            ],
            "analysis": {"interval": "3s", "minRequests": 5, "maxLatencyP99Seconds": 5},
        },
    )
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    kube.create(kube_api, served, doc)
    kube.wait_condition(
        kube_api, served, "Deployment", "stepped", "Ready", status="True", timeout=300
    )

    def at(step: int, weight: int) -> bool:
        dep = kube.get(kube_api, served, "Deployment", "stepped") or {}
        st = dep.get("status") or {}
        ro = st.get("rollout") or {}
        return (
            ro.get("phase") == "Progressing"
            and ro.get("step") == step
            and (st.get("canary") or {}).get("trafficPercent") == weight
        )

    url = f"{service_url(kube_api, served, 'stepped')}/v2/models/iris-classifier/infer"
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    shares: list[float] = []
    started = time.monotonic()
    with ClientLoop(url, body) as loop:
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "kubeml.io", "v1alpha1", served, "deployments", "stepped", {"spec": {"version": 2}}
        )
        for step, weight in ((0, 10), (1, 50)):
            poll(lambda s=step, w=weight: at(s, w) or None, timeout=300, what=f"{weight}%")
            shares.append(loop.share_over(300, "2"))
            # Still the same step when the window closed: the share is this step's.
            assert at(step, weight), f"step {step + 1} ended within the 300 requests"

        def done() -> bool:
            d = kube.get(kube_api, served, "Deployment", "stepped") or {}
            st = d.get("status") or {}
            return (
                (st.get("rollout") or {}).get("phase") == "Succeeded"
                and (st.get("stable") or {}).get("version") == 2
                and "canary" not in st
                and "previous" not in st
                and (kube.condition(d, "Ready") or {}).get("status") == "True"
            )

        poll(done, timeout=300, what="v2 stable", interval=0.5)
        took = time.monotonic() - started
        after = loop.share_over(50, "2")
    print(
        f"rollout in steps: {shares[0]:.1f}% at 10, {shares[1]:.1f}% at 50 (300 requests "
        f"each), then {after:.0f}% v2; {took:.0f}s from the spec change to v2 stable; "
        f"{len(loop.versions)} requests, {len(loop.failures)} failed"
    )
    assert abs(shares[0] - 10) <= 3 and abs(shares[1] - 50) <= 3, shares
    assert after == 100.0
    assert loop.failures == [], loop.failures[:10]

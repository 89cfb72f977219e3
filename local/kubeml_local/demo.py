"""`kubeml demo`: the whole lifecycle on the local control plane, from data to metrics.

What a user does by hand, with visible progress: `kubeml local up` (the cluster, with
KubeML installed by its Helm chart), `kubeml local namespace kubeml-demo`,
`kubectl apply -f examples/iris/`, wait for each stage, then predictions through the
model's Service and the server pods' metrics.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubeml.k8s import objects
from kubeml_local import bootstrap, cluster, install
from kubeml_local.bootstrap import api_client
from kubeml_local.config import SYSTEM_NAMESPACE
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll

NAMESPACE = "kubeml-demo"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "iris"
# One flower of each species from the iris data: setosa, virginica, versicolor.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
METRIC_PREFIXES = (
    "kubeml_requests_total",
    "kubeml_request_duration_seconds_count",
    "kubeml_predicted_rows_total",
    "kubeml_model_info",
    "kubeml_feature_drift_psi",
)
Echo = Callable[[str], None]


class Clock:
    def __init__(self, echo: Echo) -> None:
        self.start = time.monotonic()
        self.echo = echo

    def say(self, message: str) -> None:
        self.echo(f"[{time.monotonic() - self.start:6.1f}s] {message}")


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def _wait(
    api: client.ApiClient,
    clock: Clock,
    kind: str,
    name: str,
    type_: str,
    timeout: float,
) -> dict[str, Any]:
    """Wait for a condition to be True, printing each new reason on the way."""
    seen: list[str] = []

    def probe() -> dict[str, Any] | None:
        obj = objects.get(api, "kubeml.io/v1alpha1", kind, NAMESPACE, name)
        cond = _condition(obj, type_)
        line = f"{cond.get('reason')}: {cond.get('message')}" if cond else "waiting"
        if not seen or seen[-1] != line:
            seen.append(line)
            clock.say(f"  {kind} {name}: {line}")
        if cond.get("status") == "False" and type_ == "Succeeded":
            raise SystemExit(f"{kind} {name} failed: {line}")
        return obj if cond.get("status") == "True" else None

    what = f"{kind} {name} {type_} (operator log: kubectl logs -n {SYSTEM_NAMESPACE} deploy/kubeml)"
    return poll(probe, timeout=timeout, what=what, interval=1.0)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def _remove_previous_run(core: client.CoreV1Api, clock: Clock) -> None:
    """Each demo starts from nothing: a namespace left by an earlier run (whose pods
    died with that session) would show stale Ready statuses instead of the lifecycle."""

    def gone() -> bool | None:
        try:
            core.read_namespace(NAMESPACE)
        except client.ApiException as err:
            if err.status == 404:
                return True
            raise
        return None

    if gone():
        return
    clock.say(f"removing namespace {NAMESPACE} left by an earlier demo ...")
    core.delete_namespace(NAMESPACE)
    poll(gone, timeout=300, what=f"namespace {NAMESPACE} deleted")
    clock.say(f"namespace {NAMESPACE} removed")


def _ready_server_pods(core: client.CoreV1Api) -> list[Any]:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector="kubeml.io/deployment=iris")
    out = []
    for pod in pods.items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.status.pod_ip and pod.metadata.deletion_timestamp is None:
            out.append(pod)
    return sorted(out, key=lambda p: p.metadata.name)


def run(state_dir: Path | None, echo: Echo = print) -> None:
    clock = Clock(echo)
    layout = Layout.at(state_dir)
    clock.say(
        "kubeml local up: the local control plane (etcd, kube-apiserver, "
        "kube-controller-manager, node agent, S3) and KubeML's chart ..."
    )
    conn = cluster.up(layout.root, echo=lambda line: clock.say(f"  {line}"))
    install.install(conn, echo=lambda line: clock.say(f"  {line}"))
    api = api_client(conn.kubeconfig)
    core = client.CoreV1Api(api)

    _remove_previous_run(core, clock)
    bootstrap.apply_workload_namespace(api, NAMESPACE, conn.s3, restricted=True)
    clock.say(f"kubeml local namespace {NAMESPACE}: created, with its S3 Secret")
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            doc["metadata"]["namespace"] = NAMESPACE
            objects.apply(api, doc)
    clock.say(f"kubectl apply -f examples/iris/ -n {NAMESPACE}: done")

    ds = _wait(api, clock, "Dataset", "iris", "Ready", 300)
    clock.say(
        f"Dataset ready: version {ds['status']['shortVersion']}, "
        f"{ds['status']['rows']['total']} rows"
    )
    run_ = _wait(api, clock, "TrainingRun", "iris-rf", "Succeeded", 600)
    mv_name = run_["status"]["modelVersion"]
    clock.say(
        f"TrainingRun succeeded: {run_['status'].get('keyMetric')}, "
        f"best params {run_['status'].get('bestParams')}"
    )
    mv = _wait(api, clock, "ModelVersion", mv_name, "Ready", 120)
    clock.say(
        f"ModelVersion {mv_name} verified: sha256 {mv['spec']['artifact']['sha256'][:12]}"
        f", aliases {mv['spec'].get('aliases')}"
    )
    dep = _wait(api, clock, "Deployment", "iris", "Ready", 300)
    clock.say(
        f"Deployment ready: {dep['status']['readyReplicas']} replicas serving "
        f"v{dep['status']['stable']['version']}"
    )

    svc = core.read_namespaced_service("iris", NAMESPACE)
    base = f"http://{svc.spec.cluster_ip}"  # the Service's port 80
    model = mv["spec"]["model"]
    names = [c["name"] for c in mv["spec"]["signature"]["inputs"]]
    v2 = poll(
        lambda: _post(
            f"{base}/v2/models/{model}/infer",
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
        ),
        timeout=60,
        what=f"a prediction through Service iris at {base}",
    )
    v1 = _post(f"{base}/v1/models/{model}:predict", {"instances": ROWS})
    echo("")
    echo(f"predictions through Service {NAMESPACE}/iris at {base}:")
    for row, pred in zip(ROWS, v2["outputs"][0]["data"], strict=False):
        echo(f"  {row} -> class {pred}")
    echo(f"  KServe v1 answer: {v1['predictions']}")
    echo("")
    pods = _ready_server_pods(core)
    echo("metrics scraped from the server pods (what Prometheus scrapes):")
    for pod in pods:
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=10) as r:
            text = r.read().decode()
        echo(f"  pod {pod.metadata.name}:")
        for line in text.splitlines():
            if line.startswith(METRIC_PREFIXES):
                echo(f"  {line}")
    echo("")
    echo(f"done in {time.monotonic() - clock.start:.0f}s. Look around:")
    echo('  eval "$(.venv/bin/kubeml local env)"        # KUBECONFIG, PATH to kubectl, S3')
    echo(f"  kubectl get kubeml -n {NAMESPACE}")
    echo(f"  kubectl get pods -n {NAMESPACE} -o wide")
    echo(f"  curl -s {base}/v2/models/{model}")
    if pods:
        echo(f"  kubectl logs -n {NAMESPACE} {pods[0].metadata.name}")
    echo(f"  kubectl logs -n {SYSTEM_NAMESPACE} deploy/kubeml   # the operator")
    echo(f"  .venv/bin/kubeml lineage deployment/iris -n {NAMESPACE}   # data -> run -> version")
    echo(f"  .venv/bin/kubeml promote {model} <version> --alias champion -n {NAMESPACE}")
    echo("stop everything: .venv/bin/kubeml local down")

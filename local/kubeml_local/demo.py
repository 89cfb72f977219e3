"""`kubeml demo`: the whole lifecycle on the local control plane, from data to metrics.

Starts (or reuses) the local cluster, runs the operator, applies examples/iris,
waits for each stage with visible progress, then sends predictions to the
model server and prints them with the server's metrics.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubeml.k8s import objects
from kubeml_local import cluster, procs
from kubeml_local.bootstrap import api_client
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
    layout: Layout | None = None,
) -> dict[str, Any]:
    """Wait for a condition to be True, printing each new reason on the way."""
    seen: list[str] = []

    def alive() -> None:
        if layout is not None and not _operator_running(layout):
            raise SystemExit(f"the operator exited; see {layout.logs / 'operator.log'}")

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

    return poll(probe, timeout=timeout, what=f"{kind} {name} {type_}", interval=1.0, guard=alive)


def _start_operator(layout: Layout, conn: cluster.Connection) -> int:
    # Started with the cluster's process marker, so `kubeml local down` stops it too.
    env = {
        **conn.env(),
        "KUBEML_BIND_ADDRESS": "127.0.0.1",
        # Explicit free ports: kopf reads port 0 in its liveness URL as port 80.
        "KUBEML_HEALTH_PORT": str(_free_port()),
        "KUBEML_METRICS_PORT": str(_free_port()),
    }
    # This interpreter's kubeml, not whatever is on PATH (the venv need not be active).
    proc = procs.spawn(
        [sys.executable, "-m", "kubeml.cli", "operator", "run"],
        log=layout.logs / "operator.log",
        root=layout.root,
        extra_env=env,
    )
    (layout.root / "operator.pid").write_text(str(proc.pid))
    return proc.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _operator_running(layout: Layout) -> bool:
    pid_file = layout.root / "operator.pid"
    return pid_file.exists() and procs.alive(int(pid_file.read_text()))


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


def _ready_server_pod(core: client.CoreV1Api) -> Any:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector="kubeml.io/deployment=iris")
    for pod in pods.items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.status.pod_ip and pod.metadata.deletion_timestamp is None:
            return pod
    return None


def run(state_dir: Path | None, echo: Echo = print) -> None:
    clock = Clock(echo)
    layout = Layout.at(state_dir)
    clock.say(
        "starting the local control plane (etcd, kube-apiserver, "
        "kube-controller-manager, node agent, S3) ..."
    )
    conn = cluster.up(layout.root, echo=lambda line: clock.say(f"  {line}"))
    api = api_client(conn.kubeconfig)
    core = client.CoreV1Api(api)
    if _operator_running(layout):
        clock.say("operator already running")
    else:
        pid = _start_operator(layout, conn)
        clock.say(f"operator started (pid {pid}, log {layout.logs / 'operator.log'})")

    _remove_previous_run(core, clock)
    try:
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted"}
                )
            )
        )
    except client.ApiException as err:
        if err.status != 409:
            raise
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="kubeml-s3"),
        string_data={
            "AWS_ACCESS_KEY_ID": conn.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": conn.s3.secret_key,
        },
    )
    try:
        core.create_namespaced_secret(NAMESPACE, secret)
    except client.ApiException as err:
        if err.status != 409:
            raise
    for name in ("dataset.yaml", "trainingrun.yaml", "deployment.yaml"):
        doc = yaml.safe_load((EXAMPLES / name).read_text())
        doc["metadata"]["namespace"] = NAMESPACE
        objects.apply(api, doc)
        clock.say(f"applied examples/iris/{name}")

    ds = _wait(api, clock, "Dataset", "iris", "Ready", 300, layout)
    clock.say(
        f"Dataset ready: version {ds['status']['shortVersion']}, "
        f"{ds['status']['rows']['total']} rows"
    )
    run_ = _wait(api, clock, "TrainingRun", "iris-rf", "Succeeded", 600, layout)
    mv_name = run_["status"]["modelVersion"]
    clock.say(
        f"TrainingRun succeeded: {run_['status'].get('keyMetric')}, "
        f"best params {run_['status'].get('bestParams')}"
    )
    mv = _wait(api, clock, "ModelVersion", mv_name, "Ready", 120, layout)
    clock.say(
        f"ModelVersion {mv_name} verified: sha256 {mv['spec']['artifact']['sha256'][:12]}"
        f", aliases {mv['spec'].get('aliases')}"
    )
    dep = _wait(api, clock, "Deployment", "iris", "Ready", 300, layout)
    clock.say(
        f"Deployment ready: {dep['status']['readyReplicas']} replicas serving "
        f"v{dep['status']['stable']['version']}"
    )

    pod = poll(lambda: _ready_server_pod(core), timeout=120, what="a ready server pod")
    model = mv["spec"]["model"]
    base = f"http://{pod.status.pod_ip}:8080"
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
        what=f"a prediction from {base}",
    )
    v1 = _post(f"{base}/v1/models/{model}:predict", {"instances": ROWS})
    echo("")
    echo(f"predictions from {base} (pod {pod.metadata.name}):")
    for row, pred in zip(ROWS, v2["outputs"][0]["data"], strict=False):
        echo(f"  {row} -> class {pred}")
    echo(f"  KServe v1 answer: {v1['predictions']}")
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    echo("")
    echo("metrics scraped from the server:")
    for line in text.splitlines():
        if line.startswith(METRIC_PREFIXES):
            echo(f"  {line}")
    echo("")
    echo(f"done in {time.monotonic() - clock.start:.0f}s. Look around:")
    echo('  eval "$(.venv/bin/kubeml local env)"        # KUBECONFIG, PATH to kubectl, S3')
    echo(f"  kubectl get kubeml -n {NAMESPACE}")
    echo(f"  kubectl get pods -n {NAMESPACE} -o wide")
    echo(f"  curl -s {base}/v2/models/{model}")
    echo(f"  .venv/bin/kubeml local logs {pod.metadata.name} -n {NAMESPACE}")
    echo(f"  .venv/bin/kubeml promote {model} <version> --alias champion -n {NAMESPACE}")
    echo("stop everything: .venv/bin/kubeml local down")

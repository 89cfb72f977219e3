"""The local cluster as a place to work: `kubectl logs` through the kubelet API, and a
node that restarts what crashed.

One private cluster for the module (the restart test kills its components), with the
operator, a trained iris model and a Deployment serving it. `kubectl logs` goes the real
way: kubectl -> apiserver -> the node agent's kubelet API over TLS.

``KUBEML_TEST_REUSE_CLUSTER=<state-dir>`` runs on a cluster started beforehand instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import cluster, readiness
from kubeml_local.bootstrap import api_client
from kubeml_local.config import read_config, read_status
from kubeml_local.layout import Layout
from kubeml_local.pki import Pki
from kubeml_local.readiness import poll
from kubeml_local.s3 import client as s3_client_for
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.e2e
REUSE_ENV = "KUBEML_TEST_REUSE_CLUSTER"
IRIS = ROOT / "examples" / "iris"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
RUN = "iris-logs"


def _echo(line: str) -> None:
    print(line, flush=True)


@dataclass
class Env:
    conn: cluster.Connection
    layout: Layout
    api: client.ApiClient
    kubectl_bin: str
    operator: OperatorProcess
    ns: str
    timings: dict[str, float] = field(default_factory=dict)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.conn.kubeconfig), "-n", self.ns, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def follow(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                *(self.kubectl_bin, "--kubeconfig", str(self.conn.kubeconfig), "-n", self.ns),
                *("logs", "-f", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reuse = os.environ.get(REUSE_ENV)
    state = Path(reuse) if reuse else tmp_path_factory.mktemp("node")
    conn = cluster.up(state, echo=_echo)
    layout = Layout.at(state)
    cfg = read_config(layout.cluster_json)
    assert cfg is not None
    api = api_client(conn.kubeconfig)
    operator = OperatorProcess(conn.kubeconfig, conn.s3.env(), tmp_path_factory.mktemp("op"))
    operator.start()
    ns = f"t-node-{uuid.uuid4().hex[:6]}"
    kube.new_namespace(api, ns, kube.RESTRICTED)
    kube.add_s3_secret(api, ns, conn.s3.env())
    try:
        yield Env(conn, layout, api, str(Path(cfg.bin_dir) / "kubectl"), operator, ns)
    finally:
        operator.stop()
        client.CoreV1Api(api).delete_namespace(ns, propagation_policy="Background")
        api.close()
        if not reuse:
            cluster.down(state, echo=_echo)


@pytest.fixture(scope="module")
def trained(env: Env) -> str:
    """The training Job's name once it exists (it runs in the background)."""
    kube.create(env.api, env.ns, load_yaml(IRIS / "dataset.yaml"))
    kube.wait_condition(env.api, env.ns, "Dataset", "iris", "Ready", status="True", timeout=300)
    run = load_yaml(IRIS / "trainingrun.yaml")
    run["metadata"]["name"] = RUN
    run["spec"]["search"] = None
    kube.create(env.api, env.ns, run)
    jobs = poll(
        lambda: kube.jobs(env.api, env.ns, f"kubeml.io/owner-name={RUN}") or None,
        timeout=120,
        what="the training Job",
    )
    name: str = jobs[0]["metadata"]["name"]
    return name


@pytest.fixture(scope="module")
def served(env: Env, trained: str) -> str:
    kube.wait_condition(
        env.api, env.ns, "TrainingRun", RUN, "Succeeded", status="True", timeout=300
    )
    deployment = load_yaml(IRIS / "deployment.yaml")
    deployment["spec"]["replicas"] = 1
    kube.create(env.api, env.ns, deployment)
    kube.wait_condition(env.api, env.ns, "Deployment", "iris", "Ready", status="True", timeout=300)
    return "iris"


def server_pods(env: Env) -> list[client.V1Pod]:
    pods = client.CoreV1Api(env.api).list_namespaced_pod(
        env.ns, label_selector="kubeml.io/deployment=iris"
    )
    return [
        p
        for p in pods.items
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def predict(ip: str, timeout: float = 2.0) -> bool:
    req = urllib.request.Request(
        f"http://{ip}:8080/v1/models/iris-classifier:predict",
        data=json.dumps({"instances": ROWS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200 and len(json.loads(resp.read())["predictions"]) == 2
    except (OSError, urllib.error.URLError, ValueError):
        return False


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Lines of a running `kubectl logs -f` until one contains ``needle`` (reader thread,
    so the deadline holds even when no line comes)."""
    seen: list[str] = []
    found = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), f"{needle!r} not in `kubectl logs -f` output: {''.join(seen)}"
    return "".join(seen)


# -- kubectl logs ---------------------------------------------------------------------------
def _started(env: Env, job: str) -> bool:
    """The Job's pod has a container that runs or ran (kubectl logs refuses a waiting one)."""
    pods = client.CoreV1Api(env.api).list_namespaced_pod(env.ns, label_selector=f"job-name={job}")
    states = [s.state for p in pods.items for s in p.status.container_statuses or []]
    return any(s.running or s.terminated for s in states)


def test_kubectl_logs_of_a_training_job(env: Env, trained: str) -> None:
    poll(lambda: _started(env, trained), timeout=120, what="the training container started")
    # Following from (about) its start until the training container ends by itself.
    proc = env.follow(f"job/{trained}")
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "fitting random-forest-classifier" in out, out
    assert "artifact s3://" in out, out
    # Once it has finished, a plain `kubectl logs` shows the same, and --tail the end.
    plain = env.kubectl("logs", f"job/{trained}").stdout
    assert plain == out
    last = env.kubectl("logs", f"job/{trained}", "--tail=1").stdout
    assert last == out.splitlines(keepends=True)[-1]
    assert env.kubectl("logs", f"job/{trained}", "--limit-bytes=7").stdout == out[:7]


def test_kubectl_logs_of_a_model_server(env: Env, served: str) -> None:
    (pod,) = poll(lambda: server_pods(env) or None, timeout=60, what="a ready server pod")
    name = pod.metadata.name
    out = env.kubectl("logs", name).stdout
    assert "serving model iris-classifier version 1" in out, out
    assert "verified" in out, out
    # -f streams while the server runs, shows its shutdown, and ends when it exits.
    proc = env.follow(name)
    try:
        read_until(proc, "model ready", timeout=30)
        assert proc.poll() is None, "the stream ended while the server was running"
        client.CoreV1Api(env.api).delete_namespaced_pod(name, env.ns)
        rest, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert "shutting down" in rest, rest
    assert proc.returncode == 0, rest
    poll(lambda: server_pods(env) or None, timeout=120, what="the replacement server pod")


def _crasher(name: str) -> dict[str, Any]:
    """Two containers; `flaky` prints a token unique to each run and exits 1 after 2 s."""
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "flaky",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo run-$(date +%s%N); sleep 2; exit 1"],
                    "securityContext": restricted,
                },
                {
                    "name": "steady",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo steady-here; exec sleep 3600"],
                    "securityContext": restricted,
                },
            ]
        },
    }


def test_previous_and_container_flags(env: Env) -> None:
    core = client.CoreV1Api(env.api)
    core.create_namespaced_pod(env.ns, _crasher("crasher"))

    def first_run() -> str | None:
        out = env.kubectl("logs", "crasher", "-c", "flaky", check=False)
        return out.stdout if out.returncode == 0 and "run-" in out.stdout else None

    first = poll(first_run, timeout=60, what="the first run's log")
    # -c picks the container; without it a two-container pod is ambiguous to kubectl.
    assert env.kubectl("logs", "crasher", "-c", "steady").stdout == "steady-here\n"
    none_yet = env.kubectl("logs", "crasher", "-c", "flaky", "--previous", check=False)
    assert none_yet.returncode != 0
    expected = 'previous terminated container "flaky" in pod "crasher" not found'
    assert expected in none_yet.stderr, none_yet.stderr

    def restarted() -> bool:
        pod = core.read_namespaced_pod("crasher", env.ns)
        statuses = {s.name: s for s in pod.status.container_statuses or []}
        return statuses["flaky"].restart_count >= 1 and bool(statuses["flaky"].state.running)

    poll(restarted, timeout=60, what="flaky restarted")
    previous = env.kubectl("logs", "crasher", "-c", "flaky", "--previous").stdout
    assert previous == first
    current = poll(first_run, timeout=30, what="the second run's log")
    assert current.startswith("run-") and current != first
    # `kubeml local logs` still reads the current run's file.
    local = subprocess.run(
        [
            *(sys.executable, "-m", "kubeml.cli", "local", "logs"),
            *("--state-dir", str(env.layout.root), "-n", env.ns, "crasher", "-c", "steady"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert local.stdout == "steady-here\n"
    core.delete_namespaced_pod("crasher", env.ns, grace_period_seconds=0)


def _kubelet_get(env: Env, cert: tuple[Path, Path] | None, path: str) -> int:
    """Status of a direct GET on the node's kubelet API with the given client cert."""
    import ssl

    node = client.CoreV1Api(env.api).list_node().items[0]
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    (ip,) = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    ctx = ssl.create_default_context(cafile=str(Pki(env.layout.pki).ca_cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with urllib.request.urlopen(f"https://{ip}:{port}{path}", context=ctx, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_only_the_apiservers_client_certificate_is_served(env: Env, tmp_path: Path) -> None:
    pki = Pki(env.layout.pki)
    path = f"/containerLogs/{env.ns}/nobody/main"
    assert _kubelet_get(env, pki.apiserver_kubelet_client, path) == 404  # allowed, no pod
    assert _kubelet_get(env, None, path) == 401
    # Certificates of the cluster CA, but not the apiserver's: the admin's, the node's.
    assert _kubelet_get(env, pki.client("admin"), path) == 403
    assert _kubelet_get(env, pki.client("agent"), path) == 403
    # Same subject as the apiserver's, self-signed: refused in the TLS handshake.
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-keyout", str(key), "-out", str(crt)),
            *("-subj", "/O=kubeml:kubelet-api/CN=kube-apiserver-kubelet-client"),
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises((urllib.error.URLError, OSError)):
        _kubelet_get(env, (crt, key), path)


# -- restarts -------------------------------------------------------------------------------
class Prober:
    """Predicts against one server pod every 50 ms in a thread; counts failures."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.ok = 0
        self.failed: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if predict(self.ip):
                self.ok += 1
            else:
                self.failed.append(time.monotonic())
            self._stop.wait(0.05)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _kill_and_wait(env: Env, component: str, back: Callable[[], object]) -> float:
    st = read_status(env.layout.status_json)
    assert st is not None
    before = st.components[component]
    t0 = time.monotonic()
    os.kill(before.pid, signal.SIGKILL)

    def restarted() -> bool:
        now = read_status(env.layout.status_json)
        return now is not None and now.components[component].restarts == before.restarts + 1

    poll(restarted, timeout=60, what=f"{component} restarted by the supervisor")
    poll(back, timeout=90, what=f"{component} answering again")
    return time.monotonic() - t0


def test_crashed_components_come_back_and_the_model_keeps_answering(env: Env, served: str) -> None:
    (pod,) = poll(lambda: server_pods(env) or None, timeout=120, what="a ready server pod")
    assert predict(pod.status.pod_ip)
    s3 = s3_client_for(env.conn.s3)
    ctx = readiness.client_context(Pki(env.layout.pki))
    with Prober(pod.status.pod_ip) as prober:
        s3_back = _kill_and_wait(
            env, "seaweedfs", lambda: s3.head_bucket(Bucket=env.conn.s3.bucket) or True
        )
        api_back = _kill_and_wait(
            env, "kube-apiserver", lambda: readiness.apiserver_ready(env.conn.apiserver, ctx)
        )
        # The operator reconnected: a change made now is reconciled.
        kube_objs = client.CustomObjectsApi(env.api)
        kube_objs.patch_namespaced_custom_object(
            "kubeml.io", "v1alpha1", env.ns, "deployments", "iris", {"spec": {"replicas": 2}}
        )

        def scaled() -> bool:
            apps = client.AppsV1Api(env.api).list_namespaced_deployment(
                env.ns, label_selector="kubeml.io/deployment=iris"
            )
            return any(d.spec.replicas == 2 for d in apps.items)

        t0 = time.monotonic()
        poll(scaled, timeout=120, what="the operator to scale the server after the restart")
        reconciled = time.monotonic() - t0
    print(
        f"\nSeaweedFS back in {s3_back:.1f}s, kube-apiserver back in {api_back:.1f}s, "
        f"change reconciled {reconciled:.1f}s after; predictions: {prober.ok} ok, "
        f"{len(prober.failed)} failed"
    )
    assert prober.ok > 20
    assert not prober.failed
    report = cluster.status(env.layout.root)
    assert report.healthy, report.lines()
    assert report.restarts["seaweedfs"] >= 1 and report.restarts["kube-apiserver"] >= 1
    assert report.restarts["etcd"] == 0 and report.restarts["node-agent"] == 0


def test_a_killed_node_agent_comes_back_and_runs_its_pods_again(env: Env, served: str) -> None:
    """Pods do not outlive their agent: a new one could not learn their exit codes (they
    are not its children), so it kills them and runs the containers again, reporting the
    lost run as ContainerStatusUnknown like a kubelet that lost its runtime."""
    core = client.CoreV1Api(env.api)
    pod = _crasher("steady")
    pod["spec"]["containers"] = pod["spec"]["containers"][1:]
    core.create_namespaced_pod(env.ns, pod)

    def running_since() -> str | None:
        status = core.read_namespaced_pod("steady", env.ns).status
        (c,) = status.container_statuses or [None]
        return str(c.restart_count) if c is not None and c.state.running else None

    assert poll(running_since, timeout=60, what="steady running") == "0"
    _kill_and_wait(env, "node-agent", lambda: running_since() == "1")
    (c,) = core.read_namespaced_pod("steady", env.ns).status.container_statuses
    assert c.last_state.terminated.reason == "ContainerStatusUnknown"
    assert env.kubectl("logs", "steady", "--previous").stdout == "steady-here\n"
    assert env.kubectl("logs", "steady").stdout == "steady-here\n"
    servers = poll(lambda: server_pods(env) or None, timeout=120, what="server ready again")
    ip = servers[0].status.pod_ip
    assert poll(lambda: predict(ip), timeout=60, what="predictions again")
    report = cluster.status(env.layout.root)
    assert report.healthy and report.restarts["node-agent"] >= 1, report.lines()

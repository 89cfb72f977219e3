"""Pods run from the real images: `kubeml local up --images`, the chart, the iris example.

The way a user runs it: the images built here (`kubeml local images`, cached by content),
a cluster started with `kubeml local up --images` (which installs the chart, so the
operator is the chart's pod from the operator image), then `kubectl apply -f
examples/iris/`. While that runs, a watcher reads /proc for every process the cluster's
node agent started and records where its root filesystem is and which uid it runs as: each
pod's process must be inside its image (``/proc/<pid>/root`` is an image's root, with
/opt/kubeml in it, not the host's /) as uid 65532. Then `helm test` passes against that
install, and a pod whose image was never built shows ErrImagePull naming the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import cluster, images, install
from kubeml_local.agent.agent import instance_marker
from kubeml_local.agent.runtime import AGENT_MARKER_ENV
from kubeml_local.bootstrap import api_client
from kubeml_local.config import SYSTEM_NAMESPACE, read_config
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import ROOT

pytestmark = pytest.mark.e2e
IRIS = ROOT / "examples" / "iris"
KUBEML = str(Path(sys.executable).with_name("kubeml"))
POD_UID = 65532
NEVER_BUILT = "ghcr.io/kubeml/never-built:0.0.0"
RUNTIME_IMAGE = f"ghcr.io/kubeml/runtime:{images.version(ROOT)}"


@dataclass
class Seen:
    """One observation of a pod process: its root (as the host sees it) and real uid."""

    pid: int
    root: str
    uid: int
    cmd: str
    # /opt/kubeml/bin/kubeml as the process sees it (read through /proc/<pid>/root while
    # it lives: the image's layer is removed once the container ends).
    has_kubeml: bool


@dataclass
class Watcher:
    """Polls /proc for processes carrying this agent's marker (the agent sets it in every
    pod process), keyed by namespace/pod."""

    marker: str
    seen: dict[str, list[Seen]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def scan_once(self) -> None:
        prefix = f"{AGENT_MARKER_ENV}={self.marker}:".encode()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
                if not any(v.startswith(prefix) for v in environ):
                    continue
                values = dict(v.decode(errors="replace").partition("=")[::2] for v in environ)
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                root = os.readlink(f"/proc/{entry.name}/root")
                has_kubeml = os.path.exists(f"/proc/{entry.name}/root/opt/kubeml/bin/kubeml")
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue  # gone meanwhile
            uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
            key = f"{values.get('KUBEML_POD_NAMESPACE')}/{values.get('KUBEML_POD_NAME')}"
            self.seen.setdefault(key, []).append(
                Seen(int(entry.name), root, uid, cmd.decode(errors="replace"), has_kubeml)
            )

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan_once()
            self.stop.wait(0.1)


@dataclass
class Env:
    state: Path
    conn: cluster.Connection
    api: client.ApiClient
    kubectl_bin: str
    watcher: Watcher

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.conn.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def _run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(argv)} failed:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # Cached by content: after `make images-local` (CI runs it) this is a check, not a build.
    _run(KUBEML, "local", "images", timeout=3600)
    state = tmp_path_factory.mktemp("images")
    _run(KUBEML, "local", "up", "--images", "--state-dir", str(state), timeout=600)
    try:
        conn = cluster.connection(state)
        cfg = read_config(Layout.at(state).cluster_json)
        assert cfg is not None and cfg.images
        watcher = Watcher(instance_marker(Layout.at(state).root, cfg.node_name))
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        api = api_client(conn.kubeconfig)
        try:
            yield Env(state, conn, api, str(Path(cfg.bin_dir) / "kubectl"), watcher)
        finally:
            watcher.stop.set()
            thread.join(5)
            api.close()
    finally:
        _run(KUBEML, "local", "down", "--state-dir", str(state), timeout=300)


def _pods(api: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace).items)


def _predict(ip: str) -> list[Any] | None:
    req = urllib.request.Request(
        f"http://{ip}/v1/models/iris-classifier:predict",
        data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            predictions: list[Any] = json.loads(resp.read())["predictions"]
            return predictions
    except OSError:
        return None


def _in_image(seen: list[Seen]) -> list[Seen]:
    """Observations of the container process itself (the launcher, which becomes it by
    exec, is briefly seen on the host as root before it enters the image)."""
    return [s for s in seen if "kubeml_local.agent.enter" not in s.cmd]


def test_iris_runs_inside_the_images(env: Env) -> None:
    env.kubectl("apply", "-n", "default", "-f", str(IRIS))
    kube.wait_condition(
        env.api, "default", "Deployment", "iris", "Ready", status="True", timeout=600
    )
    svc = client.CoreV1Api(env.api).read_namespaced_service("iris", "default")
    port = svc.spec.ports[0].port
    predictions = poll(
        lambda: _predict(f"{svc.spec.cluster_ip}:{port}"), timeout=60, what="a prediction"
    )
    assert len(predictions) == 2

    pods = {
        f"{ns}/{p.metadata.name}": p
        for ns in ("default", SYSTEM_NAMESPACE)
        for p in _pods(env.api, ns)
        if not (p.metadata.annotations or {}).get("helm.sh/hook")  # helm test's: below
    }
    kinds = {name.split("/")[1].split("-")[1] for name in pods if name.startswith("default/")}
    assert {"prep", "rf", "stable"} <= kinds, sorted(pods)
    assert any(name.startswith(f"{SYSTEM_NAMESPACE}/") for name in pods), sorted(pods)
    for name, pod in pods.items():
        images = {c.image for c in pod.spec.containers}
        seen = _in_image(env.watcher.seen.get(name, []))
        assert seen, f"no process of pod {name} was seen (seen: {sorted(env.watcher.seen)})"
        for s in seen:
            assert s.root != "/", f"{name} ({images}) ran on the host's root: {s}"
            assert s.has_kubeml, f"{name}: {s.root} is not a KubeML image's root"
            assert s.uid == POD_UID, f"{name} ran as uid {s.uid}: {s}"
    # The operator came from the operator image, the rest from the runtime image.
    operator = next(p for n, p in pods.items() if n.startswith(f"{SYSTEM_NAMESPACE}/"))
    assert operator.spec.containers[0].image.startswith("ghcr.io/kubeml/operator:")
    assert all(
        p.spec.containers[0].image.startswith("ghcr.io/kubeml/runtime:")
        for n, p in pods.items()
        if n.startswith("default/")
    )


def test_helm_test_passes_with_the_operator_image(env: Env) -> None:
    out = subprocess.run(
        [
            str(install.helm_binary()),
            "test",
            install.RELEASE,
            "-n",
            SYSTEM_NAMESPACE,
            "--kubeconfig",
            str(env.conn.kubeconfig),
            "--timeout",
            "5m",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Phase:          Succeeded" in out.stdout, out.stdout
    hooks = [
        f"{SYSTEM_NAMESPACE}/{p.metadata.name}"
        for p in _pods(env.api, SYSTEM_NAMESPACE)
        if (p.metadata.annotations or {}).get("helm.sh/hook") == "test"
    ]
    assert hooks
    for name in hooks:
        seen = _in_image(env.watcher.seen.get(name, []))
        assert seen and all(s.root != "/" and s.uid == POD_UID for s in seen), (name, seen)


def test_an_image_never_built_is_err_image_pull(env: Env) -> None:
    name = f"never-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": NEVER_BUILT,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    core = client.CoreV1Api(env.api)
    core.create_namespaced_pod("default", pod)
    reasons: list[str] = []

    def pull_failed() -> dict[str, Any] | None:
        statuses = core.read_namespaced_pod(name, "default").status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting is None:
            return None
        reasons.append(waiting.reason)
        if waiting.reason == "ErrImagePull":
            return {"reason": waiting.reason, "message": waiting.message}
        return None

    try:
        found = poll(pull_failed, timeout=60, interval=0.1, what="ErrImagePull")
        assert NEVER_BUILT in found["message"], found

        # Between attempts: ImagePullBackOff; never a start on the host's files instead.
        def backed_off() -> bool:
            pull_failed()
            return "ImagePullBackOff" in reasons

        poll(backed_off, timeout=60, interval=0.1, what="ImagePullBackOff")
        assert set(reasons) <= {"ContainerCreating", "ErrImagePull", "ImagePullBackOff"}, reasons
        assert f"default/{name}" not in env.watcher.seen
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def _restricted(container: dict[str, Any]) -> dict[str, Any]:
    return {
        **container,
        "image": RUNTIME_IMAGE,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _pod(name: str, containers: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": policy,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [_restricted(c) for c in containers],
        },
    }


def test_exit_codes_memory_limits_and_exec_probes_inside_the_image(env: Env) -> None:
    """What the agent does for host processes holds inside images: the exit code, an OOM
    kill at the memory limit, and an exec probe run in the container's own filesystem (the
    file it checks exists only in the pod's /tmp volume, not on the host)."""
    core = client.CoreV1Api(env.api)
    marker = f"ready-{uuid.uuid4().hex[:8]}"
    ends = f"ends-{uuid.uuid4().hex[:6]}"
    probed = f"probed-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(
        "default",
        _pod(
            ends,
            [
                {"name": "exits", "command": ["python", "-c", "import sys; sys.exit(3)"]},
                {
                    "name": "hog",
                    "command": ["python", "-c", 'b = b"x" * (400 << 20); input()'],
                    "resources": {"limits": {"memory": "128Mi"}},
                },
                {"name": "root-ro", "command": ["sh", "-c", "touch /etc/x"]},
            ],
            "Never",
        ),
    )
    core.create_namespaced_pod(
        "default",
        _pod(
            probed,
            [
                {
                    "name": "main",
                    "command": ["sh", "-c", f"touch /tmp/{marker}; exec sleep 3600"],
                    "readinessProbe": {
                        "exec": {"command": ["test", "-f", f"/tmp/{marker}"]},
                        "periodSeconds": 1,
                    },
                }
            ],
            "Always",
        ),
    )
    try:

        def terminated() -> dict[str, Any] | None:
            statuses = core.read_namespaced_pod(ends, "default").status.container_statuses or []
            done = {s.name: s.state.terminated for s in statuses if s.state.terminated}
            return done if len(done) == 3 else None

        done = poll(terminated, timeout=120, what=f"pod {ends}'s containers ended")
        assert done["exits"].exit_code == 3, done["exits"]
        assert done["hog"].reason == "OOMKilled", done["hog"]
        assert done["root-ro"].exit_code != 0, done["root-ro"]  # read-only root filesystem
        assert not Path("/tmp", marker).exists()

        def ready() -> bool:
            conditions = core.read_namespaced_pod(probed, "default").status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        poll(ready, timeout=120, what=f"pod {probed} Ready by its exec probe")
        assert not Path("/tmp", marker).exists()  # the probe looked inside the pod, not here
    finally:
        for name in (ends, probed):
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)

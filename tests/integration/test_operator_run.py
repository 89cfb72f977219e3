"""`kubeml operator run` on the local cluster with nothing but `kubeml local env`.

Pods of the local cluster listen on their own 127.x addresses of the host, model servers on
port 8080, the operator's default health port. Its defaults must not collide with them,
and a port that is really taken must be one line naming the setting, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml.settings import Settings
from kubeml_local import cluster
from kubeml_local.readiness import poll

pytestmark = pytest.mark.integration

PORT = Settings().health_port


def listening_pod(name: str) -> dict[str, Any]:
    """A pod that listens on its own address, on the operator's default health port."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "web",
                    "image": "python:3.11",
                    "command": [sys.executable, "-m", "http.server", str(PORT)],
                    "args": ["--bind", "$(POD_IP)", "--directory", "/tmp"],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"containerPort": PORT, "name": "http"}],
                    "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "runAsUser": 65534,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def ready_ip(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    pod = core.read_namespaced_pod(name, namespace)
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    return str(pod.status.pod_ip) if ready and pod.status.pod_ip else None


def local_env(conn: cluster.Connection) -> dict[str, str]:
    """What `eval "$(kubeml local env)"` gives a shell, on top of a plain environment."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEML_", "AWS_"))}
    return {**keep, **conn.env()}


def operator_run(env: dict[str, str], namespace: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubeml.cli", "operator", "run", "--namespace", namespace],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def healthy() -> bool | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2) as resp:
            return resp.status == 200 or None
    except OSError:
        return None


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=30)


def test_operator_run_with_local_env_only_starts_beside_pods_on_its_port(
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    stop_after: list[subprocess.Popen[bytes]],
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, listening_pod("web"))
    pod_ip = poll(lambda: ready_ip(core, namespace, "web"), timeout=60, what="pod web ready")
    assert pod_ip != "127.0.0.1"

    env = local_env(local_cluster)
    first = operator_run(env, namespace, tmp_path / "first.log")
    stop_after.append(first)

    def up() -> bool | None:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        return healthy()

    poll(up, timeout=90, what=f"the operator's /healthz on 127.0.0.1:{PORT}")
    # The pod still answers on its own address: nothing was taken from it.
    with urllib.request.urlopen(f"http://{pod_ip}:{PORT}/", timeout=5) as resp:
        assert resp.status == 200

    # A second operator finds the port taken: one line naming the setting, exit 1.
    second = subprocess.run(
        [sys.executable, "-m", "kubeml.cli", "operator", "run", "--namespace", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert "Traceback" not in second.stderr
    assert len(lines) == 1, second.stderr
    assert f"127.0.0.1:{PORT}" in lines[0] and "KUBEML_HEALTH_PORT" in lines[0]
    assert first.poll() is None

"""`kubeml local namespace NAME`: a namespace ready for KubeML workloads in one command."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid

import pytest
from kubernetes import client

from kubeml_local import cluster

pytestmark = pytest.mark.integration


def local_namespace(conn: cluster.Connection, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeml.cli", "local", "namespace", "--state-dir",
         str(conn.state_dir), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_namespace_gets_the_s3_secret_and_restricted_pod_security(
    local_cluster: cluster.Connection, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    name = f"team-{uuid.uuid4().hex[:6]}"
    try:
        for _ in range(2):  # the second run converges: nothing to create, no error
            out = local_namespace(local_cluster, name)
            assert out.returncode == 0, out.stderr
            assert f"namespace {name} ready" in out.stdout
        ns = core.read_namespace(name)
        assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        secret = core.read_namespaced_secret("kubeml-s3", name)
        keys = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        assert keys == {
            "AWS_ACCESS_KEY_ID": local_cluster.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": local_cluster.s3.secret_key,
        }
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def test_default_is_ready_out_of_the_box(
    local_cluster: cluster.Connection, kube_api: client.ApiClient
) -> None:
    secret = client.CoreV1Api(kube_api).read_namespaced_secret("kubeml-s3", "default")
    assert set(secret.data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_an_invalid_name_is_one_line_naming_it(local_cluster: cluster.Connection) -> None:
    out = local_namespace(local_cluster, "Not_A_Name")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "Not_A_Name" in out.stderr and "HTTP 422" in out.stderr

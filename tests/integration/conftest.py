"""Fixtures for tests against the real local control plane and S3 server.

The session starts one fresh cluster in a temp state dir (about 15-30 s when the binaries
are built) and stops it at the end. To iterate faster, start one yourself and point the
tests at it; it is then left running::

    python -c "from kubeml_local.cli import local; local()" up --state-dir /tmp/kc
    KUBEML_TEST_REUSE_CLUSTER=/tmp/kc pytest -m integration tests/integration
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import cluster
from kubeml_local.bootstrap import api_client, default_crds_dir
from kubeml_local.config import read_config
from kubeml_local.layout import Layout
from kubeml_local.s3 import S3Credentials
from kubeml_local.s3 import client as s3_client_for
from tests.support import kube
from tests.support.binaries import built
from tests.support.operator import OperatorProcess

REUSE_ENV = "KUBEML_TEST_REUSE_CLUSTER"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.Connection]:
    """A running cluster: reused from $KUBEML_TEST_REUSE_CLUSTER, else started fresh."""
    reuse = os.environ.get(REUSE_ENV)
    if reuse:
        report = cluster.status(reuse)
        if not report.healthy:
            pytest.fail(f"{REUSE_ENV}={reuse} is not a healthy cluster: {report.lines()}")
        yield cluster.connection(reuse)
        return
    state = tmp_path_factory.mktemp("kubeml-local")
    conn = cluster.up(state, echo=_echo)
    try:
        yield conn
    finally:
        cluster.down(state, echo=_echo)


@pytest.fixture(scope="session")
def state_layout(local_cluster: cluster.Connection) -> Layout:
    return Layout.at(local_cluster.state_dir)


@pytest.fixture(scope="session")
def kube_api(local_cluster: cluster.Connection) -> Iterator[client.ApiClient]:
    """An ApiClient with the admin (system:masters) kubeconfig."""
    api = api_client(local_cluster.kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def kubectl(local_cluster: cluster.Connection) -> Kubectl:
    """Run the kubectl built with the control plane, against the admin kubeconfig."""
    cfg = read_config(Layout.at(local_cluster.state_dir).cluster_json)
    assert cfg is not None
    binary = str(Path(cfg.bin_dir) / "kubectl")

    def run(
        *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--kubeconfig", str(local_cluster.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    return run


@pytest.fixture(scope="session")
def crds_dir() -> Path | None:
    return default_crds_dir()


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the `restricted` Pod Security Standard, deleted after."""
    core = client.CoreV1Api(kube_api)
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    kube.new_namespace(kube_api, name, kube.RESTRICTED)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def s3_credentials(local_cluster: cluster.Connection) -> S3Credentials:
    """Endpoint, keys, region and bucket of the cluster's S3 server."""
    return local_cluster.s3


@pytest.fixture(scope="session")
def s3_env(local_cluster: cluster.Connection) -> dict[str, str]:
    """AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, KUBEML_BUCKET."""
    return local_cluster.s3.env()


@pytest.fixture(scope="session")
def s3_client(s3_credentials: S3Credentials) -> Any:
    """A boto3 S3 client for the cluster's S3 server."""
    return s3_client_for(s3_credentials)


@pytest.fixture(scope="session")
def operator(
    local_cluster: cluster.Connection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The KubeML operator running as a process against the cluster."""
    proc = OperatorProcess(
        local_cluster.kubeconfig, local_cluster.s3.env(), tmp_path_factory.mktemp("operator")
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def ml_namespace(namespace: str, kube_api: client.ApiClient, s3_env: dict[str, str]) -> str:
    """A restricted namespace holding the S3 credentials Secret our pods reference."""
    kube.add_s3_secret(kube_api, namespace, s3_env)
    return namespace


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """prometheus and promtool built from the pinned module (Debian's lacks Kubernetes SD)."""
    return built("prometheus")

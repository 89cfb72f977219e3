"""The Helm chart on the local control plane: the helm binary, a release namespace,
values pointing at the cluster's S3, and the operator pods the chart runs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeml_local import cluster
from kubeml_local.layout import Layout
from tests.support import kube
from tests.support.cases import ROOT

CHART = ROOT / "charts" / "kubeml"
IRIS = ROOT / "examples" / "iris"
RELEASE = "kml"
SERVICE_ACCOUNT = "kml-kubeml"  # the chart's fullname for release "kml"
OPERATOR_SELECTOR = "app.kubernetes.io/instance=kml,app.kubernetes.io/component=operator"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]  # conftest's `kubectl` fixture


def build_helm() -> str:
    out = subprocess.run(
        [str(ROOT / "hack" / "helm" / "build.sh")], capture_output=True, text=True, timeout=3600
    )
    assert out.returncode == 0, f"hack/helm/build.sh failed:\n{out.stderr[-4000:]}"
    return out.stdout.strip().splitlines()[-1]


def pause_admin_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pause the session's admin-powered process operator, if the session has one."""
    try:
        proc: Any = request.getfixturevalue("operator")
    except pytest.FixtureLookupError:
        yield
        return
    proc.stop()
    try:
        yield
    finally:
        proc.start()


def new_release_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """Where the chart goes: fresh, and enforcing Pod Security "restricted" like the tests'."""
    name = kube.new_namespace(kube_api, f"kubeml-helm-{uuid.uuid4().hex[:6]}", kube.RESTRICTED)
    yield name
    client.CoreV1Api(kube_api).delete_namespace(name, propagation_policy="Background")


class Helm:
    def __init__(self, binary: str, conn: cluster.Connection, namespace: str) -> None:
        self.binary, self.conn, self.namespace = binary, conn, namespace

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--kubeconfig", str(self.conn.kubeconfig), "-n", self.namespace]
        out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
        print(f"$ helm {' '.join(args)}\n{out.stdout}{out.stderr}", file=sys.stderr)
        return out


def install_values(
    tmp_path: Path, s3_env: dict[str, str], workload_namespaces: list[str], **extra: Any
) -> list[str]:
    """The chart pointed at the local cluster's S3 server, creating the credentials Secret.

    A values file, not --set: typed values, and no keys on a logged command line.
    """
    values: dict[str, Any] = {
        "s3": {
            "endpoint": s3_env["AWS_ENDPOINT_URL"],
            "bucket": s3_env["KUBEML_BUCKET"],
            "region": s3_env["AWS_REGION"],
            "credentials": {
                "create": True,
                "accessKeyId": s3_env["AWS_ACCESS_KEY_ID"],
                "secretAccessKey": s3_env["AWS_SECRET_ACCESS_KEY"],
                "namespaces": workload_namespaces,
            },
        },
        **extra,
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["--values", str(path)]


def operator_pods(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=OPERATOR_SELECTOR)
    items = [p for p in pods.items if p.metadata.deletion_timestamp is None]
    return [api.sanitize_for_serialization(p) for p in items]


def operator_pod(api: client.ApiClient, namespace: str) -> dict[str, Any] | None:
    pods = operator_pods(api, namespace)
    return pods[0] if pods else None


def operator_log(api: client.ApiClient, state_dir: Path, namespace: str) -> str:
    """Every operator replica's log, one after the other."""
    pods = operator_pods(api, namespace)
    if not pods:
        return "(no operator pod)"
    out = []
    for pod in pods:
        name = pod["metadata"]["name"]
        path = Layout.at(state_dir).container_log(namespace, name, "operator")
        text = path.read_text(errors="replace") if path.exists() else f"(no log file {path})"
        out.append(f"==== {name}\n{text}")
    return "\n".join(out)


@contextlib.contextmanager
def logs_on_failure(api: client.ApiClient, state_dir: Path, namespace: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        log = operator_log(api, state_dir, namespace)
        print(f"\n---- operator log ({namespace}), last 12000 chars ----\n{log[-12000:]}")
        raise


def strip_finalizers(kubectl: Kubectl, namespace: str) -> None:
    """After a failure, let the namespace go: no operator is left to run the finalizers."""
    out = kubectl("get", "modelversions", "-n", namespace, "-o", "name", check=False)
    for name in out.stdout.split():
        kubectl(
            "patch",
            "-n",
            namespace,
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


@contextlib.contextmanager
def installed(
    helm: str,
    conn: cluster.Connection,
    api: client.ApiClient,
    kubectl: Kubectl,
    release_namespace: str,
    namespace: str,
    values: list[str],
) -> Iterator[Helm]:
    """The chart installed (`helm install --wait`) into the release namespace with
    `values`, for a workload namespace; yields the release's helm. On the way out: the
    operator's log if the body failed, `helm uninstall`, and the workload namespace's
    versions let go (no operator is left to run their finalizers)."""
    run = Helm(helm, conn, release_namespace)
    try:
        with logs_on_failure(api, conn.state_dir, release_namespace):
            out = run("install", RELEASE, str(CHART), "--wait", "--timeout", "180s", *values)
            assert out.returncode == 0, out.stderr
            yield run
    finally:
        run("uninstall", RELEASE, "--wait", "--timeout", "120s")
        strip_finalizers(kubectl, namespace)


# Fixtures, for test modules to import by name.
@pytest.fixture(scope="module")
def helm() -> str:
    return build_helm()


@pytest.fixture
def no_admin_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from pause_admin_operator(request)


@pytest.fixture
def release_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    yield from new_release_namespace(kube_api)


ChartInstall = Callable[..., contextlib.AbstractContextManager[Helm]]  # the `chart` fixture


@pytest.fixture
def chart(
    helm: str,
    no_admin_operator: None,
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    release_namespace: str,
    namespace: str,
    s3_env: dict[str, str],
    tmp_path: Path,
) -> ChartInstall:
    """`with chart(**values) as run:` the chart installed for the workload `namespace`
    (its S3 Secret made by the chart) with extra values, the admin operator paused."""

    def install(**extra: Any) -> contextlib.AbstractContextManager[Helm]:
        values = install_values(tmp_path, s3_env, [namespace], **extra)
        return installed(
            helm, local_cluster, kube_api, kubectl, release_namespace, namespace, values
        )

    return install

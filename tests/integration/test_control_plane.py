"""The local control plane itself: it runs, enforces RBAC and Pod Security, serves S3,
installs the CRDs, restarts a component that crashed, and `down` (or Ctrl-C during `up`)
leaves no process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubeml_local import cluster, procs
from kubeml_local.bootstrap import api_client, api_error, apply, crd_documents
from kubeml_local.cli import local
from kubeml_local.config import S3_OBJECT_NAME, SYSTEM_NAMESPACE, read_status
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll
from kubeml_local.s3 import S3Credentials, read_env_file

from .conftest import Kubectl

pytestmark = pytest.mark.integration


def test_cluster_is_healthy(local_cluster: cluster.Connection, kube_api: client.ApiClient) -> None:
    assert cluster.status(local_cluster.state_dir).healthy
    version = client.VersionApi(kube_api).get_code()
    assert version.git_version == "v1.36.3"


def test_get_nodes(kubectl: Kubectl, state_layout: Layout) -> None:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)
    st = read_status(state_layout.status_json)
    assert st is not None
    if "node-agent" in st.components:
        ready = {
            n["metadata"]["name"]
            for n in nodes["items"]
            for c in n["status"].get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        }
        assert ready, f"agent running but no Ready node: {nodes['items']}"


def test_server_side_apply(kube_api: client.ApiClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/ssa"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"a": "1"},
    }
    first = apply(kube_api, path, body)
    again = apply(kube_api, path, body)  # idempotent: same object, no new generation of data
    assert first["data"] == again["data"] == {"a": "1"}
    managers = {m["manager"]: m["operation"] for m in again["metadata"]["managedFields"]}
    assert managers.get("kubeml-local") == "Apply"

    # A second manager changing an owned field without force is a conflict (409).
    body2 = {**body, "data": {"a": "2"}}
    with pytest.raises(ApiException) as err:
        kube_api.call_api(
            path,
            "PATCH",
            query_params=[("fieldManager", "someone-else")],
            header_params={"Content-Type": "application/apply-patch+yaml"},
            body=body2,
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
        )
    assert err.value.status == 409


def _as_user(local_cluster: cluster.Connection, user: str) -> client.ApiClient:
    api = api_client(local_cluster.kubeconfig)
    api.set_default_header("Impersonate-User", user)
    return api


def test_service_account_without_rbac_is_forbidden(
    local_cluster: cluster.Connection, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    # Impersonation: what the authorizer decides for that identity.
    impersonated = _as_user(local_cluster, f"system:serviceaccount:{namespace}:nobody")
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(impersonated).list_namespaced_pod(namespace)
    assert err.value.status == 403

    # A real bound token, as a pod would get it: authenticates, and is still forbidden.
    token = core.create_namespaced_service_account_token(
        "nobody",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    cfg = client.Configuration()
    cfg.host = local_cluster.apiserver
    cfg.ssl_ca_cert = str(Layout.at(local_cluster.state_dir).pki / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as as_sa:
        review = client.AuthenticationV1Api(as_sa).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
        with pytest.raises(ApiException) as err2:
            client.CoreV1Api(as_sa).list_namespaced_pod(namespace)
        assert err2.value.status == 403


def _pod(name: str, security: dict[str, Any], container_security: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": security,
            "containers": [
                {
                    "name": "main",
                    "image": "kubeml/none:test",
                    "command": ["true"],
                    "securityContext": container_security,
                }
            ],
        },
    }


def test_restricted_namespace_rejects_privileged_pod(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    privileged = _pod("privileged", {}, {"privileged": True})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, privileged)
    assert err.value.status == 403
    assert "violates PodSecurity" in err.value.body

    hardened = _pod(
        "hardened",
        {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    )
    created = core.create_namespaced_pod(namespace, hardened)
    assert created.metadata.uid


def test_s3_bucket_and_cluster_objects(
    kube_api: client.ApiClient,
    s3_client: Any,
    s3_credentials: S3Credentials,
    state_layout: Layout,
) -> None:
    key = f"tests/{uuid.uuid4().hex}"
    s3_client.put_object(Bucket=s3_credentials.bucket, Key=key, Body=b"hello")
    got = s3_client.get_object(Bucket=s3_credentials.bucket, Key=key)["Body"].read()
    assert got == b"hello"
    s3_client.delete_object(Bucket=s3_credentials.bucket, Key=key)

    core = client.CoreV1Api(kube_api)
    cm = core.read_namespaced_config_map(S3_OBJECT_NAME, SYSTEM_NAMESPACE).data
    secret = core.read_namespaced_secret(S3_OBJECT_NAME, SYSTEM_NAMESPACE).data
    assert cm == {
        "AWS_ENDPOINT_URL": s3_credentials.endpoint,
        "AWS_REGION": "us-east-1",
        "KUBEML_BUCKET": "kubeml",
    }
    assert set(secret) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert read_env_file(state_layout.s3_env) == s3_credentials.env()


def test_crds_installed(kube_api: client.ApiClient, crds_dir: Path | None) -> None:
    docs = list(crd_documents(crds_dir))
    assert docs, f"no CRDs in {crds_dir}"
    ext = client.ApiextensionsV1Api(kube_api)
    problems = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
        except ApiException as err:
            if err.status != 404:
                raise
            # `up` reported it as rejected; apply again to show the apiserver's reason here.
            try:
                apply(
                    kube_api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", doc
                )
                problems[name] = "missing after up, but applies now"
            except ApiException as again:
                problems[name] = api_error(again, limit=2000)
            continue
        if not any(c.type == "Established" and c.status == "True" for c in conditions):
            problems[name] = "not Established"
    assert not problems, "\n".join(f"{n}: {why}" for n, why in problems.items())


# -- lifecycle: each of these runs a private cluster in its own state dir ------------------


def _recorded_pids(layout: Layout) -> list[int]:
    st = read_status(layout.status_json)
    assert st is not None
    return [p for p in [st.supervisor_pid, *(c.pid for c in st.components.values())] if p]


def _assert_nothing_left(layout: Layout, recorded: list[int]) -> None:
    alive = [p for p in recorded if procs.alive(p)]
    assert not alive, f"recorded processes still running: {alive}"
    assert not procs.marked_pids(layout.root), "processes with our marker still running"
    for pid in recorded:  # the process groups too (pgid == leader pid)
        try:
            members = [
                p
                for p in Path("/proc").iterdir()
                if p.name.isdigit() and procs.alive(int(p.name)) and _pgid(int(p.name)) == pid
            ]
        except OSError:
            members = []
        assert not members, f"process group {pid} still has members {members}"


def _pgid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[2])


def _start_sleeper(state: Path) -> None:
    """A pod whose process must die with the cluster; its log line proves `logs` works."""
    with api_client(Layout.at(state).kubeconfig) as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "sleeper"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "kubeml/none:test",
                            "command": ["sh", "-c", "echo hello from sleeper; exec sleep 3600"],
                        }
                    ],
                },
            },
        )
        poll(
            lambda: core.read_namespaced_pod("sleeper", "default").status.phase == "Running",
            timeout=60,
            what="pod sleeper Running",
        )
    runner = CliRunner()

    def logged() -> bool:
        result = runner.invoke(local, ["logs", "--state-dir", str(state), "sleeper"])
        return result.exit_code == 0 and "hello from sleeper" in result.output

    poll(logged, timeout=30, what="`kubeml local logs sleeper` to show its output")


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "c"
    cluster.up(state, echo=lambda _: None)
    layout = Layout.at(state)
    recorded = _recorded_pids(layout)
    lines: list[str] = []
    cluster.up(state, echo=lines.append)  # second call: reports, starts nothing
    assert lines[0] == "local cluster already running"
    assert _recorded_pids(layout) == recorded
    st = read_status(layout.status_json)
    assert st is not None
    assert st.supervisor_pid is not None
    if "node-agent" in st.components:
        _start_sleeper(state)
    # Everything below the supervisor, pods included.
    recorded += procs.descendants(st.supervisor_pid)
    cluster.down(state, echo=lambda _: None)
    _assert_nothing_left(layout, recorded)
    final = read_status(layout.status_json)
    assert final is not None
    assert final.phase == "stopped"
    cluster.down(state, echo=lambda _: None)  # repeatable


def test_a_crashed_component_is_restarted_and_the_rest_keeps_running(tmp_path: Path) -> None:
    state = tmp_path / "c"
    cluster.up(state, with_agent=False, echo=lambda _: None)
    layout = Layout.at(state)
    try:
        st = read_status(layout.status_json)
        assert st is not None
        before = {name: c.pid for name, c in st.components.items()}
        os.kill(before["etcd"], signal.SIGKILL)

        def restarted() -> bool:
            now = read_status(layout.status_json)
            return now is not None and now.components["etcd"].restarts == 1

        poll(restarted, timeout=30, what="etcd restarted by the supervisor")
        poll(lambda: cluster.status(state).healthy, timeout=60, what="cluster healthy again")
        after = read_status(layout.status_json)
        assert after is not None and after.phase == "ready"
        assert after.components["etcd"].last_exit_code == -signal.SIGKILL
        # Only etcd was restarted.
        assert {n: c.pid for n, c in after.components.items() if n != "etcd"} == {
            n: p for n, p in before.items() if n != "etcd"
        }
        shown = CliRunner().invoke(local, ["status", "--state-dir", str(state)])
        assert shown.exit_code == 0, shown.output
        assert re.search(r"etcd\s+running\s+restarts: 1", shown.output), shown.output
        assert re.search(r"kube-apiserver\s+running\s+restarts: 0", shown.output)
    finally:
        cluster.down(state, echo=lambda _: None)


def test_down_cleans_up_after_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no chance to stop anything: `down` must, by the
    recorded process groups and the environment marker."""
    state = tmp_path / "c"
    cluster.up(state, with_agent=False, echo=lambda _: None)
    layout = Layout.at(state)
    recorded = _recorded_pids(layout)
    st = read_status(layout.status_json)
    assert st is not None
    assert st.supervisor_pid is not None
    os.kill(st.supervisor_pid, signal.SIGKILL)
    poll(lambda: not procs.alive(st.supervisor_pid or 0), timeout=10, what="supervisor gone")
    assert not cluster.status(state).healthy
    assert procs.marked_pids(layout.root), "components should outlive a killed supervisor"
    cluster.down(state, echo=lambda _: None)
    _assert_nothing_left(layout, recorded)


def test_interrupt_during_up_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "c"
    layout = Layout.at(state)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from kubeml_local.cli import local; local()",
            "up",
            "--state-dir",
            str(state),
        ],
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background commands with SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler: give the child the
        # default disposition, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # the apiserver has started, the cluster is not ready yet
        seen.append(line)
        if "kube-apiserver: started" in line or time.monotonic() > deadline:
            break
    assert any("kube-apiserver: started" in s for s in seen), "".join(seen)
    recorded = _recorded_pids(layout)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=90)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    _assert_nothing_left(layout, [*recorded, proc.pid])

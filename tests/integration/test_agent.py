"""The node agent on the real control plane: Jobs, Deployments, probes, credentials,
memory limits and env, all under the `restricted` Pod Security Standard."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local.layout import Layout
from kubeml_local.readiness import poll

pytestmark = pytest.mark.integration

Json = dict[str, Any]
TIMEOUT = 90.0
# Bypasses any proxy from the environment: pod IPs are loopback addresses.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def container(name: str, command: list[str], **extra: Any) -> Json:
    return {
        "name": name,
        "image": "kubeml/local",
        "command": command,
        "securityContext": CONTAINER_SECURITY,
        **extra,
    }


def pod_spec(*containers: Json, **extra: Any) -> Json:
    """A pod spec the `restricted` Pod Security Standard admits."""
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": list(containers),
        **extra,
    }


def job(name: str, spec: Json, **job_spec: Any) -> Json:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **job_spec,
            "template": {"spec": {"restartPolicy": "Never", **spec}},
        },
    }


def wait(probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return poll(probe, timeout=timeout, what=what, interval=0.2)


def job_condition(batch: client.BatchV1Api, ns: str, name: str) -> Any:
    conditions = batch.read_namespaced_job_status(name, ns).status.conditions or []
    done = [c for c in conditions if c.type in ("Complete", "Failed") and c.status == "True"]
    return done[0] if done else None


def job_pods(core: client.CoreV1Api, ns: str, name: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items)


def terminal_pod(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase in ("Succeeded", "Failed") else None


def run_pod(core: client.CoreV1Api, ns: str, name: str, spec: Json) -> client.V1Pod:
    core.create_namespaced_pod(
        ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    )
    pod: client.V1Pod = wait(lambda: terminal_pod(core, ns, name), f"pod {name} finished")
    return pod


def log_of(layout: Layout, ns: str, pod: str, container: str = "main") -> str:
    return layout.container_log(ns, pod, container).read_text()


def http_status(ip: str, port: int = 8080) -> int | None:
    assert ip.startswith("127."), ip  # never dial anything but loopback
    try:
        with HTTP.open(f"http://{ip}:{port}/", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if text.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


# -- Jobs ------------------------------------------------------------------------------------


def test_job_exiting_zero_completes(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(
        namespace, job("ok", pod_spec(container("main", ["python", "-c", "print('trained')"])))
    )
    cond = wait(lambda: job_condition(batch, namespace, "ok"), "job ok finished")
    assert cond.type == "Complete"
    (pod,) = job_pods(core, namespace, "ok")
    assert pod.status.phase == "Succeeded"
    state = pod.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (0, "Completed")
    assert pod.status.pod_ip.startswith("127.")
    assert log_of(state_layout, namespace, pod.metadata.name) == "trained\n"


def test_job_exit_code_is_real(kube_api: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(
        namespace, job("three", pod_spec(container("main", ["sh", "-c", "exit 3"])))
    )
    cond = wait(lambda: job_condition(batch, namespace, "three"), "job three finished")
    assert cond.type == "Failed"
    (pod,) = job_pods(core, namespace, "three")
    assert pod.status.phase == "Failed"
    state = pod.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (3, "Error")


def test_pod_failure_policy_fails_the_job_at_once(
    kube_api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}
    batch.create_namespaced_job(
        namespace,
        job(
            "fatal",
            pod_spec(container("main", ["sh", "-c", "exit 3"])),
            backoffLimit=6,
            podFailurePolicy=policy,
        ),
    )
    cond = wait(lambda: job_condition(batch, namespace, "fatal"), "job fatal finished")
    assert (cond.type, cond.reason) == ("Failed", "PodFailurePolicy")
    assert len(job_pods(core, namespace, "fatal")) == 1  # no retries despite backoffLimit


def test_on_failure_restarts_in_place(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    """restartPolicy OnFailure: the same pod restarts its container until it succeeds."""
    core = client.CoreV1Api(kube_api)
    # The working directory (the pod's root) survives restarts: it counts the runs.
    script = (
        "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; echo run $n; [ $n -ge 1 ]"
    )
    pod = run_pod(
        core,
        namespace,
        "flaky",
        pod_spec(container("main", ["sh", "-c", script]), restartPolicy="OnFailure"),
    )
    assert pod.status.phase == "Succeeded"
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    # Each run has its own log; the one before is kept for `kubectl logs --previous`.
    assert log_of(state_layout, namespace, "flaky") == "run 1\n"
    previous = state_layout.container_log(namespace, "flaky", "main").with_suffix(".log.1")
    assert previous.read_text() == "run 0\n"


# -- Deployments -----------------------------------------------------------------------------


def web_deployment(version: str) -> Json:
    server = container(
        "http",
        ["python", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
        env=[
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "VERSION", "value": version},
        ],
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 2},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": pod_spec(server, terminationGracePeriodSeconds=10),
            },
        },
    }


def rolled_out(apps: client.AppsV1Api, ns: str) -> bool:
    d = apps.read_namespaced_deployment_status("web", ns)
    s = d.status
    available = any(c.type == "Available" and c.status == "True" for c in s.conditions or [])
    return bool(
        available
        and s.observed_generation == d.metadata.generation
        and s.updated_replicas == 2
        and s.ready_replicas == 2
        and s.replicas == 2
        and s.available_replicas == 2
    )


def web_pods(core: client.CoreV1Api, ns: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(ns, label_selector="app=web").items)


def test_deployment_rolls_and_is_garbage_collected(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, web_deployment("1"))
    wait(lambda: rolled_out(apps, namespace), "deployment web available")
    first = {p.metadata.name: p.status.pod_ip for p in web_pods(core, namespace)}
    assert len(set(first.values())) == 2  # one loopback address per pod
    for ip in first.values():
        assert http_status(ip) == 200
    for p in web_pods(core, namespace):
        ready = {c.type: c.status for c in p.status.conditions}
        assert ready["Ready"] == ready["ContainersReady"] == "True"

    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "http", "env": [{"name": "VERSION", "value": "2"}]}]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("web", namespace, patch)
    wait(
        lambda: (
            rolled_out(apps, namespace)
            and not set(first) & {p.metadata.name for p in web_pods(core, namespace)}
        ),
        "rollout to version 2",
    )
    second = {p.metadata.name: p.status.pod_ip for p in web_pods(core, namespace)}
    assert len(second) == 2
    for ip in second.values():
        assert http_status(ip) == 200
    assert not any(
        processes_mentioning(f"--bind {ip} ") for ip in set(first.values()) - set(second.values())
    )

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait(
        lambda: (
            not client.AppsV1Api(kube_api).list_namespaced_replica_set(namespace).items
            and not web_pods(core, namespace)
        ),
        "replicasets and pods collected",
    )
    wait(
        lambda: not any(processes_mentioning(f"--bind {ip} ") for ip in second.values()),
        "server processes gone",
    )
    for ip in second.values():
        assert http_status(ip) is None


def test_deletion_sends_sigterm_then_removes_pod(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    core = client.CoreV1Api(kube_api)
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got TERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('started', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "graceful"},
            "spec": pod_spec(container("main", ["python", "-c", script])),
        },
    )
    log = state_layout.container_log(namespace, "graceful", "main")
    wait(lambda: log.exists() and "started" in log.read_text(), "pod graceful started")
    core.delete_namespaced_pod("graceful", namespace)
    wait(
        lambda: (
            not core.list_namespaced_pod(namespace, field_selector="metadata.name=graceful").items
        ),
        "pod graceful removed",
    )
    assert log.read_text() == "started\ngot TERM\n"


# -- credentials, memory, env ----------------------------------------------------------------

LIST_PODS = """
import sys
from kubernetes import client, config
config.load_kube_config()
try:
    client.CoreV1Api().list_namespaced_pod(sys.argv[1])
except client.ApiException as err:
    print("status", err.status)
    sys.exit(0 if err.status == 403 else 1)
print("listed")
"""


def test_pods_use_their_service_account(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    for sa in ("plain", "reader"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )

    denied = run_pod(
        core,
        namespace,
        "denied",
        pod_spec(
            container("main", ["python", "-c", LIST_PODS, namespace]),
            serviceAccountName="plain",
            restartPolicy="Never",
        ),
    )
    assert log_of(state_layout, namespace, "denied") == "status 403\n"
    assert denied.status.phase == "Succeeded"
    # The same code with a ServiceAccount that may list pods succeeds: the token is the SA's.
    allowed = run_pod(
        core,
        namespace,
        "allowed",
        pod_spec(
            container("main", ["python", "-c", LIST_PODS, namespace]),
            serviceAccountName="reader",
            restartPolicy="Never",
        ),
    )
    assert log_of(state_layout, namespace, "allowed") == "listed\n"
    assert allowed.status.container_statuses[0].state.terminated.exit_code == 0


def test_memory_limit_is_oom_killed(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    hog = "import time; x = b'a' * (512 * 1024 * 1024); time.sleep(60)"
    pod = run_pod(
        core,
        namespace,
        "hog",
        pod_spec(
            container("main", ["python", "-c", hog], resources={"limits": {"memory": "64Mi"}}),
            restartPolicy="Never",
        ),
    )
    assert pod.status.phase == "Failed"
    state = pod.status.container_statuses[0].state.terminated
    assert (state.reason, state.exit_code) == ("OOMKilled", 137)


def test_env_and_volumes_reach_the_process(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "fast", "app.conf": "x=1"}}
    )
    script = (
        'echo "$PASS $MODE $NAME $NS $IP $KUBEML_POD_IP $MISSING"; cat /etc/app/app.conf; '
        "echo; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; "
        "echo made > /scratch/out; cat $(SCRATCH)/out; pwd"
    )
    pod = run_pod(
        core,
        namespace,
        "env",
        pod_spec(
            container(
                "main",
                ["sh", "-c", script],
                env=[
                    {
                        "name": "PASS",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                    },
                    {
                        "name": "MODE",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                    },
                    {
                        "name": "MISSING",
                        "valueFrom": {
                            "configMapKeyRef": {
                                "name": "settings",
                                "key": "absent",
                                "optional": True,
                            }
                        },
                    },
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "SCRATCH", "value": "/scratch"},
                ],
                volumeMounts=[
                    {"name": "cfg", "mountPath": "/etc/app"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
                workingDir="/work",
            ),
            volumes=[
                {"name": "cfg", "configMap": {"name": "settings"}},
                {"name": "scratch", "emptyDir": {}},
            ],
            restartPolicy="Never",
        ),
    )
    assert pod.status.phase == "Succeeded", log_of(state_layout, namespace, "env")
    ip = pod.status.pod_ip
    lines = log_of(state_layout, namespace, "env").splitlines()
    assert lines[0] == f"hunter2 fast env {namespace} {ip} {ip} "
    assert lines[1:4] == ["x=1", namespace, "made"]
    assert lines[4].endswith("/work") and os.path.isabs(lines[4])

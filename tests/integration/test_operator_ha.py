"""Two operator replicas from the chart: one leads, the other takes over when it dies.

The chart's default install (two replicas, a Lease) on the local control plane runs
the iris pipeline; the leading replica is SIGKILLed while the TrainingRun trains.
The pipeline still completes; the takeover time (kill to the standby's first
reconcile) is measured and reported; and the apiserver's audit log shows the two
replicas never acted together: every write by the new leader comes after the last
one of the old, no object got two Jobs, and there is one version.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import cluster
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import load_yaml
from tests.support.helm import (
    CHART,
    IRIS,
    RELEASE,
    Helm,
    install_values,
    logs_on_failure,
    operator_pods,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
LEASE = "kml-kubeml"  # the chart's fullname for release "kml"
IDENTITY_ENV = "KUBEML_IDENTITY"


def leader(api: client.ApiClient, namespace: str) -> str:
    """The leading process: "<pod name>_<process id>"."""
    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    return str(lease.spec.holder_identity or "")


def pod_of(identity: str) -> str:
    return identity.rsplit("_", 1)[0]


def kill_pod_processes(pod: str) -> int:
    """SIGKILL every process of a pod (the node agent runs them as local processes,
    each with the pod's name in its environment, from the downward API)."""
    marker = f"{IDENTITY_ENV}={pod}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def reconciles(pod: dict[str, Any]) -> float:
    """The replica's reconcile count, from its metrics port on its pod IP."""
    ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8081/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kubeml_operator_reconciles_total{")
    )


def writes_by_replica(log: Path, since: int) -> dict[str, list[tuple[float, str]]]:
    """Per replica identity: (time, request) of each write it made (Lease renewals and
    Events aside), from the audit log."""
    out: dict[str, list[tuple[float, str]]] = {}
    with log.open("rb") as f:
        f.seek(since)
        for line in f.read().splitlines():
            e = json.loads(line)
            agent = str(e.get("userAgent", ""))
            if not agent.startswith("kubeml-operator") or "(" not in agent:
                continue
            if e.get("verb") in ("get", "list", "watch") or "/leases/" in e["requestURI"]:
                continue
            if "/events" in e["requestURI"] or e.get("responseStatus", {}).get("code", 0) >= 300:
                continue
            who = agent.split("(", 1)[1].rstrip(")")
            stamp = time.mktime(time.strptime(e["stageTimestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
            out.setdefault(who, []).append((stamp, f"{e['verb']} {e['requestURI']}"))
    return out


def test_the_standby_takes_over_when_the_leader_is_killed(
    helm: str,
    no_admin_operator: None,
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    release_namespace: str,
    namespace: str,
    s3_env: dict[str, str],
    state_layout: Layout,
    tmp_path: Path,
) -> None:
    run = Helm(helm, local_cluster, release_namespace)
    # The chart creates the workload namespace's S3 Secret.
    values = install_values(tmp_path, s3_env, [namespace])
    audit_from = state_layout.audit_log.stat().st_size
    ns = namespace
    try:
        with logs_on_failure(kube_api, local_cluster.state_dir, release_namespace):
            out = run("install", RELEASE, str(CHART), "--wait", "--timeout", "180s", *values)
            assert out.returncode == 0, out.stderr
            assert len(operator_pods(kube_api, release_namespace)) == 2
            first = poll(
                lambda: leader(kube_api, release_namespace) or None, timeout=60, what="a leader"
            )
            for f in ("dataset.yaml", "trainingrun.yaml", "deployment.yaml"):
                kube.create(kube_api, ns, load_yaml(IRIS / f))
            poll(
                lambda: kube.jobs(kube_api, ns, "kubeml.io/owner-kind=TrainingRun") or None,
                timeout=300,
                what="training Job",
            )
            assert kill_pod_processes(pod_of(first)) >= 1
            killed = time.monotonic()
            # The standby, or the killed pod's restarted container (a fresh candidate),
            # wins the Lease once it expires, and reconciles.
            second = poll(
                lambda: w if (w := leader(kube_api, release_namespace)) != first and w else None,
                timeout=60,
                what="a new leader",
                interval=0.2,
            )
            pod = next(
                p
                for p in operator_pods(kube_api, release_namespace)
                if p["metadata"]["name"] == pod_of(second)
            )
            poll(
                lambda: reconciles(pod) > 0, timeout=60, what=f"{second} reconciling", interval=0.2
            )
            takeover = time.monotonic() - killed
            print(f"\ntakeover: SIGKILL of {first} to {second} reconciling: {takeover:.1f} s")

            kube.wait_condition(
                kube_api, ns, "Deployment", "iris", "Ready", status="True", timeout=600
            )
            assert len(kube.jobs(kube_api, ns, "kubeml.io/owner-kind=Dataset")) == 1
            assert len(kube.jobs(kube_api, ns, "kubeml.io/owner-kind=TrainingRun")) == 1
            versions = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
                "kubeml.io", "v1alpha1", ns, "modelversions"
            )["items"]
            assert [v["metadata"]["name"] for v in versions] == ["iris-classifier-v1"]
            writes = writes_by_replica(state_layout.audit_log, audit_from)
            old, new = writes.get(first, []), writes.get(second, [])
            assert new, writes.keys()
            assert not old or max(t for t, _ in old) <= min(t for t, _ in new), (old[-3:], new[:3])

            # A graceful stop (a rolling update, a drain) hands the Lease over at once.
            client.CoreV1Api(kube_api).delete_namespaced_pod(pod_of(second), release_namespace)
            stopped = time.monotonic()
            third = poll(
                lambda: (
                    w if (w := leader(kube_api, release_namespace)) not in ("", second) else None
                ),
                timeout=60,
                what="a leader after the graceful stop",
                interval=0.2,
            )
            handover = time.monotonic() - stopped
            print(f"graceful stop of {second} to {third} leading: {handover:.1f} s")
    finally:
        strip_finalizers(kube_api, ns)
        run("uninstall", RELEASE, "--wait", "--timeout", "120s")


def strip_finalizers(api: client.ApiClient, namespace: str) -> None:
    """Let the namespace go after the operator is gone: no finalizer left to run."""
    custom = client.CustomObjectsApi(api)
    for v in custom.list_namespaced_custom_object(
        "kubeml.io", "v1alpha1", namespace, "modelversions"
    )["items"]:
        custom.patch_namespaced_custom_object(
            "kubeml.io",
            "v1alpha1",
            namespace,
            "modelversions",
            v["metadata"]["name"],
            {"metadata": {"finalizers": None}},
        )

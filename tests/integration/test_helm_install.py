"""The Helm chart installed into the local control plane, the operator under the chart's RBAC.

`helm install` puts the operator in a fresh release namespace as the chart's own pod; the
node agent runs it with a token of the chart's ServiceAccount (KUBECONFIG), and the
apiserver authorises every request with RBAC. The iris example then has to go all the way
through: a permission the chart forgot shows up as 403s in the operator's log and
resources that never get Ready, and fails the test.

The session's process operator (conftest `operator`), if any, runs with the admin
kubeconfig and would mask RBAC gaps, so it is paused while the chart's operator runs.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from kubeml.k8s import objects
from kubeml_local import cluster
from kubeml_local.readiness import poll
from tests.support import helm as helm_support
from tests.support import kube

pytestmark = pytest.mark.integration

ChartInstall = helm_support.ChartInstall
operator_pod, operator_log = helm_support.operator_pod, helm_support.operator_log
IRIS, RELEASE = helm_support.IRIS, helm_support.RELEASE
SERVICE_ACCOUNT = helm_support.SERVICE_ACCOUNT
Kubectl = helm_support.Kubectl


def can_i(
    kubectl: Kubectl, namespace: str, verb: str, resource: str, where: str, *extra: str
) -> bool:
    who = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
    out = kubectl("auth", "can-i", verb, resource, "--as", who, "-n", where, *extra, check=False)
    return out.stdout.strip() == "yes"


HTTPROUTES = ("gateway.networking.k8s.io", "httproutes")


def allowed(
    api: client.ApiClient, namespace: str, verb: str, what: tuple[str, str], where: str
) -> bool:
    """A SubjectAccessReview for the chart's ServiceAccount ((group, resource) of ``what``)."""
    review = objects.request(
        api,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                "resourceAttributes": {
                    "namespace": where,
                    "verb": verb,
                    "group": what[0],
                    "resource": what[1],
                },
            },
        },
    )
    return bool(review["status"].get("allowed"))


def apply(kubectl: Kubectl, namespace: str, *files: Path) -> None:
    for f in files:
        kubectl("apply", "-n", namespace, "-f", str(f))


def test_helm_install_runs_the_iris_pipeline_under_the_charts_rbac(
    chart: ChartInstall,
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    release_namespace: str,
    namespace: str,
) -> None:
    with chart() as run:
        pod = operator_pod(kube_api, release_namespace)
        assert pod is not None
        assert pod["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
        # The identity the operator runs as: what the ClusterRole grants, nothing more.
        assert can_i(kubectl, release_namespace, "create", "jobs.batch", namespace)
        assert can_i(
            kubectl,
            release_namespace,
            "patch",
            "datasets.kubeml.io",
            "x",
            "--subresource=status",
        )
        assert not can_i(kubectl, release_namespace, "get", "secrets", namespace)
        # Retraining: runs are created, Datasets annotated, server pods listed and
        # watched (their addresses, to read drift gauges), and nothing more on pods.
        assert can_i(kubectl, release_namespace, "create", "trainingruns.kubeml.io", namespace)
        assert can_i(kubectl, release_namespace, "patch", "datasets.kubeml.io", namespace)
        for verb in ("list", "watch"):
            assert can_i(kubectl, release_namespace, verb, "pods", namespace)
            assert can_i(kubectl, release_namespace, verb, "services", namespace)
        for verb, resource in (("get", "pods"), ("create", "pods"), ("get", "pods/log")):
            assert not can_i(kubectl, release_namespace, verb, resource, namespace)
        # spec.exposure: Ingresses watched and written; HTTPRoutes read and written,
        # never watched; neither updated with PUT.
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert can_i(kubectl, release_namespace, verb, "ingresses", namespace)
        for verb in ("get", "list", "create", "patch", "delete"):
            # Asked of the apiserver itself: kubectl cannot name a kind that is
            # not installed.
            assert allowed(kube_api, release_namespace, verb, HTTPROUTES, namespace)
        assert not allowed(kube_api, release_namespace, "watch", HTTPROUTES, namespace)
        assert not can_i(kubectl, release_namespace, "update", "ingresses", namespace)

        out = run("test", RELEASE, "--timeout", "120s")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Succeeded" in out.stdout

        apply(kubectl, namespace, IRIS / "dataset.yaml", IRIS / "trainingrun.yaml")
        kube.wait_condition(
            kube_api, namespace, "Dataset", "iris", "Ready", status="True", timeout=300
        )
        tr = kube.wait_condition(
            kube_api,
            namespace,
            "TrainingRun",
            "iris-rf",
            "Succeeded",
            status="True",
            timeout=600,
        )
        mv_name = tr["status"]["modelVersion"]
        kube.wait_condition(
            kube_api, namespace, "ModelVersion", mv_name, "Ready", status="True", timeout=120
        )
        # The operator puts its finalizer on the version with the chart's patch right.
        poll(
            lambda: (
                "kubeml.io/finalizer"
                in (kube.get(kube_api, namespace, "ModelVersion", mv_name) or {})
                .get("metadata", {})
                .get("finalizers", [])
            ),
            timeout=60,
            what=f"finalizer on modelversion {mv_name}",
        )

        apply(kubectl, namespace, IRIS / "deployment.yaml")
        kube.wait_condition(
            kube_api, namespace, "Deployment", "iris", "Ready", status="True", timeout=300
        )
        # The server the chart's operator made answers on its pod IP.
        server = client.CoreV1Api(kube_api).list_namespaced_pod(
            namespace, label_selector="kubeml.io/deployment=iris"
        )
        pod_ip = next(p.status.pod_ip for p in server.items if p.status.pod_ip)
        port = server.items[0].spec.containers[0].ports[0].container_port
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{pod_ip}:{port}/v2/health/ready", timeout=10) as resp:
            assert resp.status == 200

        # Published through an Ingress under the chart's RBAC.
        kubectl(
            "patch",
            "-n",
            namespace,
            "deployments.kubeml.io",
            "iris",
            "--type=merge",
            "-p",
            '{"spec":{"exposure":{"ingress":{"host":"iris.example.com"}}}}',
        )
        kube.wait_condition(
            kube_api, namespace, "Deployment", "iris", "Exposed", status="True", timeout=60
        )
        poll(
            lambda: objects.get(kube_api, "networking.k8s.io/v1", "Ingress", namespace, "iris"),
            timeout=60,
            what="the Ingress of iris",
        )

        log = operator_log(kube_api, local_cluster.state_dir, release_namespace)
        forbidden = [line for line in log.splitlines() if "forbidden" in line.lower()]
        assert not forbidden, "the operator hit RBAC denials:\n" + "\n".join(forbidden[:20])

        # Tear down through the operator while it runs: the version's finalizer
        # (artifact removal) needs it, and a version that holds an alias or is
        # served refuses deletion until both are gone.
        kubectl("delete", "-n", namespace, "-f", str(IRIS), "--ignore-not-found")
        kubectl(
            "patch",
            "-n",
            namespace,
            "modelversion",
            mv_name,
            "--type=merge",
            "-p",
            '{"spec":{"aliases":[]}}',
        )
        poll(
            lambda: (
                not (
                    (kube.get(kube_api, namespace, "ModelVersion", mv_name) or {}).get("status")
                    or {}
                ).get("aliases")
            ),
            timeout=60,
            what=f"modelversion {mv_name} released its aliases",
        )
        kubectl("delete", "-n", namespace, "modelversion", mv_name, "--wait=false")
        poll(
            lambda: kube.get(kube_api, namespace, "ModelVersion", mv_name) is None,
            timeout=120,
            what=f"modelversion {namespace}/{mv_name} deleted by the operator",
        )


def test_helm_install_with_watch_namespaces_uses_roles(
    chart: ChartInstall,
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    release_namespace: str,
    namespace: str,
) -> None:
    with chart(watchNamespaces=[namespace]):
        rbac = client.RbacAuthorizationV1Api(kube_api)
        assert rbac.read_namespaced_role("kml-kubeml", namespace).rules
        # Rights in the watched namespace only.
        assert can_i(kubectl, release_namespace, "create", "jobs.batch", namespace)
        assert not can_i(kubectl, release_namespace, "create", "jobs.batch", "default")
        apply(kubectl, namespace, IRIS / "dataset.yaml")
        kube.wait_condition(
            kube_api, namespace, "Dataset", "iris", "Ready", status="True", timeout=300
        )
        log = operator_log(kube_api, local_cluster.state_dir, release_namespace)
        assert "forbidden" not in log.lower(), log[-4000:]

"""Roles for teams, with the chart installed: the users' ClusterRoles aggregated into the
built-in view, edit and admin, and the kubeml-promote admission policy.

Three users, impersonated with kubectl's --as (the admin kubeconfig is system:masters,
which may impersonate): alice bound to `edit`, bob to `view` and carol to `admin` in the
workload namespace, by RoleBindings to the built-in ClusterRoles only, so every right
they have comes through aggregation. alice runs the iris pipeline; the chart's operator
(its own ServiceAccount, under RBAC) trains it and registers a version holding
`champion`, which the policy admits because the operator's role grants `promote`.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client

from kubeml_local import cluster
from kubeml_local.readiness import poll
from tests.support import helm as helm_support
from tests.support import kube

pytestmark = pytest.mark.integration

ChartInstall, Kubectl = helm_support.ChartInstall, helm_support.Kubectl
CHART, IRIS, RELEASE = helm_support.CHART, helm_support.IRIS, helm_support.RELEASE

KINDS = ("datasets", "trainingruns", "modelversions", "deployments")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
READ = {"get", "list", "watch"}
USERS = {"alice": "edit", "bob": "view", "carol": "admin"}
NEEDS_PROMOTE = "needs the verb promote on modelversions.kubeml.io"


def can_i(
    kubectl: Kubectl, who: str, namespace: str, verb: str, resource: str, *extra: str
) -> bool:
    out = kubectl(
        "auth", "can-i", verb, resource, "--as", who, "-n", namespace, *extra, check=False
    )
    return out.stdout.strip() == "yes"


def set_aliases(
    kubectl: Kubectl, namespace: str, name: str, who: str, aliases: list[str]
) -> subprocess.CompletedProcess[str]:
    patch = json.dumps({"spec": {"aliases": aliases}})
    return kubectl(
        "patch", "-n", namespace, "modelversion", name, "--type=merge", "-p", patch,
        "--as", who, check=False,
    )  # fmt: skip


def test_edit_runs_pipelines_view_reads_and_promotion_can_be_reserved(
    chart: ChartInstall,
    local_cluster: cluster.Connection,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    release_namespace: str,
    namespace: str,
) -> None:
    operator_sa = f"system:serviceaccount:{release_namespace}:{helm_support.SERVICE_ACCOUNT}"
    with chart(
        rbac={"promoteReservedToAdmins": True},
        operator={"replicas": 1, "leaderElection": False},
        tests={"enabled": False},
    ) as run:
        for user, role in USERS.items():
            # As docs/install.md says it.
            kubectl(
                "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}",
                f"--user={user}", "-n", namespace,
            )  # fmt: skip
        # The aggregation controller fills view/edit/admin asynchronously.
        poll(
            lambda: all(can_i(kubectl, u, namespace, "list", "datasets.kubeml.io") for u in USERS),
            timeout=60,
            what="kubeml rules aggregated into view, edit and admin",
        )

        # Every verb on every kind, as each user.
        for kind in KINDS:
            resource = f"{kind}.kubeml.io"
            for verb in VERBS:
                got = {u: can_i(kubectl, u, namespace, verb, resource) for u in USERS}
                assert got == {"alice": True, "bob": verb in READ, "carol": True}, (verb, kind)
            for user in USERS:
                assert can_i(kubectl, user, namespace, "get", resource, "--subresource=status")
                assert not can_i(
                    kubectl, user, namespace, "patch", resource, "--subresource=status"
                ), (user, kind)
            # Rights in the bound namespace only.
            assert not can_i(kubectl, "alice", "default", "get", resource)
        mvs = "modelversions.kubeml.io"
        promote = {u: can_i(kubectl, u, namespace, "promote", mvs) for u in USERS}
        assert promote == {"alice": False, "bob": False, "carol": True}
        assert can_i(kubectl, operator_sa, namespace, "promote", mvs)

        # alice runs the pipeline; bob may read it but not start one.
        refused = kubectl(
            "apply", "-n", namespace, "-f", str(IRIS / "dataset.yaml"), "--as", "bob",
            check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
        for f in ("dataset.yaml", "trainingrun.yaml"):
            kubectl("apply", "-n", namespace, "-f", str(IRIS / f), "--as", "alice")
        tr = kube.wait_condition(
            kube_api,
            namespace,
            "TrainingRun",
            "iris-rf",
            "Succeeded",
            status="True",
            timeout=600,
        )
        mv = tr["status"]["modelVersion"]
        # The operator registered it holding champion: its own alias move was admitted.
        poll(
            lambda: (
                "champion"
                in (kube.get(kube_api, namespace, "ModelVersion", mv) or {})
                .get("spec", {})
                .get("aliases", [])
            ),
            timeout=60,
            what=f"{mv} holds champion",
        )
        for user in USERS:
            got = kubectl("get", "-n", namespace, "modelversion", mv, "-o", "json", "--as", user)
            assert json.loads(got.stdout)["spec"]["model"] == "iris-classifier"
            kubectl("get", "-n", namespace, "trainingrun", "iris-rf", "--as", user)

        # Promotion reserved: alice's alias change is refused, naming the right she lacks.
        refused = set_aliases(kubectl, namespace, mv, "alice", ["champion", "staging"])
        print(f"refused as alice: {refused.stderr}")
        assert refused.returncode != 0 and "(Forbidden)" in refused.stderr
        assert f"user alice may not change the aliases of modelversion {mv}" in refused.stderr
        assert NEEDS_PROMOTE in refused.stderr and "kubeml-admin" in refused.stderr
        # ... so is a new version that claims an alias at creation.
        copy = kube.get(kube_api, namespace, "ModelVersion", mv)
        assert copy is not None
        copy = {
            "apiVersion": copy["apiVersion"],
            "kind": "ModelVersion",
            "metadata": {"name": f"{mv}-copy"},
            "spec": {**copy["spec"], "aliases": ["staging"]},
        }
        refused = kubectl(
            "create", "-n", namespace, "-f", "-", "--as", "alice",
            input=json.dumps(copy), check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and NEEDS_PROMOTE in refused.stderr
        # Other changes to a version need no promote (a label, here).
        kubectl("label", "-n", namespace, "modelversion", mv, "reviewed=no", "--as", "alice")
        # carol (admin) promotes.
        done = set_aliases(kubectl, namespace, mv, "carol", ["champion", "staging"])
        assert done.returncode == 0, done.stderr

        # Not reserved (the default): editors promote too.
        out = run(
            "upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout", "180s",
            "--set", "rbac.promoteReservedToAdmins=false",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        poll(
            lambda: can_i(kubectl, "alice", namespace, "promote", mvs),
            timeout=60,
            what="promote aggregated into edit",
        )
        assert not can_i(kubectl, "bob", namespace, "promote", mvs)
        done = set_aliases(kubectl, namespace, mv, "alice", ["champion"])
        assert done.returncode == 0, done.stderr

        log = helm_support.operator_log(kube_api, local_cluster.state_dir, release_namespace)
        forbidden = [line for line in log.splitlines() if "forbidden" in line.lower()]
        assert not forbidden, "the operator hit denials:\n" + "\n".join(forbidden[:20])

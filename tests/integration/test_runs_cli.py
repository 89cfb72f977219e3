"""`kubeml runs MODEL` and `kubectl get mv` on the local control plane: two runs of one
model compared side by side, and each version's key metric at a glance."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import cluster
from tests.integration.conftest import Kubectl
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
IRIS = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
RUN = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")


def tree_run(name: str, depths: list[Any]) -> dict[str, Any]:
    doc = copy.deepcopy(RUN)
    doc["metadata"]["name"] = name
    doc["spec"]["model"] = "irises"
    doc["spec"]["estimator"]["params"] = {"n_estimators": 10}
    doc["spec"]["search"] = {"folds": 3, "space": {"max_depth": depths}}
    return doc


def kubeml_runs(local_cluster: cluster.Connection, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeml.cli", "runs", *args],
        env={**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runs_of_a_model_side_by_side(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    local_cluster: cluster.Connection,
    kubectl: Kubectl,
) -> None:
    ns = ml_namespace
    kube.create(kube_api, ns, IRIS)
    kube.wait_condition(kube_api, ns, "Dataset", "iris", "Ready", status="True", timeout=300)
    kube.create(kube_api, ns, tree_run("stump", [1]))
    kube.create(kube_api, ns, tree_run("deep", [3, None]))
    status = {
        name: kube.wait_condition(
            kube_api, ns, "TrainingRun", name, "Succeeded", status="True", timeout=600
        )["status"]
        for name in ("stump", "deep")
    }

    out = kubeml_runs(local_cluster, "irises", "-n", ns, "-o", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == {"stump", "deep"}
    values = [r["keyValue"] for r in rows]
    assert values == sorted(values, reverse=True)  # best accuracy first
    for r in rows:
        st = status[r["name"]]
        assert r["keyMetric"] == "accuracy" and r["metrics"] == st["metrics"]
        assert r["params"] == st["bestParams"] and r["datasetVersion"] == st["datasetVersion"]
        assert r["modelVersion"] == st["modelVersion"] and r["gates"]["total"] == 1
        assert r["durationSeconds"] > 0 and r["trials"] >= 1

    table = kubeml_runs(local_cluster, "irises", "-n", ns)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["RUN", "SUCCEEDED", "REASON", "ACCURACY"]
    assert [line.split()[0] for line in lines[1:]] == [r["name"] for r in rows]

    got = kubectl("get", "mv", "-n", ns, "--no-headers", "-o", "custom-columns=NAME:.metadata.name")
    assert len(got.stdout.split()) == 2
    printed = kubectl("get", "mv", "-n", ns).stdout.splitlines()
    assert printed[0].split()[:4] == ["NAME", "MODEL", "VERSION", "METRIC"]
    shown = {line.split()[0]: line.split()[3] for line in printed[1:]}
    for st in status.values():
        assert shown[st["modelVersion"]] == st["keyMetric"]

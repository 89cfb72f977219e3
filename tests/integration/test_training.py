"""TrainingRuns and the registry on the real control plane and S3."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml.storage import parse_uri
from kubeml_local import cluster
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
IRIS = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
RUN = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")


def run(name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(RUN)
    doc["metadata"]["name"] = name
    doc["spec"].update(spec)
    return doc


def versions(api: client.ApiClient, ns: str, model: str) -> list[dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kubeml.io", "v1alpha1", ns, "modelversions"
    )["items"]
    return [i for i in items if i["spec"]["model"] == model]


@pytest.fixture
def iris_ns(operator: OperatorProcess, kube_api: client.ApiClient, ml_namespace: str) -> str:
    kube.create(kube_api, ml_namespace, IRIS)
    kube.wait_condition(kube_api, ml_namespace, "Dataset", "iris", "Ready", status="True")
    return ml_namespace


def test_grid_search_run_registers_a_verified_version(
    kube_api: client.ApiClient,
    iris_ns: str,
    s3_client: Any,
    local_cluster: cluster.Connection,
    tmp_path: Path,
) -> None:
    kube.create(kube_api, iris_ns, RUN)
    tr = kube.wait_condition(
        kube_api, iris_ns, "TrainingRun", "iris-rf", "Succeeded", status="True", timeout=300
    )
    st = tr["status"]
    assert st["modelVersion"] == "iris-classifier-v1"
    assert st["metrics"]["accuracy"] >= 0.85
    assert set(st["bestParams"]) >= {"n_estimators", "max_depth"}
    assert kube.condition(tr, "Ready")["status"] == "True"  # type: ignore[index]
    names = [s["name"] for s in st["stages"]]
    assert names == ["pod", "fetch", "search", "fit", "evaluate", "upload", "report"]
    assert all(s["seconds"] >= 0 for s in st["stages"])
    mv = kube.wait_condition(
        kube_api, iris_ns, "ModelVersion", "iris-classifier-v1", "Ready", status="True"
    )
    assert mv["spec"]["metrics"] == st["metrics"]
    assert mv["spec"]["lineage"]["datasetVersion"] == st["datasetVersion"]
    assert mv["spec"]["aliases"] == ["champion"]
    assert mv["status"]["aliasList"] == "champion"
    labels = mv["metadata"]["labels"]
    assert labels["kubeml.io/training-run"] == "iris-rf"
    assert labels["kubeml.io/dataset-version"] == st["datasetVersion"][:12]
    bucket, key = parse_uri(mv["spec"]["artifact"]["uri"])
    data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == mv["spec"]["artifact"]["sha256"]
    assert len(data) == mv["spec"]["artifact"]["size"]
    assert mv["status"]["verifiedSha256"] == mv["spec"]["artifact"]["sha256"]

    # The version points to the run's model report; `kubeml report` fetches it, checked.
    report = poll(
        lambda: (
            (kube.get(kube_api, iris_ns, "ModelVersion", "iris-classifier-v1") or {})
            .get("status", {})
            .get("report")
        ),
        timeout=60,
        what="the version's status.report",
    )
    assert report == st["report"] and "/models/iris-classifier/reports/" in report["uri"]
    fetched = kubeml_report(local_cluster, "iris-classifier-v1", iris_ns, tmp_path / "r.html")
    assert fetched.returncode == 0, fetched.stderr
    page = (tmp_path / "r.html").read_bytes()
    assert hashlib.sha256(page).hexdigest() == report["sha256"] and len(page) == report["size"]
    assert b"Model report: iris-classifier" in page and b"accuracy &gt;= 0.85" in page
    rbucket, rkey = parse_uri(report["uri"])
    s3_client.put_object(Bucket=rbucket, Key=rkey, Body=page + b"<!-- changed -->")
    refused = kubeml_report(local_cluster, "iris-classifier-v1", iris_ns, tmp_path / "x.html")
    assert refused.returncode == 1 and "sha256" in refused.stderr, refused.stderr
    assert not (tmp_path / "x.html").exists()

    # Tampering with the artifact flips the version to not Ready, naming it.
    s3_client.put_object(Bucket=bucket, Key=key, Body=data + b"tampered")
    bad = kube.wait_condition(
        kube_api,
        iris_ns,
        "ModelVersion",
        "iris-classifier-v1",
        "Ready",
        status="False",
        reasons=("ArtifactMismatch",),
        timeout=60,
    )
    assert key in kube.condition(bad, "Ready")["message"]  # type: ignore[index]
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    kube.wait_condition(
        kube_api, iris_ns, "ModelVersion", "iris-classifier-v1", "Ready", status="True", timeout=60
    )


def kubeml_report(
    local_cluster: cluster.Connection, name: str, ns: str, out: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **local_cluster.s3.env(), "KUBECONFIG": str(local_cluster.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "kubeml.cli", "report", name, "-n", ns, "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reruns_are_reproducible_and_concurrent_runs_get_distinct_versions(
    kube_api: client.ApiClient,
    iris_ns: str,
) -> None:
    for name in ("twin-a", "twin-b"):
        kube.create(kube_api, iris_ns, run(name, model="twins"))
    done = [
        kube.wait_condition(
            kube_api, iris_ns, "TrainingRun", n, "Succeeded", status="True", timeout=300
        )
        for n in ("twin-a", "twin-b")
    ]
    assert done[0]["status"]["metrics"] == done[1]["status"]["metrics"]
    names = sorted(d["status"]["modelVersion"] for d in done)
    assert names == ["twins-v1", "twins-v2"]
    assert sorted(v["spec"]["version"] for v in versions(kube_api, iris_ns, "twins")) == [1, 2]


def test_a_failed_gate_registers_nothing(kube_api: client.ApiClient, iris_ns: str) -> None:
    kube.create(
        kube_api,
        iris_ns,
        run(
            "strict",
            model="strict",
            gates={
                "thresholds": [
                    {"metric": "accuracy", "min": 0.999},
                    {"metric": "f1_macro", "min": 0.999},
                ]
            },
        ),
    )
    tr = kube.wait_condition(
        kube_api,
        iris_ns,
        "TrainingRun",
        "strict",
        "Succeeded",
        status="False",
        reasons=("GateFailed",),
        timeout=300,
    )
    assert "accuracy >= 0.999" in kube.condition(tr, "Succeeded")["message"]  # type: ignore[index]
    assert versions(kube_api, iris_ns, "strict") == []
    assert [g["passed"] for g in tr["status"]["gates"]].count(False) >= 1


def test_bad_inputs_end_with_clear_reasons(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    iris_ns: str,
) -> None:
    diabetes = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "diabetes"},
        "spec": {"source": {"builtin": {"name": "diabetes"}}, "target": "target"},
    }
    broken = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "broken"},
        "spec": {"source": {"builtin": {"name": "iris"}}, "target": "nope"},
    }
    kube.create(kube_api, iris_ns, diabetes)
    kube.create(kube_api, iris_ns, broken)
    cases = [
        (run("no-dataset", datasetRef={"name": "ghost"}), "Unknown", "DatasetNotFound", "ghost"),
        (run("bad-dataset", datasetRef={"name": "broken"}), "Unknown", "DatasetNotReady", "broken"),
        (
            run("wrong-task", datasetRef={"name": "diabetes"}, search=None, gates=None),
            "False",
            "TargetMismatch",
            "target",
        ),
        # alpha is a parameter of other estimators, so admission lets it through;
        # the operator's own validation names it.
        (
            run(
                "bad-param",
                estimator={"name": "random-forest-classifier", "params": {"alpha": 1.0}},
                search=None,
            ),
            "False",
            "InvalidSpec",
            "alpha",
        ),
        (
            run("oom", resources={"limits": {"memory": "120Mi"}}, search=None),
            "False",
            "OOMKilled",
            "120Mi",
        ),
    ]
    for doc, _, _, _ in cases:
        kube.create(kube_api, iris_ns, doc)
    for doc, state, reason, needle in cases:
        name = doc["metadata"]["name"]
        tr = kube.wait_condition(
            kube_api,
            iris_ns,
            "TrainingRun",
            name,
            "Succeeded",
            status=state,
            reasons=(reason,),
            timeout=300,
        )
        message = kube.condition(tr, "Succeeded")["message"]  # type: ignore[index]
        assert needle in message, (name, message)
    assert operator.alive()


def test_operator_killed_mid_training_leaves_one_job_and_one_version(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    iris_ns: str,
) -> None:
    kube.create(kube_api, iris_ns, run("crash", model="crash"))
    poll(
        lambda: kube.jobs(kube_api, iris_ns, "kubeml.io/owner-name=crash") or None,
        timeout=60,
        what="training Job",
    )
    operator.restart()
    kube.wait_condition(
        kube_api, iris_ns, "TrainingRun", "crash", "Succeeded", status="True", timeout=300
    )
    operator.restart()
    kube.wait_condition(kube_api, iris_ns, "ModelVersion", "crash-v1", "Ready", status="True")
    assert len(kube.jobs(kube_api, iris_ns, "kubeml.io/owner-name=crash")) == 1
    assert [v["metadata"]["name"] for v in versions(kube_api, iris_ns, "crash")] == ["crash-v1"]


def test_deleting_a_running_run_stops_its_process(
    kube_api: client.ApiClient,
    iris_ns: str,
) -> None:
    slow = run(
        "slow",
        model="slow",
        search={
            "strategy": "grid",
            "folds": 5,
            "space": {"n_estimators": [300, 400, 500], "max_depth": [2, 3, 4, 5, None]},
        },
    )
    kube.create(kube_api, iris_ns, slow)
    core = client.CoreV1Api(kube_api)

    def running_pod() -> str | None:
        pods = core.list_namespaced_pod(iris_ns, label_selector="kubeml.io/owner-name=slow")
        for p in pods.items:
            if p.status.phase == "Running":
                return str(p.metadata.name)
        return None

    pod = poll(running_pod, timeout=120, what="running training pod")
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "kubeml.io", "v1alpha1", iris_ns, "trainingruns", "slow"
    )
    poll(
        lambda: (
            not core.list_namespaced_pod(iris_ns, label_selector="kubeml.io/owner-name=slow").items
        ),
        timeout=120,
        what=f"pod {pod} gone",
    )
    out = subprocess.run(["pgrep", "-f", f"KUBEML_TRAININGRUN.*{iris_ns}"], capture_output=True)
    assert out.returncode == 1  # no training process of this namespace is left
    assert kube.jobs(kube_api, iris_ns, "kubeml.io/owner-name=slow") == []


def test_promote_moves_the_alias_and_records_it(
    local_cluster: Any,
    kube_api: client.ApiClient,
    iris_ns: str,
) -> None:
    for name in ("p1", "p2"):
        kube.create(kube_api, iris_ns, run(name, model="promo", search=None))
    for name in ("p1", "p2"):
        kube.wait_condition(
            kube_api, iris_ns, "TrainingRun", name, "Succeeded", status="True", timeout=300
        )
    kube.wait_condition(kube_api, iris_ns, "ModelVersion", "promo-v2", "Ready", status="True")
    first = (
        "promo-v1"
        if kube.get(kube_api, iris_ns, "ModelVersion", "promo-v1")["spec"].get(  # type: ignore[index]
            "aliases"
        )
        else "promo-v2"
    )
    second = "promo-v2" if first == "promo-v1" else "promo-v1"
    number = second.rsplit("v", 1)[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeml.cli",
            "promote",
            "promo",
            number,
            "--alias",
            "champion",
            "-n",
            iris_ns,
        ],
        check=True,
        env={"KUBECONFIG": str(local_cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
    )

    def moved() -> dict[str, Any] | None:
        new = kube.get(kube_api, iris_ns, "ModelVersion", second)
        old = kube.get(kube_api, iris_ns, "ModelVersion", first)
        if (new or {}).get("status", {}).get("aliasList") == "champion" and not (old or {}).get(
            "status", {}
        ).get("aliasList"):
            return {"new": new, "old": old}
        return None

    both = poll(moved, timeout=60, what="alias move")
    assert both["old"]["spec"].get("aliases") == []
    assigned = both["new"]["status"]["aliasHistory"][0]
    assert (assigned["alias"], assigned["action"], assigned["previous"]) == (
        "champion",
        "Assigned",
        first,
    )
    removed = both["old"]["status"]["aliasHistory"][0]
    assert (removed["action"], removed["next"]) == ("Removed", second)

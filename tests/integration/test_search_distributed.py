"""A search spread over pods, end to end on the local control plane: the operator runs
an Indexed Job of shards, then the training Job; the result equals the one-pod search
with the same seed, and every candidate is a row of the trial table in S3."""

from __future__ import annotations

import copy
import io
from typing import Any

import pyarrow.parquet as pq
import pytest
from kubernetes import client

from kubeml.storage import parse_uri
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
IRIS = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
RUN = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def search_run(name: str, parallelism: int) -> dict[str, Any]:
    doc = copy.deepcopy(RUN)
    doc["metadata"]["name"] = name
    doc["spec"]["model"] = name
    doc["spec"]["estimator"]["params"] = {"n_estimators": 10}
    doc["spec"]["search"] = {
        "strategy": "grid",
        "folds": 3,
        "seed": 11,
        "space": {"max_depth": [2, 3, None], "min_samples_leaf": [1, 4]},
        "parallelism": parallelism,
    }
    return doc


def test_three_pods_search_like_one(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
) -> None:
    ns = ml_namespace
    kube.create(kube_api, ns, IRIS)
    kube.wait_condition(kube_api, ns, "Dataset", "iris", "Ready", status="True", timeout=300)
    kube.create(kube_api, ns, search_run("p1", 1))
    kube.create(kube_api, ns, search_run("p3", 3))
    runs = {
        name: kube.wait_condition(
            kube_api, ns, "TrainingRun", name, "Succeeded", status="True", timeout=600
        )["status"]
        for name in ("p1", "p3")
    }
    one, three = runs["p1"], runs["p3"]

    # Three pods, one per completion index, in one Indexed Job; then the training Job.
    assert three["searchJobName"] == "p3-search" and three["jobName"] == "p3-train"
    assert "searchJobName" not in one
    job = client.BatchV1Api(kube_api).read_namespaced_job("p3-search", ns)
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == (
        "Indexed",
        3,
        3,
    )
    assert job.status.succeeded == 3
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(ns, label_selector="job-name=p3-search")
    succeeded = [p for p in pods.items if p.status.phase == "Succeeded"]
    assert sorted(p.metadata.annotations[COMPLETION_INDEX] for p in succeeded) == ["0", "1", "2"]

    # The same winner, scores and test metrics as the one-pod search.
    assert three["bestParams"] == one["bestParams"]
    assert three["trials"]["best"] == one["trials"]["best"]
    assert three["metrics"] == one["metrics"]
    assert (one["trials"]["parallelism"], three["trials"]["parallelism"]) == (1, 3)

    # The trial table: one row per candidate, each from the shard that scored it.
    for status, shards in ((one, {0}), (three, {0, 1, 2})):
        assert status["trials"]["count"] == 6
        bucket, key = parse_uri(status["trials"]["uri"])
        assert key.startswith(f"namespaces/{ns}/results/trainingruns/")
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body)).to_pylist()
        assert [r["candidate"] for r in table] == list(range(6))
        assert {r["shard"] for r in table} == shards
        assert all(len(r["fold_scores"]) == 3 and r["metric"] == "accuracy" for r in table)
        winner = min(table, key=lambda r: r["rank"])
        assert round(winner["mean_score"], 6) == status["trials"]["best"][0]["score"]
    for name in ("p1", "p3"):
        kube.wait_condition(kube_api, ns, "ModelVersion", f"{name}-v1", "Ready", status="True")

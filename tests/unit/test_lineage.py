"""`kubeml lineage`: the chain from data to deployments, built from the objects alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeml import lineage

A, B = "a" * 64, "b" * 64


def obj(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}, "spec": spec, "status": status}


def ready(type_: str = "Ready", status: str = "True", reason: str = "Ready") -> list[Any]:
    return [{"type": type_, "status": status, "reason": reason}]


DATASETS = [
    obj(
        "Dataset",
        "iris",
        {},
        {
            "version": A,
            "rows": {"total": 150, "train": 90, "validation": 30, "test": 30},
            "history": [{"version": B, "uri": "s3://x", "created": "t", "rows": 140}],
            "conditions": ready(),
        },
    )
]


def run(name: str, version: str, mv: str | None, state: str = "Succeeded") -> dict[str, Any]:
    passed = state == "Succeeded"
    return obj(
        "TrainingRun",
        name,
        {"datasetRef": {"name": "iris"}, "model": "iris-classifier", "metrics": ["accuracy"]},
        {
            "datasetVersion": version,
            "metrics": {"accuracy": 0.9667 if passed else 0.5},
            "gates": [{"gate": "accuracy >= 0.85", "passed": passed, "value": 0.9}],
            "conditions": ready("Succeeded", "True" if passed else "False", state),
            **({"modelVersion": mv} if mv else {}),
        },
    )


RUNS = [
    run("iris-rf", A, "iris-v1"),
    run("iris-rf-2", B, "iris-v2"),
    run("iris-bad", A, None, "GateFailed"),
]


def version(name: str, n: int, run_name: str, data: str, aliases: list[str]) -> dict[str, Any]:
    return obj(
        "ModelVersion",
        name,
        {
            "model": "iris-classifier",
            "version": n,
            "keyMetric": "accuracy=0.9667",
            "lineage": {"trainingRun": run_name, "dataset": "iris", "datasetVersion": data},
            "aliases": aliases,
        },
        {"aliases": [{"name": a, "since": "t"} for a in aliases], "conditions": ready()},
    )


VERSIONS = [
    version("iris-v1", 1, "iris-rf", A, ["champion"]),
    version("iris-v2", 2, "iris-rf-2", B, []),
    version("iris-v3", 3, "iris-gone", A, []),
]


def deployment(name: str, stable: str, canary: str | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "stable": {
            "modelVersion": stable,
            "replicas": 2,
            "readyReplicas": 2,
        },
        "conditions": ready(),
    }
    if canary:
        st["canary"] = {
            "modelVersion": canary,
            "replicas": 1,
            "readyReplicas": 1,
            "trafficPercent": 10,
        }
    return obj("Deployment", name, {"model": "iris-classifier"}, st)


DEPLOYMENTS = [deployment("iris", "iris-v1", "iris-v2"), deployment("other", "iris-v1")]


def build(ref: str) -> lineage.Lineage:
    kind, name = lineage.parse_ref(ref)
    return lineage.build(
        kind, name, datasets=DATASETS, runs=RUNS, versions=VERSIONS, deployments=DEPLOYMENTS
    )


def chains(result: lineage.Lineage) -> list[tuple[str, str, str | None, list[str]]]:
    """(data version, run, model version, deployment/track...) per chain."""
    out = []
    for d in result.roots:
        for r in d.runs:
            v = r.model_version
            deps = [f"{s.name}/{s.track}" for s in v.deployments] if v else []
            out.append((d.short[:1], r.name, v.name if v else None, deps))
    return out


def test_from_a_deployment_back_to_the_data_of_each_served_version() -> None:
    result = build("deployment/iris")
    assert chains(result) == [
        ("a", "iris-rf", "iris-v1", ["iris/stable"]),  # not `other`, which also serves v1
        ("b", "iris-rf-2", "iris-v2", ["iris/canary"]),
    ]
    current, old = result.roots
    assert current.current and current.rows == {
        "total": 150,
        "train": 90,
        "validation": 30,
        "test": 30,
    }
    assert not old.current and old.rows == {"total": 140}  # from the Dataset's history
    run_ = current.runs[0]
    assert (run_.state, run_.key_metric, run_.key_value) == ("True Succeeded", "accuracy", 0.9667)
    assert (run_.gates_passed, run_.gates_total) == (1, 1)
    assert run_.model_version is not None and run_.model_version.aliases == ["champion"]
    assert [s.traffic_percent for s in old.runs[0].model_version.deployments] == [10]  # type: ignore[union-attr]


def test_from_a_version_forward_to_every_deployment_serving_it() -> None:
    assert chains(build("mv/iris-v1")) == [
        ("a", "iris-rf", "iris-v1", ["iris/stable", "other/stable"])
    ]


def test_from_a_run_that_produced_no_version() -> None:
    result = build("trainingrun/iris-bad")
    assert chains(result) == [("a", "iris-bad", None, [])]
    assert result.roots[0].runs[0].state == "False GateFailed"


def test_from_a_dataset_forward_through_every_run_on_each_version() -> None:
    assert chains(build("dataset/iris")) == [
        ("a", "iris-bad", None, []),
        ("a", "iris-rf", "iris-v1", ["iris/stable", "other/stable"]),
        ("b", "iris-rf-2", "iris-v2", ["iris/canary"]),
    ]


def test_a_missing_run_is_shown_as_missing() -> None:
    result = build("modelversion/iris-v3")
    (root,) = result.roots
    (r,) = root.runs
    assert (r.name, r.found) == ("iris-gone", False)
    assert r.model_version is not None and r.model_version.found
    assert "trainingrun iris-gone (not found)" in lineage.render(result)


def test_the_tree_shows_each_steps_key_facts() -> None:
    text = lineage.render(build("deployment/iris"))
    assert text.splitlines() == [
        f"dataset iris@{A[:12]}  150 rows (train 90, validation 30, test 30)  current",
        "└── trainingrun iris-rf  True Succeeded  accuracy=0.9667  gates 1/1 passed",
        "    └── modelversion iris-v1  iris-classifier v1  aliases champion  accuracy=0.9667"
        "  Ready=True",
        "        └── deployment iris  stable 90%  2/2 ready  Ready=True",
        f"dataset iris@{B[:12]}  140 rows",
        "└── trainingrun iris-rf-2  True Succeeded  accuracy=0.9667  gates 1/1 passed",
        "    └── modelversion iris-v2  iris-classifier v2  no alias  accuracy=0.9667  Ready=True",
        "        └── deployment iris  canary 10%  1/1 ready  Ready=True",
    ]
    dataset_tree = lineage.render(build("dataset/iris")).splitlines()
    assert dataset_tree[1].startswith("├── trainingrun iris-bad  False GateFailed")
    assert dataset_tree[2].startswith("└── trainingrun iris-rf ")
    assert dataset_tree[3].startswith("    └── modelversion iris-v1")
    assert dataset_tree[4:6] == [
        "        ├── deployment iris  stable 90%  2/2 ready  Ready=True",
        "        └── deployment other  stable 100%  2/2 ready  Ready=True",
    ]


def test_json_carries_the_same_tree() -> None:
    wire = json.loads(json.dumps(build("deployment/iris").wire()))
    assert wire["start"] == "deployment/iris"
    first = wire["datasetVersions"][0]
    assert (first["dataset"], first["version"], first["current"]) == ("iris", A, True)
    mv = first["runs"][0]["modelVersion"]
    assert mv["name"] == "iris-v1" and mv["aliases"] == ["champion"]
    assert mv["deployments"] == [
        {
            "kind": "Deployment",
            "name": "iris",
            "track": "stable",
            "trafficPercent": 90,
            "readyReplicas": 2,
            "replicas": 2,
            "ready": "True",
        }
    ]


def test_a_dataset_nothing_trained_on_yet_is_its_own_lineage() -> None:
    result = lineage.build(
        "Dataset", "iris", datasets=DATASETS, runs=[], versions=[], deployments=[]
    )
    assert [(d.version, d.runs) for d in result.roots] == [(A, [])]


@pytest.mark.parametrize(
    ("ref", "complaint"),
    [("iris", "KIND/NAME"), ("pod/iris", "unknown kind 'pod'"), ("deployment/", "KIND/NAME")],
)
def test_bad_references_are_refused(ref: str, complaint: str) -> None:
    with pytest.raises(lineage.LineageError, match=complaint):
        lineage.parse_ref(ref)


def test_an_unknown_object_is_named() -> None:
    with pytest.raises(lineage.LineageError, match="deployment nope not found"):
        build("deployment/nope")


def test_kinds_accept_kubectls_names() -> None:
    assert lineage.parse_ref("deployments.kubeml.io/iris") == ("Deployment", "iris")
    assert lineage.parse_ref("trun/x") == ("TrainingRun", "x")
    assert lineage.parse_ref("dset/x") == ("Dataset", "x")


def test_shares_stable_takes_what_the_canary_does_not() -> None:
    only = lineage.serving(deployment("x", "iris-v1"))
    assert [(s.track, s.traffic_percent) for s in only] == [("stable", 100)]
    d = deployment("x", "iris-v1", "iris-v2")
    del d["status"]["canary"]["trafficPercent"]  # the canary's share cannot be told yet
    assert [s.traffic_percent for s in lineage.serving(d)] == [None, None]
    assert "stable share unknown" in lineage._serving_facts(lineage.serving(d)[0])


def test_a_deployment_serving_nothing_yet_says_so() -> None:
    waiting = obj("Deployment", "new", {"model": "iris-classifier"}, {})
    result = lineage.build(
        "Deployment", "new", datasets=DATASETS, runs=RUNS, versions=VERSIONS, deployments=[waiting]
    )
    assert result.roots == []
    assert lineage.render(result) == (
        "deployment/new: no lineage recorded yet (nothing served or trained)"
    )

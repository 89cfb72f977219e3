"""Reading the training Job's input from the environment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeml.runtime.training.errors import TrainError
from kubeml.runtime.training.request import cpu_limit, read_request, result_key

SHA = "a" * 64


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "namespace": "ns",
        "name": "run1",
        "generation": 2,
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": "iris",
            "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 10}},
            "search": {"space": {"max_depth": [2, None]}, "folds": 3},
        },
        "dataset": {"name": "iris", "version": SHA, "uri": f"s3://kubeml/datasets/{SHA}/"},
        "champion": None,
    }
    doc.update(over)
    return doc


def _env(doc: Any) -> dict[str, str]:
    return {"KUBEML_TRAININGRUN": json.dumps(doc)}


def test_reads_the_contract() -> None:
    champion = {
        "name": "iris-v3",
        "version": 3,
        "artifact": {
            "uri": "s3://kubeml/models/iris/x.skops",
            "sha256": SHA,
            "size": 10,
            "format": "skops",
        },
        "datasetVersion": SHA,
        "metrics": {"accuracy": 0.9},
    }
    req = read_request(_env(_doc(champion=champion, futureField=1)))
    assert req.spec.estimator.params == {"n_estimators": 10}
    assert req.spec.search is not None and req.spec.search.space == {"max_depth": [2, None]}
    assert req.dataset.version == SHA
    assert req.champion is not None and req.champion.artifact.sha256 == SHA
    assert req.champion.dataset_version == SHA
    assert req.display == "trainingrun ns/run1"


def _error(env: dict[str, str]) -> TrainError:
    with pytest.raises(TrainError) as err:
        read_request(env)
    assert err.value.exit_code == 2
    return err.value


def test_missing_or_malformed_request() -> None:
    assert _error({}).reason == "InvalidRequest"
    assert _error({"KUBEML_TRAININGRUN": "{"}).reason == "InvalidRequest"
    assert _error(_env(_doc(dataset={"name": "iris"}))).reason == "InvalidRequest"


def test_spec_errors_have_specific_reasons() -> None:
    doc = _doc()
    doc["spec"]["estimator"] = {"name": "no-such-model"}
    assert _error(_env(doc)).reason == "UnknownEstimator"
    doc = _doc()
    doc["spec"]["estimator"]["params"] = {"bogus": 1}
    err = _error(_env(doc))
    assert err.reason == "InvalidParams" and "bogus" in err.message
    doc = _doc()
    doc["spec"]["metrics"] = ["rmse"]
    assert _error(_env(doc)).reason == "InvalidSpec"


def test_cpu_limit() -> None:
    assert cpu_limit({"KUBEML_CPU_LIMIT": "1"}) == 1
    visible = cpu_limit({})
    assert visible >= 1
    assert cpu_limit({"KUBEML_CPU_LIMIT": "512"}) == visible  # never more than we can see
    assert cpu_limit({"KUBEML_CPU_LIMIT": "lots"}) == visible
    assert cpu_limit({"KUBEML_CPU_LIMIT": "0"}) == visible


def test_result_key() -> None:
    assert result_key({"KUBEML_RESULT_KEY": "results/x.json"}) == "results/x.json"
    assert result_key({"KUBEML_RESULT_KEY": ""}) is None

"""The training program against a real S3 server (SeaweedFS on loopback): datasets
prepared by `kubeml prepare`, models trained, verified, compared and refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubeml import models
from kubeml.runtime import prepare, train
from kubeml.runtime.training.dataset import load_dataset
from kubeml.storage import ArtifactStore, parse_uri
from kubeml.storage.devserver import SeaweedS3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[SeaweedS3]:
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="module")
def store(s3: SeaweedS3) -> ArtifactStore:
    return ArtifactStore(s3.settings(), env=s3.env())


def _with_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        mp.setenv(key, value)


def _prepare(s3: SeaweedS3, store: ArtifactStore, name: str, spec: dict[str, Any]) -> Any:
    key = f"results/datasets/test/{name}-{uuid.uuid4().hex[:6]}.json"
    payload = {"namespace": "test", "name": name, "generation": 1, "spec": spec}
    with pytest.MonkeyPatch.context() as mp:
        _with_env(mp, {**s3.env(), "KUBEML_DATASET": json.dumps(payload), "KUBEML_RESULT_KEY": key})
        assert prepare.main([]) == 0
    result = store.get_json(key)
    assert result["ok"], result
    return {"name": name, "version": result["version"], "uri": result["uri"]}


@pytest.fixture(scope="module")
def iris(s3: SeaweedS3, store: ArtifactStore) -> dict[str, Any]:
    spec = {
        "source": {"builtin": {"name": "iris"}},
        "target": "target",
        "split": {"validation": 0.2, "test": 0.2, "seed": 1, "stratify": True},
    }
    return dict(_prepare(s3, store, "iris", spec))


def _run(
    s3: SeaweedS3,
    store: ArtifactStore,
    dataset: dict[str, Any],
    spec: dict[str, Any],
    *,
    champion: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    key = f"results/trainingruns/test/{uuid.uuid4().hex[:8]}.json"
    request = {
        "namespace": "test",
        "name": "run",
        "generation": 1,
        "spec": spec,
        "dataset": dataset,
        "champion": champion,
    }
    with pytest.MonkeyPatch.context() as mp:
        _with_env(
            mp,
            {
                **s3.env(),
                "KUBEML_TRAININGRUN": json.dumps(request),
                "KUBEML_RESULT_KEY": key,
                "KUBEML_CPU_LIMIT": "2",
                **(env or {}),
            },
        )
        code = train.main([])
    result = store.get_json(key) if store.exists(key) else None
    return code, result


FOREST: dict[str, Any] = {
    "datasetRef": {"name": "iris"},
    "model": "iris",
    "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 25}},
    "search": {"strategy": "grid", "space": {"max_depth": [2, 4, None]}, "folds": 3, "seed": 7},
    "metrics": ["accuracy", "f1_macro", "roc_auc", "log_loss"],
}


@pytest.fixture(scope="module")
def forest_result(s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]) -> dict[str, Any]:
    code, result = _run(s3, store, iris, FOREST)
    assert code == 0, result
    assert result is not None
    return result


def test_iris_forest_with_a_grid(
    store: ArtifactStore, iris: dict[str, Any], forest_result: dict[str, Any]
) -> None:
    r = forest_result
    assert r["ok"] is True and r["datasetVersion"] == iris["version"]
    assert r["metrics"]["test"]["accuracy"] > 0.85
    assert set(r["metrics"]["test"]) == set(FOREST["metrics"])
    assert set(r["metrics"]["validation"]) == set(FOREST["metrics"])
    assert r["bestParams"]["max_depth"] in (2, 4, None)
    assert r["bestParams"]["random_state"] == 7 and r["bestParams"]["n_estimators"] == 25
    assert 0.8 < r["cvScore"] <= 1.0
    assert set(r["environment"]) == {"python", "scikit-learn", "numpy", "skops", "pandas"}
    assert set(r["timings"]) == {"loadSeconds", "fitSeconds", "evaluateSeconds"}
    assert r["championMetrics"] is None and r["championError"] is None
    assert r["champion"] is None  # nothing measured, and the result says so
    sig = r["signature"]
    assert sig["task"] == "classification" and sig["classes"] == ["0", "1", "2"]
    assert [i["name"] for i in sig["inputs"]][:1] == ["sepal length (cm)"]
    assert {o["name"] for o in sig["outputs"]} == {"predict", "predict_proba"}

    art = r["artifact"]
    assert art["format"] == "skops"
    bucket, key = parse_uri(art["uri"])
    # In the namespace's own model space (the request's namespace is "test").
    assert bucket == store.bucket and key == f"namespaces/test/models/iris/{art['sha256']}.skops"
    data = store.get_bytes(key, expected_sha256=art["sha256"])
    assert len(data) == art["size"]
    model = models.load(data, art["sha256"])
    assert list(model.classes_) == [0, 1, 2]


def test_rerun_gives_the_same_metrics(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any], forest_result: dict[str, Any]
) -> None:
    code, again = _run(s3, store, iris, FOREST)
    assert code == 0 and again is not None
    for key in ("metrics", "bestParams", "cvScore", "signature"):
        assert again[key] == forest_result[key], key


def test_champion_is_measured_on_our_test_split(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any], forest_result: dict[str, Any]
) -> None:
    champion = {
        "name": "iris-v1",
        "version": 1,
        "artifact": forest_result["artifact"],
        "datasetVersion": iris["version"],
        "metrics": forest_result["metrics"]["test"],
    }
    challenger = {
        **FOREST,
        "estimator": {"name": "logistic-regression", "params": {"max_iter": 500}},
    }
    challenger.pop("search")
    code, r = _run(s3, store, iris, challenger, champion=champion)
    assert code == 0 and r is not None and r["ok"]
    # Same model, same test split: the champion's measurement is the run's own.
    assert r["championMetrics"] == forest_result["metrics"]["test"]
    assert r["championError"] is None
    # The result names the version it measured: the gate judges against exactly that.
    assert r["champion"] == {"name": champion["name"], "version": champion["version"]}


def test_unloadable_champion_is_reported_not_fatal(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any], forest_result: dict[str, Any]
) -> None:
    art = {**forest_result["artifact"], "sha256": "0" * 64}
    champion = {"name": "iris-v1", "version": 1, "artifact": art, "metrics": {}}
    spec = {**FOREST, "search": {**FOREST["search"], "space": {"max_depth": [3]}}}
    code, r = _run(s3, store, iris, spec, champion=champion)
    assert code == 0 and r is not None and r["ok"]
    assert r["championMetrics"] is None
    assert "ArtifactMismatch" in r["championError"] and "iris-v1" in r["championError"]


def test_tampered_split_is_dataset_integrity(s3: SeaweedS3, store: ArtifactStore) -> None:
    spec = {
        "source": {"builtin": {"name": "iris"}},
        "target": "target",
        "split": {"test": 0.3, "seed": 99},  # its own version: the shared one stays intact
    }
    ds = _prepare(s3, store, "iris-tampered", spec)
    _, prefix = parse_uri(ds["uri"])
    good = store.get_bytes(prefix + "train.parquet")
    store.put_bytes(prefix + "train.parquet", good[:-10] + b"0123456789")
    code, r = _run(s3, store, ds, {**FOREST, "datasetRef": {"name": "iris-tampered"}})
    assert code == 2 and r is not None
    assert r == {"ok": False, "reason": "DatasetIntegrity", "message": r["message"]}
    assert "train.parquet" in r["message"] and "iris-tampered" in r["message"]


def test_classifier_on_a_regression_target(s3: SeaweedS3, store: ArtifactStore) -> None:
    diabetes = _prepare(
        s3, store, "diabetes", {"source": {"builtin": {"name": "diabetes"}}, "target": "target"}
    )
    spec = {
        "datasetRef": {"name": "diabetes"},
        "model": "diabetes",
        "estimator": {"name": "random-forest-classifier"},
    }
    code, r = _run(s3, store, diabetes, spec)
    assert code == 2 and r is not None and r["ok"] is False
    assert r["reason"] == "TargetMismatch"
    assert "'target'" in r["message"] and "diabetes" in r["message"]


def test_invalid_params_exit_2(s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]) -> None:
    spec = {
        **FOREST,
        "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 0}},
    }
    code, r = _run(s3, store, iris, spec)
    assert code == 2 and r is not None
    assert r["reason"] == "InvalidParams" and "n_estimators" in r["message"]


def test_unreachable_s3_is_transient(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]
) -> None:
    from kubeml.storage.devserver import free_ports

    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    code, _ = _run(s3, store, iris, FOREST, env={"AWS_ENDPOINT_URL": dead})
    assert code == 3


def _run_at(
    s3: SeaweedS3,
    key: str,
    dataset: dict[str, Any],
    spec: dict[str, Any],
    argv: list[str],
    **env: str,
) -> int:
    request = {
        "namespace": "test",
        "name": "run",
        "generation": 1,
        "spec": spec,
        "dataset": dataset,
    }
    with pytest.MonkeyPatch.context() as mp:
        _with_env(
            mp,
            {
                **s3.env(),
                "KUBEML_TRAININGRUN": json.dumps(request),
                "KUBEML_RESULT_KEY": key,
                "KUBEML_CPU_LIMIT": "2",
                **env,
            },
        )
        return train.main(argv)


SEARCH = {
    **FOREST,
    "search": {
        "strategy": "grid",
        "space": {"max_depth": [2, 3, None], "min_samples_leaf": [1, 5]},
        "folds": 3,
        "seed": 7,
    },
}


def test_a_search_sharded_over_three_pods_equals_the_one_pod_search(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]
) -> None:
    from kubeml.runtime.training import trials

    one_key = f"results/trainingruns/test/one-{uuid.uuid4().hex[:8]}.json"
    assert _run_at(s3, one_key, iris, SEARCH, []) == 0
    one = store.get_json(one_key)

    spec = {**SEARCH, "search": {**SEARCH["search"], "parallelism": 3}}
    key = f"results/trainingruns/test/three-{uuid.uuid4().hex[:8]}.json"
    for index in range(3):
        assert _run_at(s3, key, iris, spec, ["--shard"], JOB_COMPLETION_INDEX=str(index)) == 0
        assert not store.exists(key)  # a shard never writes the run's result
    prefix = key.removesuffix(".json") + "/"
    assert sorted(o.key for o in store.list_prefix(prefix + "shards/")) == sorted(
        f"{prefix}shards/{i}.{ext}" for i in range(3) for ext in ("json", "parquet")
    )
    report = store.get_json(f"{prefix}shards/1.json")
    assert (report["shard"], report["trials"]) == (1, 2)
    assert report["timings"]["loadSeconds"] > 0 and report["timings"]["scoreSeconds"] > 0
    assert _run_at(s3, key, iris, spec, []) == 0
    three = store.get_json(key)

    assert three["ok"], three
    assert three["bestParams"] == one["bestParams"] and three["cvScore"] == one["cvScore"]
    assert three["metrics"] == one["metrics"]
    assert three["trials"]["count"] == one["trials"]["count"] == 6
    assert three["trials"]["best"] == one["trials"]["best"]
    assert (one["trials"]["parallelism"], three["trials"]["parallelism"]) == (1, 3)
    bucket, table_key = parse_uri(three["trials"]["uri"])
    assert bucket == store.bucket and table_key == prefix + "trials.parquet"
    rows = trials.from_parquet(store.get_bytes(table_key), lambda s: s)
    assert [r.candidate for r in rows] == list(range(6))
    assert sorted({r.shard for r in rows}) == [0, 1, 2]
    assert all(len(r.fold_scores) == 3 for r in rows)
    best = max(rows, key=lambda r: (r.mean, -r.candidate))
    assert {k: best.params[k] for k in best.params} == {
        k: three["bestParams"][k] for k in best.params
    }


def test_a_missing_shard_fails_naming_its_key(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]
) -> None:
    spec = {**SEARCH, "search": {**SEARCH["search"], "parallelism": 2}}
    key = f"results/trainingruns/test/gap-{uuid.uuid4().hex[:8]}.json"
    assert _run_at(s3, key, iris, spec, ["--shard"], JOB_COMPLETION_INDEX="0") == 0
    assert _run_at(s3, key, iris, spec, []) == 2
    doc = store.get_json(key)
    missing = store.uri(key.removesuffix(".json") + "/shards/1.parquet")
    assert doc["reason"] == "TrialsMissing" and missing in doc["message"]


def test_a_shard_without_a_completion_index_is_refused(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]
) -> None:
    spec = {**SEARCH, "search": {**SEARCH["search"], "parallelism": 2}}
    key = f"results/trainingruns/test/noindex-{uuid.uuid4().hex[:8]}.json"
    assert _run_at(s3, key, iris, spec, ["--shard"], JOB_COMPLETION_INDEX="5") == 2
    doc = store.get_json(key)
    assert doc["reason"] == "InvalidRequest" and "JOB_COMPLETION_INDEX" in doc["message"]


@pytest.fixture(scope="module")
def cancer(s3: SeaweedS3, store: ArtifactStore) -> dict[str, Any]:
    spec = {
        "source": {"builtin": {"name": "breast_cancer"}},
        "target": "target",
        "split": {"validation": 0.2, "test": 0.2, "seed": 3, "stratify": True},
    }
    return dict(_prepare(s3, store, "cancer", spec))


SCALED = {
    "datasetRef": {"name": "cancer"},
    "model": "cancer",
    "estimator": {"name": "logistic-regression", "params": {"max_iter": 200}},
    "preprocessing": {"numeric": {"imputer": "mean"}},
    "search": {
        "space": {"C": [0.1, 1.0]},
        "preprocessing": {"scaler": ["none", "standard", "minmax", "robust"]},
        "folds": 3,
        "seed": 5,
        "parallelism": 2,
    },
    "metrics": ["accuracy", "f1"],
}


def test_a_search_over_scalers_spread_over_two_pods(
    s3: SeaweedS3, store: ArtifactStore, cancer: dict[str, Any]
) -> None:
    key = f"results/trainingruns/test/scalers-{uuid.uuid4().hex[:8]}.json"
    for index in range(2):
        assert _run_at(s3, key, cancer, SCALED, ["--shard"], JOB_COMPLETION_INDEX=str(index)) == 0
    assert _run_at(s3, key, cancer, SCALED, []) == 0
    r = store.get_json(key)
    assert r["ok"], r
    assert r["trials"]["count"] == 8
    scaler = r["bestParams"]["preprocessing.scaler"]
    assert scaler in {"none", "standard", "minmax", "robust"}
    assert r["trials"]["best"][0]["params"]["preprocessing.scaler"] == scaler
    # The artifact is the winner's whole pipeline, loadable under the allowlist, and
    # it scores the test split as the run reported.
    _, artifact_key = parse_uri(r["artifact"]["uri"])
    model = models.load(store.get_bytes(artifact_key), r["artifact"]["sha256"])
    data = load_dataset(store, name="cancer", version=cancer["version"], uri=cancer["uri"])
    columns = [i["name"] for i in r["signature"]["inputs"]]
    accuracy = float((model.predict(data.test[columns]) == data.test[data.target]).mean())
    assert accuracy == pytest.approx(r["metrics"]["test"]["accuracy"])
    numeric = {n: t for n, t, _ in model.named_steps["features"].transformers_}["numeric"]
    expected = {"none": "passthrough", "standard": "StandardScaler", "minmax": "MinMaxScaler"}
    got = numeric if isinstance(numeric, str) else type(numeric).__name__
    assert got == expected.get(scaler, "RobustScaler")


def test_features_selected_by_name(
    s3: SeaweedS3, store: ArtifactStore, iris: dict[str, Any]
) -> None:
    chosen = ["petal width (cm)", "petal length (cm)"]
    spec = {**FOREST, "preprocessing": {"features": chosen}}
    code, result = _run(s3, store, iris, spec)
    assert code == 0 and result is not None, result
    assert [i["name"] for i in result["signature"]["inputs"]] == chosen

    bad = {**FOREST, "preprocessing": {"features": ["petal width (cm)", "stalk length"]}}
    code, result = _run(s3, store, iris, bad)
    assert code == 2 and result is not None
    assert result["reason"] == "FeatureNotFound"
    assert "'stalk length'" in result["message"] and "iris" in result["message"]

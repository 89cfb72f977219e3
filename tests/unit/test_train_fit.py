"""Fitting: search winners unprefixed, reproducible results, bad params as InvalidParams."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from kubeml.api.trainingrun import TrainingRunSpec
from kubeml.runtime.training.errors import TrainError
from kubeml.runtime.training.evaluate import evaluate
from kubeml.runtime.training.features import feature_columns
from kubeml.runtime.training.fit import fit, metric_names, run_seed


def _spec(
    estimator: str, params: Any = None, search: Any = None, metrics: Any = None
) -> TrainingRunSpec:
    doc: dict[str, Any] = {
        "datasetRef": {"name": "d"},
        "model": "m",
        "estimator": {"name": estimator, **({"params": params} if params else {})},
    }
    if search:
        doc["search"] = search
    if metrics:
        doc["metrics"] = metrics
    return TrainingRunSpec.model_validate(doc)


def _iris() -> tuple[pd.DataFrame, list[str]]:
    frame = load_iris(as_frame=True).frame
    return frame, [c for c in frame.columns if c != "target"]


def _run(spec: TrainingRunSpec, frame: pd.DataFrame, cols: list[str]) -> Any:
    feats = feature_columns([(c, "number") for c in cols], [frame])
    return fit(spec, feats, frame[cols], frame["target"], cpu=2)


def test_grid_search_reports_unprefixed_winners_and_cv_score() -> None:
    frame, cols = _iris()
    spec = _spec(
        "random-forest-classifier",
        {"n_estimators": 10},
        {"space": {"max_depth": [1, 4]}, "folds": 3, "seed": 5},
    )
    fitted = _run(spec, frame, cols)
    assert fitted.best_params == {"n_estimators": 10, "random_state": 5, "max_depth": 4}
    assert fitted.cv_metric == "accuracy" and 0.85 < fitted.cv_score <= 1.0
    forest = fitted.model.named_steps["estimator"]
    assert forest.max_depth == 4 and forest.random_state == 5
    assert forest.n_jobs is None  # the training pod's cores are not baked into the artifact


def test_lower_is_better_scoring_reports_a_positive_cv_value() -> None:
    data = load_diabetes(as_frame=True).frame
    cols = [c for c in data.columns if c != "target"]
    spec = _spec(
        "ridge",
        search={"space": {"alpha": [0.1, 10.0]}, "folds": 3, "scoring": "mae"},
        metrics=["r2", "mae"],
    )
    fitted = _run(spec, data, cols)
    assert fitted.cv_metric == "mae" and fitted.cv_score > 0


def test_same_spec_and_seed_give_identical_metrics() -> None:
    frame, cols = _iris()
    spec = _spec(
        "random-forest-classifier",
        {"n_estimators": 15, "max_features": 1},
        {"strategy": "random", "trials": 3, "space": {"max_depth": [1, 2, 3, 5]}, "seed": 1},
        metrics=["accuracy", "log_loss", "roc_auc"],
    )
    runs = [_run(spec, frame, cols) for _ in range(2)]
    results = [
        evaluate(r.model, "classification", metric_names(spec), frame, cols, "target") for r in runs
    ]
    assert results[0] == results[1]
    assert runs[0].best_params == runs[1].best_params and runs[0].cv_score == runs[1].cv_score
    np.testing.assert_array_equal(
        runs[0].model.predict_proba(frame[cols]), runs[1].model.predict_proba(frame[cols])
    )


def test_seed_is_the_search_seed_or_zero() -> None:
    assert run_seed(_spec("svc")) == 0
    assert run_seed(_spec("svc", search={"space": {"C": [1.0]}, "seed": 42})) == 42


def test_invalid_param_fails_before_fitting() -> None:
    frame, cols = _iris()
    with pytest.raises(TrainError) as err:
        _run(_spec("knn-classifier", {"n_neighbors": 0}), frame, cols)
    assert err.value.reason == "InvalidParams" and "n_neighbors" in err.value.message


def test_probability_scoring_without_probabilities_is_refused() -> None:
    frame, cols = _iris()
    spec = _spec(
        "ridge-classifier",
        search={"space": {"alpha": [1.0]}, "scoring": "log_loss"},
        metrics=["accuracy", "log_loss"],
    )
    with pytest.raises(TrainError) as err:
        _run(spec, frame, cols)
    assert err.value.reason == "InvalidParams" and "log_loss" in err.value.message


def test_default_metrics_per_task() -> None:
    assert metric_names(_spec("svc")) == ["accuracy", "f1_macro"]
    assert metric_names(_spec("svr")) == ["r2", "rmse"]

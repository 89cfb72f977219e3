"""Search construction: scorers with the right sign, prefixed spaces, seeded folds."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import check_scoring, get_scorer
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold

from kubeml.api.estimators import LOWER_IS_BETTER, METRICS
from kubeml.api.trainingrun import Search
from kubeml.runtime.training.estimator import make_estimator
from kubeml.runtime.training.features import FeatureColumn, build_pipeline
from kubeml.runtime.training.metrics import compute_metrics
from kubeml.runtime.training.search import (
    build_search,
    folds,
    natural_score,
    needs_proba,
    prefixed,
    scorer_for,
    unprefixed,
)

FEATURES = [FeatureColumn("a", "number"), FeatureColumn("b", "number")]


def _data(task: str, classes: int = 2, labels: Any = None) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    if task == "regression":
        return X, X["a"] * 3 + rng.normal(size=120)
    y = (X["a"] > 0).astype(int).to_numpy() + (X["b"] > 1).astype(int).to_numpy() * (classes - 2)
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


def _scorer_value(metric: str, model: Any, X: pd.DataFrame, y: Any, classes: Any) -> float:
    scorer = scorer_for(metric, classes)
    fn = get_scorer(scorer) if isinstance(scorer, str) else check_scoring(model, scoring=scorer)
    return float(fn(model, X, y))


@pytest.mark.parametrize(
    ("task", "n_classes", "labels"),
    [
        ("classification", 2, None),
        ("classification", 2, ["no", "yes"]),
        ("classification", 3, None),
        ("regression", 0, None),
    ],
)
def test_scorer_value_equals_the_metric_with_the_right_sign(
    task: str, n_classes: int, labels: Any
) -> None:
    X, y = _data(task, n_classes, labels)
    name = "logistic-regression" if task == "classification" else "ridge"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_pipeline(FEATURES, make_estimator(name, {}, n_jobs=None)).fit(X, y)
    classes = list(getattr(model, "classes_", [])) or None
    names = METRICS["classification" if task == "classification" else "regression"]
    pred = model.predict(X)
    proba = model.predict_proba(X) if classes else None
    truth = compute_metrics(task, names, y, pred, classes=classes, proba=proba)  # type: ignore[arg-type]
    for metric in names:
        value = _scorer_value(metric, model, X, y, classes)
        sign = -1 if metric in LOWER_IS_BETTER else 1
        expected = truth[metric]
        assert value == pytest.approx(sign * expected), metric
        assert natural_score(metric, value) == pytest.approx(truth[metric]), metric


def test_lower_is_better_metrics_use_neg_scorers() -> None:
    for metric in LOWER_IS_BETTER:
        scorer = scorer_for(metric)
        assert isinstance(scorer, str) and scorer.startswith("neg_"), metric
    assert scorer_for("r2") == "r2"
    assert scorer_for("roc_auc", [0, 1]) == "roc_auc"
    assert scorer_for("roc_auc", [0, 1, 2]) == "roc_auc_ovr_weighted"
    assert scorer_for("f1", [0, 1, 2]) == "f1_weighted"
    assert natural_score("mae", -2.5) == 2.5
    assert natural_score("accuracy", 0.9) == 0.9


def test_needs_proba() -> None:
    assert needs_proba("log_loss", [0, 1])
    assert needs_proba("roc_auc", [0, 1, 2])
    assert not needs_proba("roc_auc", [0, 1])  # the binary scorer falls back to decisions
    assert not needs_proba("accuracy", [0, 1, 2])


def test_prefixing_round_trips() -> None:
    params = {"max_depth": [2, None], "n_estimators": [10]}
    assert prefixed(params) == {"estimator__max_depth": [2, None], "estimator__n_estimators": [10]}
    assert unprefixed(prefixed(params)) == params
    assert unprefixed({"features__x": 1, "estimator__C": 2}) == {"C": 2}


def test_folds_are_seeded_and_stratified_for_classification() -> None:
    cv = folds("classification", 4, 11)
    assert isinstance(cv, StratifiedKFold)
    assert (cv.n_splits, cv.shuffle, cv.random_state) == (4, True, 11)
    reg = folds("regression", 3, 5)
    assert isinstance(reg, KFold) and not isinstance(reg, StratifiedKFold)
    assert (reg.n_splits, reg.shuffle, reg.random_state) == (3, True, 5)


def test_grid_and_random_search_construction() -> None:
    pipe = build_pipeline(FEATURES, make_estimator("random-forest-classifier", {}, n_jobs=1))
    grid = build_search(
        pipe,
        Search(space={"max_depth": [2, 3]}, folds=3, seed=4, scoring="log_loss"),
        task="classification",
        metric="log_loss",
        classes=[0, 1],
        n_jobs=2,
    )
    assert isinstance(grid, GridSearchCV)
    assert grid.param_grid == {"estimator__max_depth": [2, 3]}
    assert grid.scoring == "neg_log_loss"
    assert grid.n_jobs == 2 and grid.refit is False and grid.error_score == "raise"
    rand = build_search(
        pipe,
        Search(strategy="random", trials=5, space={"n_estimators": [5, 10, 20]}, seed=9),
        task="classification",
        metric="accuracy",
        classes=[0, 1],
        n_jobs=1,
    )
    assert isinstance(rand, RandomizedSearchCV)
    assert (rand.n_iter, rand.random_state) == (5, 9)
    assert rand.param_distributions == {"estimator__n_estimators": [5, 10, 20]}

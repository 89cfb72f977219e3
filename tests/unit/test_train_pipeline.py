"""Pipeline building: preprocessing from the schema, estimator params, seed and cores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from kubeml.runtime.training.errors import TrainError
from kubeml.runtime.training.estimator import effective_params, make_estimator, validate_space
from kubeml.runtime.training.features import (
    MAX_TEXT_CATEGORIES,
    FeatureColumn,
    build_pipeline,
    build_preprocessor,
    feature_columns,
)


def _groups(ct: ColumnTransformer) -> dict[str, tuple[object, list[str]]]:
    return {name: (t, cols) for name, t, cols in ct.transformers}


def test_numeric_passthrough_and_categorical_one_hot() -> None:
    ct = build_preprocessor(
        [
            FeatureColumn("a", "number"),
            FeatureColumn("n", "integer"),
            FeatureColumn("c", "category"),
            FeatureColumn("f", "boolean"),
        ]
    )
    groups = _groups(ct)
    assert groups["numeric"] == ("passthrough", ["a", "n"])
    encoder, cols = groups["categorical"]
    assert cols == ["c", "f"]
    assert isinstance(encoder, OneHotEncoder)
    assert encoder.handle_unknown == "ignore" and encoder.sparse_output is False
    assert ct.remainder == "drop"


def test_nullable_columns_are_imputed() -> None:
    ct = build_preprocessor(
        [FeatureColumn("a", "number", nullable=True), FeatureColumn("c", "category", True)]
    )
    groups = _groups(ct)
    imputer, cols = groups["numeric_imputed"]
    assert isinstance(imputer, SimpleImputer) and imputer.strategy == "median"
    assert cols == ["a"]
    pipe, cols = groups["categorical_imputed"]
    assert isinstance(pipe, Pipeline) and cols == ["c"]
    assert pipe.steps[0][1].strategy == "most_frequent"


def test_free_text_is_capped() -> None:
    encoder, _ = _groups(build_preprocessor([FeatureColumn("name", "string")]))["text"]
    assert isinstance(encoder, OneHotEncoder)
    assert encoder.max_categories == MAX_TEXT_CATEGORIES


def test_feature_columns_mark_nulls_in_any_split() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    test = pd.DataFrame({"a": [np.nan], "b": ["x"]})
    cols = feature_columns([("a", "number"), ("b", "category")], [train, test])
    assert cols == [FeatureColumn("a", "number", True), FeatureColumn("b", "category", False)]


def test_pipeline_fits_mixed_columns_and_ignores_unseen_categories() -> None:
    X = pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 4.0] * 5,
            "c": ["r", "g", None, "r"] * 5,
            "f": [True, False, True, False] * 5,
        }
    )
    y = np.array([0, 1, 0, 1] * 5)
    feats = feature_columns([("a", "number"), ("c", "category"), ("f", "boolean")], [X])
    model = build_pipeline(feats, make_estimator("logistic-regression", {}, n_jobs=None))
    model.fit(X, y)
    unseen = pd.DataFrame({"a": [np.nan], "c": ["purple"], "f": [True]})
    assert model.predict(unseen).shape == (1,)
    assert model[:-1].transform(X).dtype == np.float64  # no object arrays


def test_seed_is_injected_unless_set_or_searched() -> None:
    assert effective_params("random-forest-classifier", {"n_estimators": 5}, seed=3) == {
        "n_estimators": 5,
        "random_state": 3,
    }
    assert effective_params("random-forest-classifier", {"random_state": 1}, seed=3) == {
        "random_state": 1
    }
    assert effective_params("svc", None, seed=3, searched=["random_state"]) == {}
    assert effective_params("linear-regression", None, seed=3) == {}  # has no random_state


def test_n_jobs_only_where_the_fit_uses_it() -> None:
    forest = make_estimator("random-forest-classifier", {}, n_jobs=2)
    assert isinstance(forest, RandomForestClassifier) and forest.n_jobs == 2
    logreg = make_estimator("logistic-regression", {}, n_jobs=2)
    assert logreg.get_params().get("n_jobs") is None  # no effect there since sklearn 1.8


def test_invalid_param_value_is_invalid_params() -> None:
    with pytest.raises(TrainError) as err:
        make_estimator("random-forest-classifier", {"n_estimators": -1}, n_jobs=None)
    assert err.value.reason == "InvalidParams"
    assert "n_estimators" in err.value.message and err.value.exit_code == 2


def test_unknown_param_is_invalid_params() -> None:
    with pytest.raises(TrainError) as err:
        make_estimator("ridge", {"no_such_param": 1}, n_jobs=None)
    assert err.value.reason == "InvalidParams"


def test_invalid_value_in_search_space_names_it() -> None:
    est = make_estimator("random-forest-classifier", {}, n_jobs=None)
    with pytest.raises(TrainError) as err:
        validate_space(est, "random-forest-classifier", {"max_depth": [3, "deep"]})
    assert err.value.reason == "InvalidParams"
    assert "search.space.max_depth='deep'" in err.value.message

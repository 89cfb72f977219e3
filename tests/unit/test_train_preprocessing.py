"""Preprocessing the user controls: scalers, imputers, encoder options and feature
selection, searchable like estimator parameters, and every fitted pipeline a skops
artifact that loads with the allowlist alone."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from kubeml import models
from kubeml.api import ManifestError, parse_manifest
from kubeml.api.trainingrun import Preprocessing, TrainingRunSpec
from kubeml.runtime.training import trials
from kubeml.runtime.training.features import (
    FeatureColumn,
    build_pipeline,
    build_preprocessor,
    select_features,
)
from kubeml.runtime.training.fit import fit, with_choices
from tests.support.cases import ROOT, load_yaml

FEATURES = [
    FeatureColumn("small", "number"),
    FeatureColumn("huge", "number", nullable=True),
    FeatureColumn("colour", "category", nullable=True),
    FeatureColumn("flag", "boolean", nullable=True),
]
SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


def _data(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A target driven by two numeric features on wildly different scales, so a
    regularised linear model depends on scaling; nulls in three columns."""
    rng = np.random.default_rng(seed)
    small = rng.normal(size=n) * 1e-3
    huge = rng.normal(size=n) * 1e4
    y = ((small * 1e3 + huge * 1e-4 + rng.normal(scale=0.3, size=n)) > 0).astype(int)
    colour = rng.choice(["red", "green", "blue", "teal"], size=n).astype(object)
    flag = rng.choice([True, False], size=n).astype(object)
    X = pd.DataFrame({"small": small, "huge": huge, "colour": colour, "flag": flag})
    for col in ("huge", "colour", "flag"):
        X.loc[rng.choice(n, size=n // 10, replace=False), col] = None
    return X, pd.Series(y, name="y")


def _groups(options: Preprocessing | None) -> dict[str, Any]:
    ct = build_preprocessor(FEATURES, options)
    return {name: t for name, t, _ in ct.transformers}


def _spec(**spec: Any) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(
        {"datasetRef": {"name": "d"}, "model": "m", "estimator": {"name": "logistic-regression"}}
        | spec
    )


def test_defaults_keep_numbers_as_they_are() -> None:
    g = _groups(None)
    assert g["numeric"] == "passthrough"
    assert isinstance(g["numeric_imputed"], SimpleImputer)
    assert g["numeric_imputed"].strategy == "median"
    encode = g["categorical_imputed"].named_steps["encode"]
    assert encode.handle_unknown == "ignore" and encode.max_categories is None
    assert _groups(Preprocessing()).keys() == g.keys()


@pytest.mark.parametrize("name", sorted(SCALERS))
def test_each_scaler_applies_to_imputed_and_complete_columns(name: str) -> None:
    g = _groups(Preprocessing.model_validate({"numeric": {"scaler": name, "imputer": "mean"}}))
    assert isinstance(g["numeric"], SCALERS[name])
    imputed = g["numeric_imputed"]
    assert isinstance(imputed, Pipeline)
    assert imputed.named_steps["impute"].strategy == "mean"
    assert isinstance(imputed.named_steps["scale"], SCALERS[name])


def test_scaled_numbers_come_out_scaled() -> None:
    X, _ = _data()
    opts = Preprocessing.model_validate({"numeric": {"scaler": "minmax", "imputer": "constant"}})
    out = build_preprocessor(FEATURES[:2], opts).fit_transform(X[["small", "huge"]])
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)


def test_categorical_options_reach_the_encoder_and_imputer() -> None:
    opts = Preprocessing.model_validate(
        {
            "categorical": {
                "imputer": "constant",
                "maxCategories": 3,
                "handleUnknown": "infrequent_if_exist",
            }
        }
    )
    g = _groups(opts)
    colour = g["categorical_imputed"]
    assert colour.named_steps["impute"].strategy == "constant"
    assert colour.named_steps["impute"].fill_value == "missing"
    encode = colour.named_steps["encode"]
    assert isinstance(encode, OneHotEncoder)
    assert (encode.max_categories, encode.handle_unknown) == (3, "infrequent_if_exist")
    # A boolean column keeps its most frequent value: "missing" among booleans would
    # leave the encoder with values it cannot sort.
    assert g["boolean_imputed"].named_steps["impute"].strategy == "most_frequent"
    X, y = _data()
    Xt = build_preprocessor(FEATURES, opts).fit_transform(X, y)
    assert np.isfinite(Xt).all()


def test_features_are_selected_by_name_in_the_users_order() -> None:
    chosen = select_features(FEATURES, ["colour", "small", "colour"])
    assert [f.name for f in chosen] == ["colour", "small"]
    assert select_features(FEATURES, None) == FEATURES
    with pytest.raises(KeyError) as err:
        select_features(FEATURES, ["small", "nope"])
    assert err.value.args[0] == ["nope"]


def test_a_search_over_scalers_for_a_logistic_regression() -> None:
    X, y = _data()
    spec = _spec(
        preprocessing={"numeric": {"imputer": "median"}},
        search={
            "space": {"C": [0.01, 1.0]},
            "preprocessing": {"scaler": ["none", "standard", "minmax", "robust"]},
            "folds": 3,
        },
    )
    fitted = fit(spec, FEATURES, X, y, cpu=1)
    assert fitted.trials is not None and len(fitted.trials) == 8
    assert {t.params["preprocessing.scaler"] for t in fitted.trials} == {
        "none",
        "standard",
        "minmax",
        "robust",
    }
    # Scaling matters here, so the scores differ by scaler ...
    by_scaler = {t.params["preprocessing.scaler"]: t.mean for t in fitted.trials}
    assert len(set(by_scaler.values())) > 1
    # ... and the refitted model is the table's winner, scaler included.
    winner = trials.best(fitted.trials)
    chosen = winner.params["preprocessing.scaler"]
    assert fitted.best_params["preprocessing.scaler"] == chosen
    assert fitted.best_params["C"] == winner.params["C"]
    numeric = {n: t for n, t, _ in fitted.model.named_steps["features"].transformers_}
    if chosen == "none":
        assert numeric["numeric"] == "passthrough"
    else:
        assert isinstance(numeric["numeric"], SCALERS[chosen])


def test_searched_choices_override_the_runs_preprocessing() -> None:
    base = Preprocessing.model_validate({"numeric": {"scaler": "robust", "imputer": "mean"}})
    opts = with_choices(base, {"scaler": "standard", "maxCategories": 5})
    assert (opts.numeric.scaler, opts.numeric.imputer) == ("standard", "mean")
    assert opts.categorical.max_categories == 5
    assert with_choices(base, {}) is base


OPTION_SETS = [
    {},
    {"numeric": {"scaler": "standard", "imputer": "mean"}},
    {"numeric": {"scaler": "minmax", "imputer": "constant"}},
    {"numeric": {"scaler": "robust", "imputer": "most_frequent"}},
    {"categorical": {"imputer": "constant", "maxCategories": 2, "handleUnknown": "ignore"}},
    {"categorical": {"maxCategories": 3, "handleUnknown": "infrequent_if_exist"}},
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: str(o) or "defaults")
@pytest.mark.parametrize(
    ("estimator", "params"),
    [("logistic-regression", {"max_iter": 500}), ("random-forest-classifier", {"n_estimators": 5})],
)
def test_every_fitted_pipeline_round_trips_through_skops(
    options: dict[str, Any], estimator: str, params: dict[str, Any]
) -> None:
    X, y = _data()
    spec = _spec(estimator={"name": estimator, "params": params}, preprocessing=options)
    fitted = fit(spec, FEATURES, X, y, cpu=1)
    data = models.save(fitted.model)
    loaded = models.load(data, hashlib.sha256(data).hexdigest())  # the allowlist applies
    unseen = X.head(20).copy()
    unseen.loc[unseen.index[:3], "colour"] = "violet"  # a category never seen in training
    np.testing.assert_array_equal(loaded.predict(unseen), fitted.model.predict(unseen))
    np.testing.assert_allclose(loaded.predict_proba(unseen), fitted.model.predict_proba(unseen))


def test_preprocessing_is_checked_when_a_manifest_is_parsed() -> None:
    doc = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
    doc["spec"]["preprocessing"] = {"numeric": {"scaler": "zscore"}}
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc)
    assert "preprocessing.numeric.scaler" in str(err.value)
    doc["spec"]["preprocessing"] = {"features": ["petal length (cm)"]}
    doc["spec"]["search"] = {"preprocessing": {"scaler": ["none", "standard"]}}
    parse_manifest(doc)  # a search over preprocessing alone is a search


def test_pipeline_with_options_builds_for_every_estimator_input() -> None:
    pipe = build_pipeline(FEATURES, StandardScaler(), Preprocessing())
    assert [n for n, _ in pipe.steps] == ["features", "estimator"]

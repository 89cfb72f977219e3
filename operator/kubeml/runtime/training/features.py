"""The preprocessing half of the pipeline, chosen from the dataset's schema.

Only scikit-learn transformers appear here (no FunctionTransformer with our own
functions): the fitted pipeline must load from a skops artifact whose allowlist
holds scikit-learn, numpy and scipy types alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from ...api.trainingrun import Preprocessing
from ...data.types import ColumnType

NUMERIC_TYPES: frozenset[str] = frozenset({"integer", "number"})
# Booleans are one-hot encoded rather than passed through: a bool column next to
# floats would turn the whole passthrough block into an object array.
ENCODED_TYPES: frozenset[str] = frozenset({"category", "string", "boolean"})
# A "string" column is free text by the schema's own inference (too many distinct
# values to be a category); cap its one-hot width and pool the rare values.
MAX_TEXT_CATEGORIES = 100

FEATURES_STEP = "features"
ESTIMATOR_STEP = "estimator"


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    type: ColumnType
    nullable: bool = False  # has nulls in some split: needs an imputer


def feature_columns(
    schema_columns: Sequence[tuple[str, ColumnType]], frames: Sequence[pd.DataFrame]
) -> list[FeatureColumn]:
    """The feature columns in schema order, marked nullable when any split has a null."""
    out = []
    for name, type_ in schema_columns:
        nullable = any(name in f.columns and bool(f[name].isna().any()) for f in frames)
        out.append(FeatureColumn(name, type_, nullable))
    return out


DEFAULTS = Preprocessing()
# The value a constant imputer writes into categorical and text columns.
MISSING_CATEGORY = "missing"


def _encoder(max_categories: int | None, handle_unknown: str = "ignore") -> OneHotEncoder:
    # Dense output: HistGradientBoosting refuses sparse input, and the encoded
    # width is bounded (categories are few by the schema's definition).
    return OneHotEncoder(
        handle_unknown=handle_unknown,
        sparse_output=False,
        dtype=np.float64,
        max_categories=max_categories,
    )


def scaler(name: str) -> BaseEstimator | str:
    if name == "standard":
        return StandardScaler()
    if name == "minmax":
        return MinMaxScaler()
    if name == "robust":
        return RobustScaler()
    return "passthrough"


def _group(col: FeatureColumn, options: Preprocessing) -> str:
    if col.type in NUMERIC_TYPES:
        return "numeric_imputed" if col.nullable else "numeric"
    if col.type == "string":
        return "text_imputed" if col.nullable else "text"
    if col.type == "boolean" and col.nullable and options.categorical.imputer == "constant":
        # A "missing" string among booleans would leave the encoder mixed types it
        # cannot sort; booleans keep their most frequent value instead.
        return "boolean_imputed"
    return "categorical_imputed" if col.nullable else "categorical"


def build_preprocessor(
    features: Sequence[FeatureColumn], options: Preprocessing | None = None
) -> ColumnTransformer:
    """Numeric columns pass through or are scaled (imputed if they have nulls);
    categorical, text and boolean columns are one-hot encoded. With the default options:
    numbers pass through, median-imputed, and unseen categories are ignored."""
    opts = options or DEFAULTS
    groups: dict[str, list[str]] = {}
    for col in features:
        groups.setdefault(_group(col, opts), []).append(col.name)
    if not groups:
        raise ValueError("no feature columns")
    transformers: list[tuple[str, BaseEstimator | str, list[str]]] = []
    for group, cols in groups.items():
        transformers.append((group, _transformer(group, opts), cols))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _numeric_imputer(strategy: str) -> SimpleImputer:
    if strategy == "constant":
        return SimpleImputer(strategy="constant", fill_value=0.0)
    return SimpleImputer(strategy=strategy)


def _transformer(group: str, opts: Preprocessing) -> BaseEstimator | str:
    num, cat = opts.numeric, opts.categorical
    if group in ("numeric", "numeric_imputed"):
        scale = scaler(num.scaler)
        if group == "numeric":
            return scale
        impute = _numeric_imputer(num.imputer)
        return (
            impute if scale == "passthrough" else Pipeline([("impute", impute), ("scale", scale)])
        )
    cap = cat.max_categories
    if group.startswith("text"):
        cap = min(cap or MAX_TEXT_CATEGORIES, MAX_TEXT_CATEGORIES)
    encoder = _encoder(cap, cat.handle_unknown)
    if not group.endswith("_imputed"):
        return encoder
    if group == "boolean_imputed" or cat.imputer == "most_frequent":
        # most_frequent keeps the column's own value type (strings stay strings,
        # booleans stay booleans), which the encoder needs to be uniform.
        impute = SimpleImputer(strategy="most_frequent")
    else:
        impute = SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
    return Pipeline([("impute", impute), ("encode", encoder)])


def build_pipeline(
    features: Sequence[FeatureColumn],
    estimator: BaseEstimator,
    options: Preprocessing | None = None,
) -> Pipeline:
    return Pipeline(
        [(FEATURES_STEP, build_preprocessor(features, options)), (ESTIMATOR_STEP, estimator)]
    )


def select_features(
    features: Sequence[FeatureColumn], names: Sequence[str] | None
) -> list[FeatureColumn]:
    """The named features in the user's order (all when ``names`` is None); raise
    KeyError listing the names that are not features."""
    if names is None:
        return list(features)
    by_name = {f.name: f for f in features}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(unknown)
    return [by_name[n] for n in dict.fromkeys(names)]

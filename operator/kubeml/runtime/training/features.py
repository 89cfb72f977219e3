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
from sklearn.preprocessing import OneHotEncoder

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


def _encoder(max_categories: int | None) -> OneHotEncoder:
    # Dense output: HistGradientBoosting refuses sparse input, and the encoded
    # width is bounded (categories are few by the schema's definition).
    return OneHotEncoder(
        handle_unknown="ignore",
        sparse_output=False,
        dtype=np.float64,
        max_categories=max_categories,
    )


def build_preprocessor(features: Sequence[FeatureColumn]) -> ColumnTransformer:
    """Numeric columns pass through (median-imputed if they have nulls); categorical,
    text and boolean columns are one-hot encoded, ignoring unseen values."""
    groups: dict[str, list[str]] = {}
    for col in features:
        if col.type in NUMERIC_TYPES:
            group = "numeric_imputed" if col.nullable else "numeric"
        elif col.type == "string":
            group = "text_imputed" if col.nullable else "text"
        else:
            group = "categorical_imputed" if col.nullable else "categorical"
        groups.setdefault(group, []).append(col.name)
    if not groups:
        raise ValueError("no feature columns")
    transformers: list[tuple[str, BaseEstimator | str, list[str]]] = []
    for group, cols in groups.items():
        transformers.append((group, _transformer(group), cols))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _transformer(group: str) -> BaseEstimator | str:
    if group == "numeric":
        return "passthrough"
    if group == "numeric_imputed":
        return SimpleImputer(strategy="median")
    encoder = _encoder(MAX_TEXT_CATEGORIES if group.startswith("text") else None)
    if group.endswith("_imputed"):
        # most_frequent keeps the column's own value type (strings stay strings,
        # booleans stay booleans), which the encoder needs to be uniform.
        return Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", encoder)])
    return encoder


def build_pipeline(features: Sequence[FeatureColumn], estimator: BaseEstimator) -> Pipeline:
    return Pipeline([(FEATURES_STEP, build_preprocessor(features)), (ESTIMATOR_STEP, estimator)])

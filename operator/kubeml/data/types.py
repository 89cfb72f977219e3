"""Column types of the schema: integer, number, string, boolean, category."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as pdt

ColumnType = Literal["integer", "number", "string", "boolean", "category"]
NUMERIC: frozenset[str] = frozenset({"integer", "number"})

# A text column is a category (one-hot encodable) when it has few distinct values,
# both absolutely and relative to its rows; otherwise it is free text (an id, a name).
MAX_CATEGORIES = 50
MAX_CATEGORY_RATIO = 0.5


def infer_type(series: pd.Series) -> ColumnType:
    """The schema type of a column, from its dtype and, for text, its cardinality."""
    dtype = series.dtype
    # bool first: pandas counts bool as numeric.
    if pdt.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pdt.is_integer_dtype(dtype):
        return "integer"
    if pdt.is_numeric_dtype(dtype):
        return "number"
    values = series.dropna()
    if len(values) and values.map(type).isin([bool, np.bool_]).all():
        return "boolean"
    distinct = values.nunique()
    if distinct <= MAX_CATEGORIES and distinct <= max(2, MAX_CATEGORY_RATIO * len(values)):
        return "category"
    return "string"


def is_integral(series: pd.Series) -> bool:
    """Every non-null value is a whole number (CSV integers with gaps load as float)."""
    if pdt.is_bool_dtype(series.dtype) or not pdt.is_numeric_dtype(series.dtype):
        return False
    if pdt.is_integer_dtype(series.dtype):
        return True
    values = series.dropna().to_numpy(dtype=float)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def satisfies(series: pd.Series, actual: ColumnType, required: ColumnType) -> bool:
    """Whether a column of inferred type ``actual`` meets a required type."""
    if actual == required:
        return True
    if required == "number":
        return actual == "integer"
    if required == "integer":
        return actual == "number" and is_integral(series)
    if required == "string":
        return actual == "category"
    if required == "category":
        # Codes are often integers or flags, and a declared category overrides the
        # cardinality guess that made a text column "string".
        return actual in ("string", "boolean", "integer")
    if required == "boolean":
        return actual == "integer" and set(series.dropna().unique()) <= {0, 1}
    return False

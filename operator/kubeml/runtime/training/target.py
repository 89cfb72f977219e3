"""Does the dataset's target fit the estimator's task? (pure)"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from ...api.estimators import Task
from .errors import TrainError

# More distinct labels than this is a regression target (or an id), not classes.
MAX_CLASSES = 100


def check_target(task: Task, y: pd.Series, *, column: str, dataset: str, estimator: str) -> None:
    """Raise TargetMismatch when a classifier meets a continuous target or a regressor
    a non-numeric one; the message names the column and what was found."""
    values = y.dropna()
    where = f"target column {column!r} of dataset {dataset}"
    if len(values) < len(y):
        raise TrainError(
            "TargetMismatch", f"{where} has {len(y) - len(values)} null values in train"
        )
    numeric = pdt.is_numeric_dtype(values.dtype) and not pdt.is_bool_dtype(values.dtype)
    if task == "regression":
        if not numeric:
            raise TrainError(
                "TargetMismatch",
                f"{where} is not numeric (dtype {values.dtype}, e.g. {_sample(values)}); "
                f"{estimator} is a regressor: use a classifier",
            )
        return
    distinct = int(values.nunique())
    if numeric and pdt.is_float_dtype(values.dtype):
        floats = values.to_numpy(dtype=float)
        if not np.all(floats == np.round(floats)):
            raise TrainError(
                "TargetMismatch",
                f"{where} is continuous (float values such as {_sample(values)}, "
                f"{distinct} distinct); {estimator} is a classifier: use a regressor",
            )
    if distinct > MAX_CLASSES:
        raise TrainError(
            "TargetMismatch",
            f"{where} has {distinct} distinct values, more than {MAX_CLASSES} classes; "
            f"{estimator} is a classifier: use a regressor",
        )
    if distinct < 2:
        raise TrainError(
            "TargetMismatch",
            f"{where} has a single class ({_sample(values)}) in train; "
            "a classifier needs at least two",
        )


def _sample(values: pd.Series, n: int = 3) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(n).tolist())

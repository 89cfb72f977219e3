"""The target must fit the estimator's task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubeml.runtime.training.errors import TrainError
from kubeml.runtime.training.target import MAX_CLASSES, check_target


def _check(task: str, y: pd.Series) -> None:
    check_target(task, y, column="price", dataset="houses", estimator="some-estimator")  # type: ignore[arg-type]


def _reason(task: str, y: pd.Series) -> TrainError:
    with pytest.raises(TrainError) as err:
        _check(task, y)
    assert err.value.exit_code == 2
    return err.value


def test_classifier_on_continuous_target_names_the_column() -> None:
    err = _reason("classification", pd.Series(np.linspace(0.1, 9.9, 50)))
    assert err.reason == "TargetMismatch"
    assert "'price'" in err.message and "houses" in err.message and "regressor" in err.message


def test_classifier_on_integral_floats_with_many_values_is_a_mismatch() -> None:
    # The diabetes target: floats that happen to be whole numbers, ~200 distinct.
    err = _reason("classification", pd.Series(np.arange(MAX_CLASSES + 50, dtype=float)))
    assert err.reason == "TargetMismatch"


def test_classifier_accepts_labels() -> None:
    _check("classification", pd.Series([0, 1, 2] * 10))
    _check("classification", pd.Series([0.0, 1.0] * 10))
    _check("classification", pd.Series(["cat", "dog"] * 10))
    _check("classification", pd.Series([True, False] * 10))


def test_classifier_needs_two_classes() -> None:
    assert "single class" in _reason("classification", pd.Series([1] * 10)).message


def test_regressor_on_non_numeric_target() -> None:
    for y in (pd.Series(["a", "b"] * 5), pd.Series([True, False] * 5)):
        err = _reason("regression", y)
        assert err.reason == "TargetMismatch" and "'price'" in err.message


def test_regressor_accepts_numbers() -> None:
    _check("regression", pd.Series(np.linspace(0, 1, 30)))
    _check("regression", pd.Series(range(30)))


def test_null_targets_are_refused() -> None:
    assert "null" in _reason("regression", pd.Series([1.0, np.nan, 2.0])).message

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubeml.data.types import MAX_CATEGORIES, infer_type, is_integral, satisfies


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3], "integer"),
        ([1.5, 2.0, np.nan], "number"),
        ([True, False, True], "boolean"),
        (["a", "b", "a", "b", "a"], "category"),
        ([f"id-{i}" for i in range(200)], "string"),
        ([f"v{i % 3}" for i in range(200)], "category"),
        (pd.Categorical(["x", "y"]), "category"),
        ([True, None, False], "boolean"),  # object column of booleans with a gap
    ],
)
def test_infer_type(values: object, expected: str) -> None:
    assert infer_type(pd.Series(values)) == expected


def test_text_with_many_distinct_values_is_free_text() -> None:
    many = [f"c{i % (MAX_CATEGORIES + 1)}" for i in range(1000)]
    assert infer_type(pd.Series(many)) == "string"


def test_integral_floats_count_as_integers() -> None:
    assert is_integral(pd.Series([1.0, 2.0, np.nan]))
    assert not is_integral(pd.Series([1.0, 2.5]))
    assert not is_integral(pd.Series([True, False]))
    assert not is_integral(pd.Series(["1"]))


@pytest.mark.parametrize(
    ("values", "actual", "required", "ok"),
    [
        ([1, 2], "integer", "number", True),
        ([1.0, 2.0], "number", "integer", True),
        ([1.5, 2.0], "number", "integer", False),
        (["a", "b"], "category", "number", False),
        (["a", "b"], "category", "string", True),
        ([1, 2], "integer", "category", True),
        (["a", "b"], "string", "category", True),
        ([1.5], "number", "category", False),
        ([0, 1], "integer", "boolean", True),
        ([0, 2], "integer", "boolean", False),
        ([True], "boolean", "number", False),
    ],
)
def test_satisfies(values: list[object], actual: str, required: str, ok: bool) -> None:
    assert satisfies(pd.Series(values), actual, required) is ok  # type: ignore[arg-type]

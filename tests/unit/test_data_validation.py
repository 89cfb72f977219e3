from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from kubeml.api.dataset import ValidationRules
from kubeml.data.types import infer_type
from kubeml.data.validation import Failure, failure_reason, validate


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [25, 40, -3, 130, 60, np.nan, 33, 45, 51, 29],
            "city": ["a", "b", "a", "z", "b", "a", "q", "z", "a", "b"],
            "name": [f"n{i}" for i in range(10)],
            "y": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        }
    )


def run(rules: Mapping[str, object], df: pd.DataFrame | None = None) -> list[Failure]:
    df = frame() if df is None else df
    types = {c: infer_type(df[c]) for c in df.columns}
    return validate(df, ValidationRules.model_validate(rules), types, target="y")


def test_no_rules_no_failures() -> None:
    df = frame()
    assert validate(df, None, {c: infer_type(df[c]) for c in df}, target="y") == []


def test_min_rows() -> None:
    assert run({"minRows": 10}) == []
    (f,) = run({"minRows": 11})
    assert f.check == "minRows"
    assert "10 rows" in f.message
    assert "11" in f.message


def test_required_columns_missing_and_wrong_type() -> None:
    failures = run(
        {
            "requiredColumns": [
                {"name": "age", "type": "number"},
                {"name": "age", "type": "integer"},
                {"name": "income"},
                {"name": "city", "type": "number"},
                {"name": "name", "type": "boolean"},
            ]
        }
    )
    messages = [str(f) for f in failures]
    assert len(failures) == 3, messages
    assert "column 'income' is missing" in messages[0]
    assert failures[1].column == "city"
    assert failures[1].reason == "NonNumericFeature"
    assert "type category, not number" in failures[1].message
    assert failures[2].reason == "ValidationFailed"
    assert "type string, not boolean" in failures[2].message


def test_non_numeric_alone_gives_its_own_reason() -> None:
    failures = run({"requiredColumns": [{"name": "city", "type": "number"}]})
    assert failure_reason(failures) == "NonNumericFeature"
    failures += run({"minRows": 100})
    assert failure_reason(failures) == "ValidationFailed"


def test_ranges_report_both_sides_with_counts_and_extremes() -> None:
    failures = run({"ranges": [{"column": "age", "min": 0, "max": 120}]})
    assert [f.message for f in failures] == [
        "column 'age' has 1 values below min 0 (lowest -3)",
        "column 'age' has 1 values above max 120 (highest 130)",
    ]


def test_range_on_text_or_missing_column_fails() -> None:
    failures = run({"ranges": [{"column": "city", "min": 0}, {"column": "nope", "max": 1}]})
    assert "min/max need numbers" in failures[0].message
    assert failures[0].reason == "NonNumericFeature"
    assert failures[1].message == "column 'nope' is missing"


def test_max_null_fraction_names_column_and_numbers() -> None:
    assert run({"maxNullFraction": 0.1}) == []
    (f,) = run({"maxNullFraction": 0.05})
    assert f.column == "age"
    assert "null fraction 0.1 (1 of 10 rows), above 0.05" in f.message


def test_allowed_categories_lists_offenders_most_frequent_first() -> None:
    (f,) = run({"allowedCategories": [{"column": "city", "values": ["a", "b"]}]})
    assert f.message == (
        "column 'city' has 3 rows with values outside the allowed categories: 'z' (2), 'q' (1)"
    )


def test_allowed_categories_compare_numbers_and_flags_as_text() -> None:
    df = pd.DataFrame({"code": [1.0, 2.0, 3.0], "flag": [True, False, True], "y": [0, 1, 0]})
    rules = {
        "allowedCategories": [
            {"column": "code", "values": ["1", "2", "3"]},
            {"column": "flag", "values": ["true", "false"]},
        ]
    }
    assert run(rules, df) == []


def test_every_failure_is_reported_not_just_the_first() -> None:
    df = frame()
    df.loc[0, "y"] = np.nan
    failures = run(
        {
            "minRows": 50,
            "requiredColumns": [{"name": "income", "type": "number"}],
            "ranges": [{"column": "age", "min": 0, "max": 120}],
            "maxNullFraction": 0.0,
            "allowedCategories": [{"column": "city", "values": ["a", "b"]}],
        },
        df,
    )
    checks = [f.check for f in failures]
    assert checks == [
        "target",
        "minRows",
        "requiredColumns",
        "ranges",
        "ranges",
        "maxNullFraction",
        "maxNullFraction",
        "allowedCategories",
    ]
    assert str(failures[0]) == "target: target column 'y' has 1 null values of 10 rows"


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_frames_do_not_crash(rows: int) -> None:
    df = frame().head(rows)
    failures = run(
        {"minRows": 1, "maxNullFraction": 0.5, "ranges": [{"column": "age", "min": 0}]}, df
    )
    assert [f.check for f in failures] == (["minRows"] if rows == 0 else [])

"""Dataset cleaning rules: what each drops, counted, before validation and the split."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kubeml.api.dataset import Cleaning, DatasetSpec
from kubeml.data.cleaning import clean
from kubeml.data.errors import DataError
from kubeml.data.pipeline import prepare_frame


def frame() -> pd.DataFrame:
    rows = [
        (1.0, "a", 0),
        (1.0, "a", 0),  # duplicate of the first
        (2.0, "b", None),  # no target
        (2.0, "b", None),  # no target, and a duplicate of the row above
        (3.0, "c", 1),
        (1.0, "a", 0),  # duplicate of the first again
    ]
    return pd.DataFrame(rows, columns=["x", "c", "y"])


def test_no_rules_change_nothing() -> None:
    f = frame()
    out, removed = clean(f, None, "y")
    assert out is f and removed == {}


@pytest.mark.parametrize(
    ("rules", "removed", "left"),
    [
        (Cleaning(drop_missing_target=True), {"missingTarget": 2}, 4),
        # Without the target rule the two label-less rows are one more duplicate.
        (Cleaning(drop_duplicates=True), {"duplicates": 3}, 3),
        (Cleaning(drop_missing_target=True, drop_duplicates=True),
         {"missingTarget": 2, "duplicates": 2}, 2),
        (Cleaning(), {}, 6),
    ],
)  # fmt: skip
def test_each_rule_counts_what_it_removed(
    rules: Cleaning, removed: dict[str, int], left: int
) -> None:
    out, counts = clean(frame(), rules, "y")
    assert counts == removed
    assert len(out) == left == 6 - sum(counts.values())
    assert list(out.index) == list(range(left))
    if rules.drop_duplicates:
        assert not out.duplicated().any()
    if rules.drop_missing_target:
        assert out["y"].notna().all()


def big(n: int = 120) -> pd.DataFrame:
    rows = [{"x": float(i % 40), "y": i % 2} for i in range(n)]  # each row three times
    rows += [{"x": 1000.0 + i, "y": None} for i in range(5)]
    return pd.DataFrame(rows)


def spec(**cleaning: bool) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "source": {"builtin": {"name": "iris"}},
            "target": "y",
            "split": {"validation": 0.2, "test": 0.2, "seed": 1, "stratify": False},
            **({"cleaning": cleaning} if cleaning else {}),
        }
    )


def test_prepared_data_and_schema_carry_the_counts() -> None:
    prepared = prepare_frame(big(), spec(dropMissingTarget=True, dropDuplicates=True), source="t")
    assert prepared.removed == {"missingTarget": 5, "duplicates": 80}
    assert prepared.splits.rows()["total"] == 40
    assert prepared.schema["removed"] == prepared.removed
    assert prepared.schema["spec"]["cleaning"] == {
        "dropMissingTarget": True,
        "dropDuplicates": True,
    }


def test_without_the_target_rule_missing_targets_still_fail_validation() -> None:
    with pytest.raises(DataError) as err:
        prepare_frame(big(), spec(dropDuplicates=True), source="t")
    assert "null values" in str(err.value.failures)


def test_no_cleaning_keeps_every_row_and_no_counts() -> None:
    f = big().dropna()
    prepared = prepare_frame(f, spec(), source="t")
    assert prepared.removed == {} and "removed" not in prepared.schema
    assert prepared.splits.rows()["total"] == len(f)
    assert not math.isnan(prepared.splits.train["x"].sum())

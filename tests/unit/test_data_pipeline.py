"""The pure pipeline and the deterministic files that make up a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeml.api.dataset import DatasetSpec
from kubeml.data import prepare_frame
from kubeml.data.errors import DataError
from kubeml.data.files import content_version, write_prepared
from kubeml.data.pipeline import content_spec
from kubeml.data.sources import load_builtin


def spec(**kw: Any) -> DatasetSpec:
    base: dict[str, Any] = {"source": {"builtin": {"name": "iris"}}, "target": "target"}
    return DatasetSpec.model_validate({**base, **kw})


def version_of(s: DatasetSpec, frame: pd.DataFrame, tmp: Path) -> str:
    prepared = prepare_frame(frame, s, source="test")
    return content_version(write_prepared(prepared, tmp))


def test_iris_rows_columns_and_types() -> None:
    p = prepare_frame(load_builtin("iris"), spec(split={"validation": 0.1}), source="iris")
    assert p.splits.rows() == {"total": 150, "train": 105, "validation": 15, "test": 30}
    assert [c.role for c in p.columns] == ["feature"] * 4 + ["target"]
    assert p.columns[-1].type == "integer"
    assert p.schema["spec"]["split"] == {
        "validation": 0.1,
        "test": 0.2,
        "seed": 0,
        "stratify": False,
    }
    assert set(p.profile["columns"]) == {c.name for c in p.columns}


def test_feature_selection_keeps_the_given_order() -> None:
    s = spec(features=["petal width (cm)", "sepal length (cm)"])
    p = prepare_frame(load_builtin("iris"), s, source="iris")
    assert [c.name for c in p.columns] == ["petal width (cm)", "sepal length (cm)", "target"]
    assert list(p.splits.train.columns) == [c.name for c in p.columns]


@pytest.mark.parametrize(
    ("kw", "reason", "fragment"),
    [
        ({"target": "species"}, "TargetMissing", "target column 'species' not found in iris"),
        ({"features": ["petal", "sepal"]}, "ColumnMissing", "'petal', 'sepal' not found"),
        (
            {"validation": {"minRows": 500, "ranges": [{"column": "target", "max": 1}]}},
            "ValidationFailed",
            "2 validation checks failed on iris",
        ),
    ],
)
def test_bad_input_reasons(kw: dict[str, Any], reason: str, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        prepare_frame(load_builtin("iris"), spec(**kw), source="iris")
    assert info.value.reason == reason
    assert fragment in info.value.message


def test_declared_number_on_text_is_non_numeric_feature() -> None:
    frame = pd.DataFrame({"x": ["a", "b"] * 10, "y": [0, 1] * 10})
    s = spec(target="y", validation={"requiredColumns": [{"name": "x", "type": "number"}]})
    with pytest.raises(DataError) as info:
        prepare_frame(frame, s, source="t")
    assert info.value.reason == "NonNumericFeature"
    assert info.value.failures == [
        "requiredColumns: column 'x' has type category, not number "
        "(non-numeric values where numbers are required)"
    ]


def test_text_features_with_few_values_are_categories_and_declared_types_win() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "c"] * 10, "code": [1, 2, 3] * 10, "y": [0, 1, 1] * 10})
    s = spec(target="y", validation={"requiredColumns": [{"name": "code", "type": "category"}]})
    p = prepare_frame(frame, s, source="t")
    assert {c.name: c.type for c in p.columns} == {
        "c": "category",
        "code": "category",
        "y": "integer",
    }
    assert p.profile["columns"]["code"]["kind"] == "categorical"


def test_same_input_same_bytes_and_version(tmp_path: Path) -> None:
    frame = load_builtin("wine")
    s = spec(source={"builtin": {"name": "wine"}}, split={"validation": 0.2, "stratify": True})
    a = version_of(s, frame, tmp_path / "a")
    b = version_of(s, frame.copy(), tmp_path / "b")
    assert a == b
    for name in ("train.parquet", "validation.parquet", "test.parquet", "profile.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_version_changes_with_seed_content_and_rules(tmp_path: Path) -> None:
    frame = load_builtin("iris")
    base = version_of(spec(), frame, tmp_path / "0")
    changed = frame.copy()
    changed.loc[0, "sepal length (cm)"] += 0.1
    others = {
        version_of(spec(split={"seed": 1}), frame, tmp_path / "1"),
        version_of(spec(), changed, tmp_path / "2"),
        version_of(spec(validation={"minRows": 10}), frame, tmp_path / "3"),
    }
    assert base not in others
    assert len(others) == 3


def test_job_settings_do_not_change_the_version(tmp_path: Path) -> None:
    frame = load_builtin("iris")
    run_only = spec(
        resources={"limits": {"memory": "2Gi"}}, backoffLimit=3, refresh={"schedule": "@daily"}
    )
    assert version_of(spec(), frame, tmp_path / "a") == version_of(run_only, frame, tmp_path / "b")


def test_content_spec_drops_credentials_and_endpoint() -> None:
    s = spec(
        source={
            "s3": {
                "bucket": "raw",
                "key": "x.csv",
                "endpoint": "http://127.0.0.1:9000",
                "credentials": {"secretName": "other"},
            }
        }
    )
    assert content_spec(s)["source"] == {"s3": {"bucket": "raw", "key": "x.csv"}}


def test_no_validation_file_without_a_validation_fraction(tmp_path: Path) -> None:
    prepared = prepare_frame(load_builtin("iris"), spec(), source="iris")
    names = [f.name for f in write_prepared(prepared, tmp_path)]
    assert names == ["train.parquet", "test.parquet", "schema.json", "profile.json"]
    back = pd.read_parquet(tmp_path / "train.parquet")
    pd.testing.assert_frame_equal(back, prepared.splits.train)

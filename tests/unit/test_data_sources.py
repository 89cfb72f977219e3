from __future__ import annotations

import gzip
import io

import pandas as pd
import pytest

from kubeml.api.dataset import BUILTIN_DATASETS, SyntheticSource
from kubeml.data.errors import DataError
from kubeml.data.sources import (
    concat_tables,
    infer_format,
    load_builtin,
    load_synthetic,
    parse_table,
    synthetic_size,
)

BUILTIN_SHAPES = {
    "iris": (150, 5),
    "wine": (178, 14),
    "breast_cancer": (569, 31),
    "digits": (1797, 65),
    "diabetes": (442, 11),
}


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_sets_have_a_target_column(name: str) -> None:
    frame = load_builtin(name)
    assert frame.shape == BUILTIN_SHAPES[name]
    assert frame.columns[-1] == "target"


def test_unknown_builtin() -> None:
    with pytest.raises(DataError) as info:
        load_builtin("mnist")
    assert info.value.reason == "UnknownBuiltin"
    assert "'mnist'" in info.value.message
    assert "iris" in info.value.message


def synthetic(**kw: object) -> SyntheticSource:
    base: dict[str, object] = {"task": "classification", "rows": 200, "features": 6}
    return SyntheticSource.model_validate({**base, **kw})


def test_synthetic_classification_is_seeded_and_shaped() -> None:
    a = load_synthetic(synthetic(seed=1))
    assert list(a.columns) == ["f0", "f1", "f2", "f3", "f4", "f5", "target"]
    assert len(a) == 200
    assert set(a["target"]) == {0, 1}
    pd.testing.assert_frame_equal(a, load_synthetic(synthetic(seed=1)))
    assert not a.equals(load_synthetic(synthetic(seed=2)))
    assert synthetic_size(synthetic()) == 200 * 7 * 8 * 3


def test_synthetic_classes_and_one_feature() -> None:
    assert set(load_synthetic(synthetic(classes=4))["target"]) == {0, 1, 2, 3}
    one = load_synthetic(synthetic(features=1))
    assert list(one.columns) == ["f0", "target"]


def test_synthetic_too_many_classes_for_informative_features() -> None:
    with pytest.raises(DataError) as info:
        load_synthetic(synthetic(features=2, informative=1, classes=3))
    assert info.value.reason == "InvalidSynthetic"
    assert "at least 2 informative" in info.value.message


def test_synthetic_regression() -> None:
    frame = load_synthetic(synthetic(task="regression", noise=0.5))
    assert frame["target"].dtype.kind == "f"
    assert frame["target"].nunique() == 200


@pytest.mark.parametrize(
    ("name", "declared", "head", "expected"),
    [
        ("s3://b/x.csv", None, b"", "csv"),
        ("s3://b/x.CSV.gz", None, b"", "csv"),
        ("https://h/data.parquet?version=3", None, b"", "parquet"),
        ("s3://b/part-0001", None, b"PAR1", "parquet"),
        ("s3://b/blob", "csv", b"", "csv"),
    ],
)
def test_infer_format(name: str, declared: str | None, head: bytes, expected: str) -> None:
    assert infer_format(name, declared, head) == expected


def test_unknown_format_says_what_to_set() -> None:
    with pytest.raises(DataError) as info:
        infer_format("https://h/download?id=3", None, b"a,b\n")
    assert info.value.reason == "UnsupportedFormat"
    assert "https://h/download?id=3" in info.value.message


def test_parse_csv_and_gzipped_csv() -> None:
    data = b"a,b\n1,x\n2,y\n"
    frame = parse_table(data, "csv", "u")
    assert frame.shape == (2, 2)
    pd.testing.assert_frame_equal(parse_table(gzip.compress(data), "csv", "u"), frame)


def test_parse_parquet() -> None:
    buf = io.BytesIO()
    pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}).to_parquet(buf)
    assert parse_table(buf.getvalue(), "parquet", "u")["b"].tolist() == [0.5, 1.5]


@pytest.mark.parametrize(
    ("data", "fmt", "reason", "fragment"),
    [
        (b"", "csv", "EmptyFile", "is empty"),
        (b"  \n\n", "csv", "EmptyFile", "is empty"),
        (b"a,b\n", "csv", "EmptyFile", "no data rows"),
        (b"a,b\n1,2\n3,4,5\n", "csv", "MalformedCSV", "Expected 2 fields in line 3, saw 3"),
        (b"\xff\xfe\x00garbage\n", "csv", "MalformedCSV", "not UTF-8"),
        (b"\x1f\x8b\x08\x00trunc", "csv", "MalformedCSV", "decompressed"),
        (b"PAR1 not really", "parquet", "MalformedParquet", "not a valid Parquet"),
    ],
)
def test_bad_files(data: bytes, fmt: str, reason: str, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        parse_table(data, fmt, "s3://bkt/in/file")  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert "s3://bkt/in/file" in info.value.message
    assert fragment in info.value.message


def test_concat_parts_in_order_and_column_mismatch() -> None:
    a = pd.DataFrame({"x": [1], "y": [2]})
    b = pd.DataFrame({"y": [4], "x": [3]})
    joined = concat_tables([("p/0.csv", a), ("p/1.csv", b)])
    assert joined.to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    with pytest.raises(DataError) as info:
        concat_tables([("p/0.csv", a), ("p/1.csv", pd.DataFrame({"x": [1], "z": [2]}))])
    assert info.value.reason == "InconsistentColumns"
    assert "p/1.csv" in info.value.message
    assert "extra: z" in info.value.message

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeml.data.errors import DataError
from kubeml.data.split import partition_sizes, split_frame


def labelled(rows: int, classes: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": rng.normal(size=rows),
            "y": rng.choice(
                classes, size=rows, p=np.linspace(1, 2, classes) / np.linspace(1, 2, classes).sum()
            ),
        }
    )


def ids(df: pd.DataFrame) -> list[int]:
    return [int(i) for i in df["id"]]


def test_same_seed_same_rows_different_seed_different_rows() -> None:
    df = labelled(500)
    kw = {"validation": 0.1, "test": 0.2, "stratify": False}
    a = split_frame(df, "y", seed=7, **kw)  # type: ignore[arg-type]
    b = split_frame(df, "y", seed=7, **kw)  # type: ignore[arg-type]
    c = split_frame(df, "y", seed=8, **kw)  # type: ignore[arg-type]
    for part in ("train", "validation", "test"):
        assert ids(getattr(a, part)) == ids(getattr(b, part))
        assert ids(getattr(a, part)) != ids(getattr(c, part))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(min_value=10, max_value=400),
    validation=st.sampled_from([0.0, 0.1, 0.25]),
    test=st.sampled_from([0.1, 0.2, 0.3]),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_partitions_are_disjoint_complete_and_sized(
    rows: int, validation: float, test: float, seed: int
) -> None:
    df = labelled(rows)
    s = split_frame(df, "y", validation=validation, test=test, seed=seed, stratify=False)
    n_train, n_val, n_test = partition_sizes(rows, validation, test)
    assert (len(s.train), len(s.validation), len(s.test)) == (n_train, n_val, n_test)
    together = ids(s.train) + ids(s.validation) + ids(s.test)
    assert sorted(together) == list(range(rows))
    assert s.rows() == {"total": rows, "train": n_train, "validation": n_val, "test": n_test}
    assert list(s.train.index) == list(range(n_train))  # fresh index, no positions leak


def test_sizes_round_up_like_scikit_learn_without_float_noise() -> None:
    assert partition_sizes(150, 0.0, 0.2) == (120, 0, 30)  # 0.2 * 150 = 30.000000000000004
    assert partition_sizes(10, 0.15, 0.15) == (6, 2, 2)


def test_stratification_keeps_class_proportions() -> None:
    df = labelled(3000, classes=4, seed=1)
    s = split_frame(df, "y", validation=0.2, test=0.2, seed=3, stratify=True)
    whole = df["y"].value_counts(normalize=True).sort_index()
    for part in (s.train, s.validation, s.test):
        share = part["y"].value_counts(normalize=True).sort_index()
        assert np.allclose(share, whole, atol=0.003)


def test_stratify_with_a_one_row_class_is_a_clear_error() -> None:
    df = labelled(100, classes=2)
    df.loc[0, "y"] = 9
    with pytest.raises(DataError) as info:
        split_frame(df, "y", validation=0.0, test=0.2, seed=0, stratify=True)
    assert info.value.reason == "StratifyImpossible"
    assert "the smallest, 9, has 1 rows" in info.value.message
    assert "stratify to false" in info.value.message


@pytest.mark.parametrize(
    ("rows", "validation", "test", "empty"),
    [(2, 0.5, 0.4, "train"), (1, 0.0, 0.2, "train"), (3, 0.4, 0.4, "train")],
)
def test_empty_partition(rows: int, validation: float, test: float, empty: str) -> None:
    with pytest.raises(DataError) as info:
        split_frame(labelled(rows), "y", validation=validation, test=test, seed=0, stratify=False)
    assert info.value.reason == "EmptyPartition"
    assert f"leaves {empty} empty" in info.value.message
    assert f"splitting {rows} rows" in info.value.message


def test_no_validation_fraction_gives_an_empty_validation_partition() -> None:
    s = split_frame(labelled(50), "y", validation=0.0, test=0.2, seed=0, stratify=False)
    assert len(s.validation) == 0
    assert list(s.validation.columns) == ["id", "x", "y"]

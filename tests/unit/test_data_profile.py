from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kubeml.data.profile import (
    assign_bins,
    bin_fractions,
    categorical_profile,
    numeric_profile,
    profile_frame,
    psi,
    quantile_cuts,
    sorted_quantiles,
)


def test_numeric_profile_against_numpy() -> None:
    values = np.arange(1.0, 101.0)  # 1..100
    series = pd.Series(np.concatenate([values, [np.nan, np.nan]]))
    p = numeric_profile(series)
    assert p["count"] == 100
    assert p["nulls"] == 2
    assert p["mean"] == pytest.approx(50.5)
    assert p["std"] == pytest.approx(np.std(values, ddof=1))
    assert (p["min"], p["max"]) == (1.0, 100.0)
    expected_cuts = np.quantile(values, np.linspace(0, 1, 11)[1:-1], method="lower")
    assert p["bins"]["cuts"] == list(expected_cuts)
    assert p["bins"]["cuts"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    # bin 0 = [1, 10) holds 9 values, the last [90, +inf) 11.
    assert p["bins"]["fractions"] == pytest.approx([0.09] + [0.1] * 8 + [0.11])


def test_discrete_column_bins_have_no_empty_first_bin() -> None:
    values = np.array([0.0] * 70 + [1.0] * 30)
    assert quantile_cuts(values) == [1.0]
    assert bin_fractions([1.0], values) == [0.7, 0.3]


def test_constant_column_has_one_bin_and_single_value_no_std() -> None:
    p = numeric_profile(pd.Series([5.0, 5.0, 5.0]))
    assert p["bins"] == {"cuts": [], "fractions": [1.0]}
    assert numeric_profile(pd.Series([5.0]))["std"] is None


def test_all_null_column() -> None:
    p = numeric_profile(pd.Series([np.nan, np.nan]))
    assert p["count"] == 0
    assert p["nulls"] == 2
    assert p["bins"] is None
    assert p["mean"] is None


def test_infinities_are_counted_apart() -> None:
    p = numeric_profile(pd.Series([1.0, np.inf, 2.0, -np.inf]))
    assert p["count"] == 2
    assert p["nonFinite"] == 2
    assert p["max"] == 2.0


def test_open_ended_bins_take_values_outside_the_training_range() -> None:
    cuts = [1.0, 2.0]
    assert list(assign_bins(cuts, np.array([-100.0, 0.99, 1.0, 1.5, 2.0, 100.0]))) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(min_value=1, max_value=300), elements=finite))
def test_sorted_quantiles_and_counts_agree_with_numpy(values: np.ndarray) -> None:
    ordered = np.sort(values)
    qs = np.linspace(0, 1, 11)
    assert np.array_equal(sorted_quantiles(ordered, qs), np.quantile(values, qs, method="lower"))
    cuts = quantile_cuts(values)
    assert cuts == sorted(set(cuts))
    fast = bin_fractions(cuts, ordered, ordered=True)
    slow = bin_fractions(cuts, values)
    assert fast == slow
    assert sum(fast) == pytest.approx(1.0)
    assert fast[0] > 0  # the first bin holds at least the minimum


def test_categorical_profile_frequencies_and_other() -> None:
    series = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + [None])
    p = categorical_profile(series, top=2)
    assert p["count"] == 10
    assert p["nulls"] == 1
    assert p["distinct"] == 3
    assert p["frequencies"] == {"a": 0.5, "b": 0.3}
    assert p["otherFraction"] == pytest.approx(0.2)


def test_profile_frame_is_json_and_covers_every_column() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, np.nan], "c": ["u", "v", "u"], "y": [0, 1, 0]})
    p = profile_frame(
        df, [("x", "number", "feature"), ("c", "category", "feature"), ("y", "integer", "target")]
    )
    text = json.dumps(p, allow_nan=False)
    assert json.loads(text)["rows"] == 3
    assert p["columns"]["x"]["kind"] == "numeric"
    assert p["columns"]["c"]["kind"] == "categorical"
    assert p["columns"]["y"]["role"] == "target"


def test_psi_zero_for_identical_and_grows_with_shift() -> None:
    base = [0.25, 0.25, 0.25, 0.25]
    assert psi(base, base) == 0.0
    assert 0 < psi(base, [0.3, 0.3, 0.2, 0.2]) < psi(base, [0.7, 0.1, 0.1, 0.1])
    assert np.isfinite(psi(base, [1.0, 0.0, 0.0, 0.0]))  # empty bins smoothed

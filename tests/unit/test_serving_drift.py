"""Drift math: PSI with epsilon smoothing, the sliding window, profile baselines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeml.data import profile as data_profile
from kubeml.serving.drift import (
    PSI_EPSILON,
    CategoricalBaseline,
    DriftWindow,
    NumericBaseline,
    baseline_from_profile,
    fractions,
    psi,
    window_from_profile,
)


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0


def test_psi_matches_the_formula() -> None:
    e, a = [0.5, 0.5], [0.9, 0.1]
    want = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert psi(e, a) == pytest.approx(want)


def test_empty_bins_are_smoothed_not_infinite() -> None:
    value = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert math.isfinite(value)
    eps = PSI_EPSILON
    want = 2 * (0.5 - eps) * math.log(0.5 / eps)
    assert value == pytest.approx(want)


def test_psi_agrees_with_the_profile_module() -> None:
    e, a = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]
    assert psi(e, a) == pytest.approx(data_profile.psi(e, a))


def test_psi_rejects_different_bins() -> None:
    with pytest.raises(ValueError, match="bins differ"):
        psi([0.5, 0.5], [1.0])


@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=12).flatmap(
        lambda e: st.tuples(st.just(e), st.lists(st.floats(0, 1), min_size=len(e), max_size=len(e)))
    )
)
def test_psi_is_finite_and_non_negative_on_distributions(
    pair: tuple[list[float], list[float]],
) -> None:
    e, a = (np.asarray(x) + 1e-12 for x in pair)
    value = psi(e / e.sum(), a / a.sum())
    assert math.isfinite(value)
    assert value >= -1e-9  # each term (a-e)*ln(a/e) is >= 0


def test_fractions_of_no_counts_are_zero() -> None:
    assert fractions(np.zeros(3, dtype=np.int64)).tolist() == [0.0, 0.0, 0.0]


def test_numeric_bins_follow_the_profile_rule() -> None:
    b = NumericBaseline(np.asarray([1.0, 2.0]), np.asarray([0.3, 0.4, 0.3]))
    got = b.assign(np.asarray([0.5, 1.0, 1.5, 2.0, 9.0, math.nan]))
    # bin 0 = (-inf, 1), bin 1 = [1, 2), bin 2 = [2, inf); NaN is not binned
    assert got.tolist() == [0, 1, 1, 2, 2, -1]
    assert (
        got[:5].tolist()
        == data_profile.assign_bins([1.0, 2.0], np.asarray([0.5, 1.0, 1.5, 2.0, 9.0])).tolist()
    )


def _window(window: int) -> DriftWindow:
    b = NumericBaseline(np.asarray([1.0, 2.0]), np.asarray([0.3, 0.4, 0.3]))
    return DriftWindow({0: ("x", b)}, window)


def test_window_counts_only_the_newest_rows() -> None:
    w = _window(4)
    w.observe([np.asarray([0.0, 0.0, 0.0])])
    w.observe([np.asarray([5.0, 5.0, 5.0])])  # evicts two of the zeros
    assert w.rows == 4
    counts = w._counts[0]
    assert counts.tolist() == [1, 0, 3]


def test_window_equals_recomputing_over_the_last_rows() -> None:
    rng = np.random.default_rng(0)
    w = _window(50)
    seen: list[float] = []
    for _ in range(30):
        batch = rng.normal(1.5, 1.0, size=int(rng.integers(1, 9)))
        w.observe([batch])
        seen.extend(batch.tolist())
    last = np.asarray(seen[-50:])
    want = np.bincount(np.searchsorted([1.0, 2.0], last, side="right"), minlength=3)
    assert w._counts[0].tolist() == want.tolist()
    expected_psi = psi([0.3, 0.4, 0.3], want / want.sum())
    assert w.psi_by_feature()["x"] == pytest.approx(expected_psi)


def test_a_batch_larger_than_the_window_keeps_its_newest_rows() -> None:
    w = _window(3)
    w.observe([np.asarray([0.0, 0.0, 5.0, 5.0, 1.5])])
    assert w._counts[0].tolist() == [0, 1, 2]


def test_missing_values_are_not_counted() -> None:
    w = _window(10)
    w.observe([np.asarray([math.nan, math.nan])])
    assert w.psi_by_feature() == {}
    w.observe([np.asarray([1.5])])
    assert w._counts[0].tolist() == [0, 1, 0]


def test_window_needs_a_row() -> None:
    with pytest.raises(ValueError, match="at least 1 row"):
        _window(0)


def test_categorical_baseline_pools_unknown_values() -> None:
    b = CategoricalBaseline({"a": 0, "b": 1}, np.asarray([0.5, 0.4, 0.1]))
    assert b.assign(np.asarray(["a", "b", "zzz", None], dtype=object)).tolist() == [0, 1, 2, -1]


def test_window_from_a_real_profile() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=2000),
            "y": rng.uniform(size=2000),
            "c": rng.choice(["red", "green", "blue"], size=2000),
        }
    )
    prof = data_profile.profile_frame(
        frame,
        [("x", "number", "feature"), ("y", "number", "feature"), ("c", "category", "feature")],
    )
    w = window_from_profile(prof, ["x", "y", "c", "absent"], window=1000)
    assert w.features == ["x", "y", "c"]
    # same distribution as training: small PSI; shifted: large
    w.observe(
        [
            rng.normal(size=1000),
            rng.uniform(size=1000),
            rng.choice(["red", "green", "blue"], 1000),
            None,
        ]
    )  # type: ignore[list-item]
    calm = w.psi_by_feature()
    assert all(v < 0.05 for v in calm.values()), calm
    w.observe(
        [rng.normal(3.0, size=1000), rng.uniform(size=1000), np.asarray(["red"] * 1000), None]
    )  # type: ignore[list-item]
    shifted = w.psi_by_feature()
    assert shifted["x"] > 1.0 and shifted["c"] > 0.5 and shifted["y"] < 0.05


def test_unusable_profile_columns_have_no_baseline() -> None:
    assert baseline_from_profile({"kind": "numeric", "bins": None}) is None
    assert (
        baseline_from_profile({"kind": "numeric", "bins": {"cuts": [1.0], "fractions": [1.0]}})
        is None
    )
    assert baseline_from_profile({"kind": "categorical", "frequencies": {}}) is None
    assert baseline_from_profile({"kind": "other"}) is None
    assert window_from_profile({"nonsense": 1}, ["x"]).features == []


@settings(max_examples=50)
@given(st.lists(st.floats(-1e6, 1e6) | st.just(math.nan), max_size=200), st.integers(1, 64))
def test_window_never_fails_and_stays_bounded(values: list[float], size: int) -> None:
    w = _window(size)
    for start in range(0, len(values), 7):
        w.observe([np.asarray(values[start : start + 7], dtype=float)])
    assert 0 <= w.rows <= size
    assert int(w._counts[0].sum()) <= size
    assert all(math.isfinite(v) for v in w.psi_by_feature().values())


def test_psi_is_withheld_until_the_window_has_enough_rows() -> None:
    w = _window(10_000)
    w.observe([np.full(5, 9.0)])  # five far-off rows: a huge but meaningless PSI
    assert w.psi_by_feature() == {}
    w.observe([np.full(200, 9.0)])
    assert w.psi_by_feature()["x"] > 0.2

"""Per-column profile of the training partition: the drift baseline.

Numeric columns get quantile bins. A bin is defined by its ``cuts`` (sorted, unique
inner edges): bin 0 is (-inf, cuts[0]), bin i is [cuts[i-1], cuts[i]), the last is
[cuts[-1], +inf). Open ends mean a served value outside the training range still
falls in a bin. ``fractions`` are the shares of non-null training values per bin;
the model server bins live traffic with ``assign_bins`` and compares with ``psi``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .types import NUMERIC, ColumnType
from .validation import as_text

FORMAT = "kubeml.io/profile/v1"
BINS = 10
MAX_CATEGORIES = 100
# Added to empty bins before the logarithm in PSI, as is customary.
PSI_EPSILON = 1e-4


def _f(x: float | np.floating) -> float | None:
    """A JSON-safe float (NaN and inf are not JSON)."""
    v = float(x)
    return v if np.isfinite(v) else None


def sorted_quantiles(ordered: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """np.quantile(values, qs, method="lower") on already sorted values.

    "lower" picks actual data values, so a discrete column (flags, counts) gets cuts
    at its own values rather than between them, where a bin would be empty. Sorting
    each column once also lets bin counts come from binary searches.
    """
    # Same arithmetic as numpy's virtual index, so results agree exactly.
    idx = np.floor(qs * (ordered.size - 1)).astype(np.int64)
    return np.asarray(ordered[idx], dtype=float)


def quantile_cuts(values: np.ndarray, bins: int = BINS, *, ordered: bool = False) -> list[float]:
    """Inner edges from the quantiles, deduplicated; a cut at the minimum is dropped
    because it would leave the first bin empty (discrete columns: 0/1 flags)."""
    if values.size == 0:
        return []
    srt = values if ordered else np.sort(values)
    qs = sorted_quantiles(srt, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(c) for c in np.unique(qs) if c > srt[0]]


def assign_bins(cuts: Sequence[float], values: np.ndarray) -> np.ndarray:
    """The bin index of each value under the rule in the module docstring."""
    return np.searchsorted(np.asarray(cuts, dtype=float), values, side="right")


def bin_fractions(
    cuts: Sequence[float], values: np.ndarray, *, ordered: bool = False
) -> list[float]:
    """Share of ``values`` in each bin (``ordered``: values are sorted, so counting is
    one binary search per cut instead of one per value)."""
    if values.size == 0:
        return [0.0] * (len(cuts) + 1)
    if ordered:
        # Values below cut i are those in bins 0..i: differences give the counts.
        below = np.searchsorted(values, np.asarray(cuts, dtype=float), side="left")
        counts = np.diff(np.concatenate(([0], below, [values.size])))
    else:
        counts = np.bincount(assign_bins(cuts, values), minlength=len(cuts) + 1)
    return [float(c / values.size) for c in counts]


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = PSI_EPSILON) -> float:
    """Population stability index between two binned distributions."""
    e = np.clip(np.asarray(expected, dtype=float), eps, None)
    a = np.clip(np.asarray(actual, dtype=float), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_profile(series: pd.Series, bins: int = BINS) -> dict[str, Any]:
    raw = series.to_numpy(dtype=float, na_value=np.nan)
    nulls = int(np.isnan(raw).sum())
    values = raw[np.isfinite(raw)]
    out: dict[str, Any] = {"kind": "numeric", "count": int(values.size), "nulls": nulls}
    if values.size != raw.size - nulls:
        out["nonFinite"] = int(raw.size - nulls - values.size)
    if values.size == 0:
        return {**out, "mean": None, "std": None, "min": None, "max": None, "bins": None}
    ordered = np.sort(values)
    cuts = quantile_cuts(ordered, bins, ordered=True)
    return {
        **out,
        "mean": _f(values.mean()),
        # Sample standard deviation (ddof=1), as pandas reports it; None for one value.
        "std": _f(values.std(ddof=1)) if values.size > 1 else None,
        "min": _f(ordered[0]),
        "max": _f(ordered[-1]),
        "bins": {"cuts": cuts, "fractions": bin_fractions(cuts, ordered, ordered=True)},
    }


def categorical_profile(series: pd.Series, top: int = MAX_CATEGORIES) -> dict[str, Any]:
    values = series.dropna()
    nulls = int(len(series) - len(values))
    counts = values.map(as_text).value_counts()
    ranked = sorted(((str(v), int(n)) for v, n in counts.items()), key=lambda vn: (-vn[1], vn[0]))
    total = len(values)
    kept = ranked[:top]
    other = total - sum(n for _, n in kept)
    return {
        "kind": "categorical",
        "count": total,
        "nulls": nulls,
        "distinct": len(ranked),
        "frequencies": {v: n / total for v, n in kept},
        "otherFraction": other / total if total else 0.0,
    }


def profile_frame(
    train: pd.DataFrame, columns: Sequence[tuple[str, ColumnType, str]], bins: int = BINS
) -> dict[str, Any]:
    """Profile of each (name, type, role) column over the training rows."""
    out: dict[str, Any] = {}
    for name, type_, role in columns:
        series = train[name]
        body = numeric_profile(series, bins) if type_ in NUMERIC else categorical_profile(series)
        out[name] = {"type": type_, "role": role, **body}
    return {
        "format": FORMAT,
        "rows": len(train),
        "bins": bins,
        "binRule": "bin 0 = (-inf, cuts[0]); bin i = [cuts[i-1], cuts[i]); last = [cuts[-1], +inf)",
        "columns": out,
    }

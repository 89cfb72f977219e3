"""Feature drift: population stability index of recent inputs against the profile.

The baseline is the dataset profile written at preparation time (``kubeml.data.profile``):
numeric columns carry quantile ``cuts`` and the training ``fractions`` per bin,
categorical ones the ``frequencies`` of their top values and an ``otherFraction``.
The server keeps the bin index of each of the last ``window`` rows in a ring buffer
and the per-bin counts alongside, so observing a batch costs one ``searchsorted``
per feature plus two ``bincount``s, and PSI at scrape time is O(bins).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Added to empty bins before the logarithm; the same value the profile module uses,
# so a PSI computed here and one computed offline agree.
PSI_EPSILON = 1e-4
DEFAULT_WINDOW = 5000


# Fewest rows in the window before a feature's PSI is exposed (about ten per bin).
MIN_ROWS = 100


def psi(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    eps: float = PSI_EPSILON,
) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e).

    Both inputs are fractions over the same bins. Zero fractions are raised to
    ``eps`` so that an empty bin contributes a large but finite term rather than inf.
    """
    e = np.clip(np.asarray(expected, dtype=float), eps, None)
    a = np.clip(np.asarray(actual, dtype=float), eps, None)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: {e.shape} expected vs {a.shape} actual")
    return float(np.sum((a - e) * np.log(a / e)))


def fractions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return np.zeros(counts.shape, dtype=float)
    return np.asarray(counts, dtype=float) / float(total)


@dataclass(frozen=True)
class NumericBaseline:
    """Quantile bins of one numeric feature: bin i is [cuts[i-1], cuts[i])."""

    cuts: np.ndarray
    expected: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.expected)

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Bin index per value; -1 for missing (NaN) values, which are not binned."""
        bins = np.searchsorted(self.cuts, values, side="right")
        missing = np.isnan(values)
        if missing.any():
            bins = np.where(missing, -1, bins)
        return bins


@dataclass(frozen=True)
class CategoricalBaseline:
    """Top training categories, each its own bin, plus one bin for all others."""

    index: Mapping[str, int]
    expected: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.expected)

    def assign(self, values: np.ndarray) -> np.ndarray:
        other = self.n_bins - 1
        get = self.index.get
        return np.fromiter(
            (-1 if v is None else get(str(v), other) for v in values),
            dtype=np.int64,
            count=len(values),
        )


Baseline = NumericBaseline | CategoricalBaseline


def baseline_from_profile(column: Mapping[str, Any]) -> Baseline | None:
    """The baseline of one column of profile.json, or None when it has no usable bins."""
    kind = column.get("kind")
    if kind == "numeric":
        bins = column.get("bins")
        if not isinstance(bins, Mapping):
            return None
        cuts = np.asarray(bins.get("cuts") or [], dtype=float)
        expected = np.asarray(bins.get("fractions") or [], dtype=float)
        if expected.size != cuts.size + 1 or not np.all(np.isfinite(cuts)):
            return None
        return NumericBaseline(cuts, expected)
    if kind == "categorical":
        freqs = column.get("frequencies")
        if not isinstance(freqs, Mapping) or not freqs:
            return None
        names = [str(k) for k in freqs]
        expected = np.asarray(
            [*(float(freqs[k]) for k in freqs), column.get("otherFraction") or 0.0]
        )
        return CategoricalBaseline({n: i for i, n in enumerate(names)}, expected)
    return None


class DriftWindow:
    """Bin counts of the last ``window`` rows of every profiled feature.

    ``observe`` runs on the predict worker thread, ``psi_by_feature`` on the
    scrape; a lock keeps the counts and the ring buffer consistent between them.
    """

    def __init__(self, baselines: Mapping[int, tuple[str, Baseline]], window: int = DEFAULT_WINDOW):
        if window < 1:
            raise ValueError("window must be at least 1 row")
        self.window = window
        self.min_rows = MIN_ROWS
        # column index in the request matrix -> (feature name, baseline)
        self._features = dict(baselines)
        self._cols = list(self._features)
        # -1 marks an empty slot or a missing value: neither is counted.
        self._ring = np.full((window, len(self._cols)), -1, dtype=np.int32)
        self._counts = [np.zeros(b.n_bins, dtype=np.int64) for _, b in self._features.values()]
        self._pos = 0
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def features(self) -> list[str]:
        return [name for name, _ in self._features.values()]

    @property
    def rows(self) -> int:
        """Rows currently in the window."""
        return self._rows

    def observe(self, columns: Sequence[np.ndarray]) -> None:
        """Add a batch: ``columns[j]`` holds the values of request column j."""
        if not self._cols:
            return
        n = len(columns[self._cols[0]])
        if n == 0:
            return
        if n > self.window:  # only the newest rows can stay in the window
            columns = [c[-self.window :] for c in columns]
            n = self.window
        new = np.empty((n, len(self._cols)), dtype=np.int32)
        for j, col in enumerate(self._cols):
            new[:, j] = self._features[col][1].assign(columns[col])
        with self._lock:
            slots = (self._pos + np.arange(n)) % self.window
            old = self._ring[slots]
            for j, counts in enumerate(self._counts):
                size = len(counts)
                gone, came = old[:, j], new[:, j]
                counts -= np.bincount(gone[gone >= 0], minlength=size)[:size]
                counts += np.bincount(came[came >= 0], minlength=size)[:size]
            self._ring[slots] = new
            self._pos = (self._pos + n) % self.window
            self._rows = min(self.window, self._rows + n)

    def psi_by_feature(self) -> dict[str, float]:
        """PSI per feature over the window; features with no observed values are left out."""
        out: dict[str, float] = {}
        with self._lock:
            snapshot = [c.copy() for c in self._counts]
        for (name, baseline), counts in zip(self._features.values(), snapshot, strict=True):
            # PSI over a handful of rows is noise that would fire drift alerts on
            # any quiet model: report a feature only once enough rows are in.
            if counts.sum() < min(self.min_rows, self.window):
                continue
            value = psi(baseline.expected, fractions(counts))
            if math.isfinite(value):
                out[name] = value
        return out


def window_from_profile(
    profile: Mapping[str, Any], feature_order: Sequence[str], window: int = DEFAULT_WINDOW
) -> DriftWindow:
    """A drift window over every feature of ``feature_order`` the profile has bins for."""
    columns = profile.get("columns") if isinstance(profile, Mapping) else None
    baselines: dict[int, tuple[str, Baseline]] = {}
    if isinstance(columns, Mapping):
        for i, name in enumerate(feature_order):
            column = columns.get(name)
            if isinstance(column, Mapping) and (b := baseline_from_profile(column)) is not None:
                baselines[i] = (name, b)
    return DriftWindow(baselines, window)

"""Seeded train/validation/test split: the same seed gives the same rows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .errors import DataError
from .validation import as_text


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def rows(self) -> dict[str, int]:
        t, v, s = len(self.train), len(self.validation), len(self.test)
        return {"total": t + v + s, "train": t, "validation": v, "test": s}


def _count(fraction: float, rows: int) -> int:
    # Rounded before ceil: 0.2 * 150 is 30.000000000000004 in floating point, and
    # a fraction should not take an extra row for that.
    return math.ceil(round(fraction * rows, 6)) if fraction > 0 else 0


def partition_sizes(rows: int, validation: float, test: float) -> tuple[int, int, int]:
    """(train, validation, test) rows: validation and test round up, as scikit-learn does."""
    n_test = _count(test, rows)
    n_val = _count(validation, rows)
    return rows - n_test - n_val, n_val, n_test


def split_frame(
    frame: pd.DataFrame,
    target: str,
    *,
    validation: float,
    test: float,
    seed: int,
    stratify: bool,
) -> Splits:
    rows = len(frame)
    n_train, n_val, n_test = partition_sizes(rows, validation, test)
    empty = [
        name
        for name, n, wanted in (
            ("train", n_train, True),
            ("validation", n_val, validation > 0),
            ("test", n_test, test > 0),
        )
        if wanted and n <= 0
    ]
    if empty:
        raise DataError(
            "EmptyPartition",
            f"splitting {rows} rows with validation {validation:g} and test {test:g} leaves "
            f"{' and '.join(empty)} empty (train {max(n_train, 0)}, validation {n_val}, "
            f"test {n_test}); add rows or change spec.split",
        )
    labels = frame[target].to_numpy() if stratify else None
    try:
        # Split row positions, not the frame: each partition is then copied once
        # (frame.take) instead of twice through an intermediate "rest" frame.
        rest, test_idx = _split(np.arange(rows), labels, n_test, seed)
        if n_val:
            rest_labels = labels[rest] if labels is not None else None
            train_idx, val_idx = _split(rest, rest_labels, n_val, seed)
        else:
            train_idx, val_idx = rest, rest[:0]
    except ValueError as err:
        if not stratify:
            raise
        raise DataError("StratifyImpossible", _stratify_message(frame, target, err)) from err
    # A fresh index: the original row positions mean nothing downstream, and it
    # keeps the Parquet files free of an index column.
    return Splits(
        frame.take(train_idx).reset_index(drop=True),
        frame.take(val_idx).reset_index(drop=True),
        frame.take(test_idx).reset_index(drop=True),
    )


def _split(
    positions: np.ndarray, labels: np.ndarray | None, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    left, right = train_test_split(
        positions, test_size=n, random_state=seed, shuffle=True, stratify=labels
    )
    return np.asarray(left), np.asarray(right)


def _stratify_message(frame: pd.DataFrame, target: str, err: ValueError) -> str:
    counts = frame[target].value_counts()
    smallest = as_text(counts.idxmin()) if len(counts) else None
    return (
        f"cannot stratify {len(frame)} rows on target {target!r}: {len(counts)} classes, "
        f"the smallest, {smallest}, has {int(counts.min()) if len(counts) else 0} rows; "
        f"every class needs enough rows for each partition ({err}). "
        "Set spec.split.stratify to false or add rows"
    )

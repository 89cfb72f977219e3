"""The validation rules of a Dataset. Every failed check is reported, not just the first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..api.dataset import ValidationRules
from .types import NUMERIC, ColumnType, satisfies

# How many offending values a message names before summarising.
_SHOW = 10
VALIDATION_FAILED = "ValidationFailed"
NON_NUMERIC = "NonNumericFeature"


@dataclass(frozen=True)
class Failure:
    """One failed check. ``check`` is the rule's field name on the wire."""

    check: str
    message: str
    column: str | None = None
    reason: str = VALIDATION_FAILED

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


def failure_reason(failures: list[Failure]) -> str:
    """NonNumericFeature when that is the only kind of failure, else ValidationFailed."""
    reasons = {f.reason for f in failures}
    return reasons.pop() if len(reasons) == 1 else VALIDATION_FAILED


def as_text(value: object) -> str:
    """How a cell compares with the strings of allowedCategories."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _num(x: float) -> str:
    return f"{x:.6g}"


def validate(
    frame: pd.DataFrame,
    rules: ValidationRules | None,
    types: Mapping[str, ColumnType],
    *,
    target: str,
) -> list[Failure]:
    """Every failed check of ``rules`` on ``frame`` (empty when all pass).

    The target must never be null: a row without a label cannot be trained on,
    and dropping it silently would change the row counts users asked for.
    """
    failures = _target_nulls(frame, target)
    if rules is None:
        return failures
    if rules.min_rows is not None and len(frame) < rules.min_rows:
        failures.append(
            Failure("minRows", f"{len(frame)} rows, fewer than the required {rules.min_rows}")
        )
    for req in rules.required_columns or []:
        failures += _required(frame, types, req.name, req.type)
    for rng in rules.ranges or []:
        failures += _range(frame, types, rng.column, rng.min, rng.max)
    if rules.max_null_fraction is not None:
        failures += _nulls(frame, rules.max_null_fraction)
    for cat in rules.allowed_categories or []:
        failures += _categories(frame, cat.column, cat.values)
    return failures


def _target_nulls(frame: pd.DataFrame, target: str) -> list[Failure]:
    nulls = int(frame[target].isna().sum())
    if not nulls:
        return []
    return [
        Failure(
            "target",
            f"target column {target!r} has {nulls} null values of {len(frame)} rows",
            target,
        )
    ]


def _missing(check: str, column: str) -> Failure:
    return Failure(check, f"column {column!r} is missing", column)


def _required(
    frame: pd.DataFrame, types: Mapping[str, ColumnType], column: str, required: str | None
) -> list[Failure]:
    if column not in frame.columns:
        return [_missing("requiredColumns", column)]
    actual = types[column]
    if required is None or satisfies(frame[column], actual, required):  # type: ignore[arg-type]
        return []
    numeric_wanted = required in NUMERIC and actual not in NUMERIC
    return [
        Failure(
            "requiredColumns",
            f"column {column!r} has type {actual}, not {required}"
            + (" (non-numeric values where numbers are required)" if numeric_wanted else ""),
            column,
            NON_NUMERIC if numeric_wanted else VALIDATION_FAILED,
        )
    ]


def _range(
    frame: pd.DataFrame,
    types: Mapping[str, ColumnType],
    column: str,
    low: float | None,
    high: float | None,
) -> list[Failure]:
    if column not in frame.columns:
        return [_missing("ranges", column)]
    if types[column] not in NUMERIC:
        return [
            Failure(
                "ranges",
                f"column {column!r} has type {types[column]}; min/max need numbers",
                column,
                NON_NUMERIC,
            )
        ]
    values = frame[column].dropna().to_numpy(dtype=float)
    out = []
    if low is not None and (below := values[values < low]).size:
        out.append(
            Failure(
                "ranges",
                f"column {column!r} has {below.size} values below min {_num(low)} "
                f"(lowest {_num(float(below.min()))})",
                column,
            )
        )
    if high is not None and (above := values[values > high]).size:
        out.append(
            Failure(
                "ranges",
                f"column {column!r} has {above.size} values above max {_num(high)} "
                f"(highest {_num(float(above.max()))})",
                column,
            )
        )
    return out


def _nulls(frame: pd.DataFrame, limit: float) -> list[Failure]:
    rows = len(frame)
    if rows == 0:
        return []
    out = []
    for column, nulls in frame.isna().sum().items():
        fraction = int(nulls) / rows
        if fraction > limit:
            out.append(
                Failure(
                    "maxNullFraction",
                    f"column {column!r} has null fraction {fraction:.4g} ({int(nulls)} of "
                    f"{rows} rows), above {limit:g}",
                    str(column),
                )
            )
    return out


def _categories(frame: pd.DataFrame, column: str, allowed: list[str]) -> list[Failure]:
    if column not in frame.columns:
        return [_missing("allowedCategories", column)]
    series = frame[column].dropna()
    counts = series.map(as_text).value_counts()
    allowed_set = set(allowed)
    # Most frequent first, ties by value: the same data gives the same message.
    bad = sorted(
        ((str(v), int(n)) for v, n in counts.items() if v not in allowed_set),
        key=lambda vn: (-vn[1], vn[0]),
    )
    if not bad:
        return []
    shown = ", ".join(f"{v!r} ({n})" for v, n in bad[:_SHOW])
    more = f" and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
    return [
        Failure(
            "allowedCategories",
            f"column {column!r} has {sum(n for _, n in bad)} rows with values outside the allowed "
            f"categories: {shown}{more}",
            column,
        )
    ]

"""Feature and target selection."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .errors import DataError

_SHOW = 20


def _names(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_SHOW])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > _SHOW else "")


def select_columns(
    frame: pd.DataFrame, target: str, features: Sequence[str] | None, *, source: str
) -> pd.DataFrame:
    """The features (in the order given, else every other column) followed by the target."""
    available = [str(c) for c in frame.columns]
    if target not in available:
        raise DataError(
            "TargetMissing",
            f"target column {target!r} not found in {source}; columns: {_names(available)}",
        )
    if features is None:
        chosen = [c for c in available if c != target]
    else:
        missing = [f for f in features if f not in available]
        if missing:
            raise DataError(
                "ColumnMissing",
                f"feature column{'s' if len(missing) > 1 else ''} {_names(missing)} not found "
                f"in {source}; columns: {_names(available)}",
            )
        chosen = list(features)
    if not chosen:
        raise DataError("ColumnMissing", f"{source} has no feature columns besides {target!r}")
    wanted = [*chosen, target]
    # Already in shape (the usual case for large synthetic data): no copy.
    return frame if available == wanted else frame[wanted]

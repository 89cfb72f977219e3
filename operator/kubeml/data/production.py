"""A training table from production: captured requests joined with their ground truth.

Pure (tables in, table out); runtime/fetch.py reads the Parquet objects. A captured
request holds n rows (one list of n values per feature); its feedback holds n truth
values. The join keeps requests with feedback whose length matches, the latest
feedback per id winning (a corrected label replaces the first), and explodes them to
one row per predicted row with the truth as the Dataset's target column.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import DataError


def join(
    captures: pa.Table,
    feedback: pa.Table,
    target: str,
    label: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Feature columns (as captured) plus ``target``; ``label`` names the source."""
    if captures.num_rows == 0:
        raise DataError("SourceNotFound", f"{label}: no captured requests")
    if "inputs" not in captures.column_names:
        raise DataError("InvalidSource", f"{label}: captures hold no input columns")
    cap = captures.select(["id", "time", "rows", "inputs"]).to_pandas()
    if since is not None:
        cap = cap[cap["time"] >= pd.Timestamp(since)]
    if until is not None:
        cap = cap[cap["time"] < pd.Timestamp(until)]
    # A client reusing an id: its latest request is the one feedback refers to.
    cap = cap.sort_values("time", kind="stable").drop_duplicates("id", keep="last")
    if feedback.num_rows == 0:
        raise DataError("NoLabelledRows", f"{label}: no ground truth has been sent yet")
    fb = feedback.select(["id", "time", "truth"]).to_pandas()
    fb = fb.sort_values("time", kind="stable").drop_duplicates("id", keep="last")
    both = cap.merge(fb[["id", "truth"]], on="id", how="inner")
    both = both[both["rows"] == both["truth"].map(len)]
    if both.empty:
        raise DataError(
            "NoLabelledRows",
            f"{label}: none of {len(cap)} captured requests"
            + (" in the time range" if since or until else "")
            + " has matching ground truth",
        )
    features = list(both["inputs"].iloc[0].keys())
    if target in features:
        raise DataError("InvalidSource", f"{label}: the target {target!r} is also a captured input")
    columns = {f: np.concatenate([np.asarray(rec[f]) for rec in both["inputs"]]) for f in features}
    truth = np.concatenate([np.asarray(t, dtype=object) for t in both["truth"]])
    frame = pd.DataFrame(columns)
    frame[target] = _typed(truth)
    return frame


def _typed(truth: np.ndarray) -> pd.Series:
    """Class labels travel as strings; integer-looking ones become integers again,
    so the target compares equal to the training data's."""
    series = pd.Series(truth)
    if series.map(lambda v: isinstance(v, str)).all():
        as_int = pd.to_numeric(series, errors="coerce")
        if as_int.notna().all() and (as_int == as_int.round()).all():
            return as_int.astype("int64")
        return series.astype(str)
    return series.astype("float64")


def append(
    base: pd.DataFrame,
    rows: pd.DataFrame,
    *,
    target: str,
    base_target: str,
    label: str,
    base_label: str,
) -> pd.DataFrame:
    """The base Dataset's rows, then the production rows, in the base's column order.

    Both must hold exactly the same columns and target: a model trained on the
    result sees one table, not two with holes. ``label`` and ``base_label`` name the
    two sides in the message of a mismatch."""
    if target != base_target:
        raise DataError(
            "ColumnMismatch",
            f"{label} cannot be appended to {base_label}: the target is {target!r} "
            f"here and {base_target!r} there",
        )
    missing = [c for c in base.columns if c not in rows.columns]
    extra = [c for c in rows.columns if c not in base.columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_columns(missing)} that {base_label} has")
        if extra:
            parts.append(f"extra {_columns(extra)} that {base_label} lacks")
        raise DataError(
            "ColumnMismatch", f"{label} cannot be appended to {base_label}: " + "; ".join(parts)
        )
    return pd.concat([base, rows[list(base.columns)]], ignore_index=True)


def _columns(names: list[str]) -> str:
    listed = ", ".join(repr(n) for n in names)
    return f"column {listed}" if len(names) == 1 else f"columns {listed}"

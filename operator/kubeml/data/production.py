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

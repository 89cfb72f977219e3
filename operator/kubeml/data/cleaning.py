"""Cleaning rules: rows dropped before validation and the split (pure)."""

from __future__ import annotations

import pandas as pd

from ..api.dataset import Cleaning


def clean(
    frame: pd.DataFrame, rules: Cleaning | None, target: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The frame without the rows the rules drop, and how many each rule dropped.

    Missing targets go first: a row without a label is dropped for that reason even
    when it also duplicates another, so each count says what its rule alone took.
    """
    if rules is None:
        return frame, {}
    removed: dict[str, int] = {}
    if rules.drop_missing_target:
        keep = frame[target].notna()
        removed["missingTarget"] = int((~keep).sum())
        frame = frame[keep]
    if rules.drop_duplicates:
        dup = frame.duplicated(keep="first")
        removed["duplicates"] = int(dup.sum())
        frame = frame[~dup]
    if any(removed.values()):
        frame = frame.reset_index(drop=True)
    return frame, removed

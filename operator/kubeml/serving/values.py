"""Turning JSON values of one tensor or column into numpy arrays, with the checks
the signature asks for. Every failure is a RequestError naming what was wrong."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import RequestError, bad_request
from .signature import INT_DATATYPES, NUMERIC_TYPES


def _array(data: Any, what: str) -> np.ndarray:
    if isinstance(data, np.ndarray):  # raw bytes already decoded by their datatype
        return data
    if not isinstance(data, list):
        raise bad_request(f"{what}: data must be a JSON array, got {type(data).__name__}")
    try:
        return np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        # numpy refuses ragged nesting; name it instead of echoing numpy's wording
        raise bad_request(f"{what}: data is not a regular array ({err})") from err


def _number_or_none(v: Any) -> bool:
    # bool is an int subclass in Python, but a JSON true in a number column is a mistake
    return v is None or (type(v) in (int, float))


def numeric(data: Any, what: str, datatype: str | None, allow_missing: bool) -> np.ndarray:
    """float64 values (any shape the JSON nests into); null becomes NaN if allowed."""
    if isinstance(data, np.ndarray):
        return _numeric_raw(data, what, allow_missing)
    arr = _array(data, what)
    kind = arr.dtype.kind
    if kind == "f":
        if datatype in INT_DATATYPES and arr.size and not np.all(np.mod(arr, 1) == 0):
            raise bad_request(f"{what}: datatype {datatype} but data holds non-integer numbers")
        return arr.astype(np.float64, copy=False)
    if kind in "iu":
        return arr.astype(np.float64)
    if kind == "O":
        return _numeric_objects(arr, what, allow_missing)
    if kind == "b":
        raise bad_request(f"{what}: booleans where numbers are expected")
    raise bad_request(f"{what}: non-numeric value where numbers are expected")


def _numeric_raw(arr: np.ndarray, what: str, allow_missing: bool) -> np.ndarray:
    # Raw floats, unlike JSON numbers, can be NaN or infinite: NaN is a missing
    # value (where the model takes them), infinity never fits.
    if arr.dtype.kind == "b":
        raise bad_request(f"{what}: booleans where numbers are expected")
    if arr.dtype.kind not in "iuf":
        raise bad_request(f"{what}: non-numeric value where numbers are expected")
    out = arr.astype(np.float64)
    if arr.dtype.kind == "f" and not np.isfinite(out).all():
        if np.isinf(out).any():
            raise bad_request(f"{what}: non-finite value")
        if not allow_missing:
            raise bad_request(f"{what}: NaN (missing) values are not accepted by this model")
    return out


def _numeric_objects(arr: np.ndarray, what: str, allow_missing: bool) -> np.ndarray:
    # Object arrays come from nulls, huge integers or mixed junk; rare, so a Python
    # pass over the values is affordable here.
    flat = arr.ravel()
    for v in flat:
        if not _number_or_none(v):
            raise bad_request(f"{what}: non-numeric value {_show(v)} where numbers are expected")
        if v is None and not allow_missing:
            raise bad_request(f"{what}: null (missing) values are not accepted by this model")
    try:
        out = np.array([math.nan if v is None else float(v) for v in flat], dtype=np.float64)
    except OverflowError as err:
        raise bad_request(f"{what}: number too large") from err
    if not np.all(np.isfinite(out) | np.isnan(out)) or (not allow_missing and np.isnan(out).any()):
        raise bad_request(f"{what}: non-finite value")
    return out.reshape(arr.shape)


def booleans(data: Any, what: str, allow_missing: bool) -> np.ndarray:
    arr = _array(data, what)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind == "O" and allow_missing:
        flat = arr.ravel()
        if all(v is None or type(v) is bool for v in flat):
            return arr
    raise bad_request(f"{what}: expected true/false values")


def strings(data: Any, what: str, allow_missing: bool) -> np.ndarray:
    arr = _array(data, what)
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind == "O":
        flat = arr.ravel()
        if all(type(v) is str or (allow_missing and v is None) for v in flat):
            return arr
    raise bad_request(f"{what}: expected strings (BYTES)")


def column(
    data: Any, what: str, dtype: str, datatype: str | None, allow_missing: bool
) -> np.ndarray:
    """The values of one feature, by its signature type."""
    if dtype in NUMERIC_TYPES:
        return numeric(data, what, datatype, allow_missing)
    if dtype == "boolean":
        return booleans(data, what, allow_missing)
    return strings(data, what, allow_missing)


def shape_of(raw: Any, what: str) -> list[int]:
    if not isinstance(raw, list) or not raw or len(raw) > 8:
        raise bad_request(f"{what}: shape must be a list of 1 to 8 integers")
    for d in raw:
        if type(d) is not int or d < 0:
            raise bad_request(f"{what}: shape must hold non-negative integers, got {_show(d)}")
    return raw


def check_rows(n: int, max_rows: int) -> None:
    if n == 0:
        raise bad_request("empty batch: no rows to predict")
    if n > max_rows:
        raise RequestError(413, f"batch of {n} rows exceeds the limit of {max_rows} rows")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."

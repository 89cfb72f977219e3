"""From a loaded table and a DatasetSpec to validated, split and profiled data (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from pandas.api import types as pdt

from ..api.dataset import DatasetSpec
from .cleaning import clean
from .errors import DataError
from .profile import profile_frame
from .select import select_columns
from .split import Splits, split_frame
from .types import ColumnType, infer_type, satisfies
from .validation import failure_reason, validate

SCHEMA_FORMAT = "kubeml.io/schema/v1"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    role: str  # "feature" | "target"

    def to_wire(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "role": self.role}


@dataclass(frozen=True)
class Prepared:
    columns: list[Column]
    splits: Splits
    schema: dict[str, Any]
    profile: dict[str, Any]
    # Rows spec.cleaning dropped, per rule that is on.
    removed: dict[str, int]


def _dtype(series: pd.Series) -> str:
    """The storage type, named the same across pandas versions (2.x says object, 3.x str)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    if pdt.is_bool_dtype(series.dtype) or pdt.is_numeric_dtype(series.dtype):
        return str(series.dtype)
    return "string"


def content_spec(spec: DatasetSpec) -> dict[str, Any]:
    """The parts of the spec that define the prepared content.

    They go into schema.json, hence into the version: the same data prepared under
    different rules (another split, other validation rules) is a different version.
    How the Job runs (resources, retries, deadline, refresh schedule) and where the
    credentials live do not change the content and are left out.
    """
    wire = spec.to_wire()
    for key in ("refresh", "resources", "backoffLimit", "activeDeadlineSeconds"):
        wire.pop(key, None)
    s3 = wire.get("source", {}).get("s3")
    if s3 is not None:
        s3.pop("credentials", None)
        s3.pop("endpoint", None)
    wire["split"] = spec.split.model_dump(mode="json", by_alias=True)  # defaults explicit
    return wire


def column_types(frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, ColumnType]:
    """Inferred types, with a declared (and satisfied) requiredColumns type winning."""
    types = {str(c): infer_type(frame[c]) for c in frame.columns}
    rules = spec.validation
    for req in (rules.required_columns or []) if rules else []:
        if req.type and req.name in types and satisfies(frame[req.name], types[req.name], req.type):
            types[req.name] = req.type
    return types


def prepare_frame(frame: pd.DataFrame, spec: DatasetSpec, *, source: str) -> Prepared:
    """Select, clean, validate, split and profile. Raises DataError with every failed
    check."""
    selected = select_columns(frame, spec.target, spec.features, source=source)
    del frame  # the caller should not keep it either: the splits copy the rows
    selected, removed = clean(selected, spec.cleaning, spec.target)
    inferred = {str(c): infer_type(selected[c]) for c in selected.columns}
    failures = validate(selected, spec.validation, inferred, target=spec.target)
    if failures:
        raise DataError(
            failure_reason(failures),
            f"{len(failures)} validation check{'s' if len(failures) > 1 else ''} failed "
            f"on {source}",
            failures=[str(f) for f in failures],
        )
    types = column_types(selected, spec)
    columns = [
        Column(name, types[name], "target" if name == spec.target else "feature")
        for name in selected.columns
    ]
    splits = split_frame(
        selected,
        spec.target,
        validation=spec.split.validation,
        test=spec.split.test,
        seed=spec.split.seed,
        stratify=spec.split.stratify,
    )
    del selected
    profile = profile_frame(splits.train, [(c.name, c.type, c.role) for c in columns])
    schema = {
        "format": SCHEMA_FORMAT,
        "target": spec.target,
        "columns": [{**c.to_wire(), "dtype": _dtype(splits.train[c.name])} for c in columns],
        "rows": splits.rows(),
        "spec": content_spec(spec),
    }
    if removed:
        schema["removed"] = removed
    return Prepared(columns, splits, schema, profile, removed)

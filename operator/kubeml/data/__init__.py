"""Data preparation without I/O to S3 or Kubernetes: sources, validation, split, profile."""

from .errors import DataError
from .pipeline import Column, Prepared, content_spec, prepare_frame
from .profile import assign_bins, profile_frame, psi
from .split import Splits, partition_sizes, split_frame
from .types import ColumnType, infer_type
from .validation import Failure, validate

__all__ = [
    "Column",
    "ColumnType",
    "DataError",
    "Failure",
    "Prepared",
    "Splits",
    "assign_bins",
    "content_spec",
    "infer_type",
    "partition_sizes",
    "prepare_frame",
    "profile_frame",
    "psi",
    "split_frame",
    "validate",
]

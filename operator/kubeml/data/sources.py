"""Tables from the sources a Dataset names: scikit-learn's bundled sets, seeded
synthetic data, and CSV/Parquet bytes (fetched by the runtime, parsed here)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn import datasets

from ..api.dataset import BUILTIN_DATASETS, SyntheticSource
from .errors import DataError

Format = Literal["csv", "parquet"]
TARGET = "target"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_LOADERS: dict[str, Callable[..., Any]] = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}


def load_builtin(name: str) -> pd.DataFrame:
    """A data set bundled with scikit-learn (read from the package: no network)."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise DataError(
            "UnknownBuiltin",
            f"unknown builtin data set {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}",
        )
    frame: pd.DataFrame = loader(as_frame=True).frame
    return frame.reset_index(drop=True)


# make_classification / make_regression hold about three copies of the table while
# generating it (measured: 480 MB of working set for a 168 MB 1,000,000 x 20 table).
GENERATION_OVERHEAD = 3


def synthetic_size(src: SyntheticSource) -> int:
    """Peak bytes of generating the table (float64 features and target)."""
    return src.rows * (src.features + 1) * 8 * GENERATION_OVERHEAD


def load_synthetic(src: SyntheticSource) -> pd.DataFrame:
    """Seeded make_classification / make_regression: columns f0..f{n-1} and "target"."""
    informative = src.informative or max(1, src.features // 2)
    if src.task == "classification":
        classes = src.classes or 2
        # make_classification places classes*clusters on the vertices of a hypercube
        # with 2**informative corners; use fewer clusters before refusing.
        clusters = min(2, (2**informative) // classes)
        if clusters < 1:
            raise DataError(
                "InvalidSynthetic",
                f"synthetic classification with {classes} classes needs at least "
                f"{int(np.ceil(np.log2(classes)))} informative features (got {informative})",
            )
        x, y = datasets.make_classification(
            n_samples=src.rows,
            n_features=src.features,
            n_informative=informative,
            n_redundant=0,
            n_repeated=0,
            n_classes=classes,
            n_clusters_per_class=clusters,
            random_state=src.seed,
        )
    else:
        x, y = datasets.make_regression(
            n_samples=src.rows,
            n_features=src.features,
            n_informative=informative,
            noise=src.noise or 0.0,
            random_state=src.seed,
        )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(src.features)], copy=False)
    frame[TARGET] = y
    return frame


def infer_format(name: str, declared: str | None, head: bytes = b"") -> Format:
    """csv or parquet: as declared, else from the name's suffix, else from magic bytes."""
    if declared is not None:
        if declared not in ("csv", "parquet"):
            raise DataError("UnsupportedFormat", f"{name}: unsupported format {declared!r}")
        return "csv" if declared == "csv" else "parquet"
    path = name.split("?", 1)[0].split("#", 1)[0].lower()
    for suffix, fmt in _SUFFIXES.items():
        if path.endswith(suffix):
            return fmt
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    raise DataError(
        "UnsupportedFormat",
        f"{name}: cannot tell the format from the name (expected .csv or .parquet); "
        "set the source's format to csv or parquet",
    )


def parse_table(data: bytes, fmt: Format, name: str) -> pd.DataFrame:
    """A DataFrame from CSV or Parquet bytes; ``name`` (URL, s3:// URI) goes in errors."""
    if not data.strip():
        raise DataError("EmptyFile", f"{name} is empty")
    frame = _parse_csv(data, name) if fmt == "csv" else _parse_parquet(data, name)
    if len(frame.columns) == 0:
        raise DataError("EmptyFile", f"{name} has no columns")
    if len(frame) == 0:
        raise DataError("EmptyFile", f"{name} has a header but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _parse_csv(data: bytes, name: str) -> pd.DataFrame:
    compression = "gzip" if data.startswith(GZIP_MAGIC) else None
    try:
        return pd.read_csv(io.BytesIO(data), compression=compression, encoding="utf-8")
    except pd.errors.EmptyDataError as err:
        raise DataError("EmptyFile", f"{name} has no data: {err}") from err
    except pd.errors.ParserError as err:
        raise DataError("MalformedCSV", f"{name} is not valid CSV: {_first_line(err)}") from err
    except UnicodeDecodeError as err:
        raise DataError(
            "MalformedCSV", f"{name} is not UTF-8 text (byte {err.start}): is it really CSV?"
        ) from err
    except (OSError, EOFError) as err:  # a truncated gzip stream
        raise DataError("MalformedCSV", f"{name} could not be decompressed: {err}") from err


def _parse_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            "MalformedParquet", f"{name} is not a valid Parquet file: {_first_line(err)}"
        ) from err
    return table.to_pandas()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def concat_tables(parts: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Parts of a prefix, in key order, into one table; all must share their columns."""
    if not parts:
        raise ValueError("no parts to concatenate")
    first_name, first = parts[0]
    columns = list(first.columns)
    for name, frame in parts[1:]:
        if set(frame.columns) != set(columns):
            extra = sorted(set(frame.columns) - set(columns))
            missing = sorted(set(columns) - set(frame.columns))
            raise DataError(
                "InconsistentColumns",
                f"{name} does not have the columns of {first_name}"
                + (f"; extra: {', '.join(extra)}" if extra else "")
                + (f"; missing: {', '.join(missing)}" if missing else ""),
            )
    if len(parts) == 1:
        return first
    return pd.concat([f[columns] for _, f in parts], ignore_index=True)

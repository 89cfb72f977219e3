"""Writing prepared data to files with deterministic bytes, and its content version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage.hashing import Entry, canonical_json, digest_entries, sha256_file
from .pipeline import Prepared


@dataclass(frozen=True)
class WrittenFile:
    name: str  # file name within the version prefix, e.g. "train.parquet"
    path: Path
    size: int
    sha256: str

    @property
    def entry(self) -> Entry:
        return (self.name, self.size, self.sha256)

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0]


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Parquet whose bytes depend only on the data and the pyarrow version.

    The pandas metadata (it records the pandas version) is dropped; the Arrow schema
    carries the column types. Nothing time-dependent is written by pyarrow.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    # Dictionary pages pay off for repeated values (labels, categories), not for
    # real-valued features, where they only cost time before falling back.
    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    pq.write_table(
        table, path, compression="snappy", use_dictionary=dictionary, write_statistics=True
    )


def _finish(name: str, path: Path) -> WrittenFile:
    digest, size = sha256_file(path)
    return WrittenFile(name, path, size, digest)


def write_prepared(prepared: Prepared, directory: Path) -> list[WrittenFile]:
    """train/validation/test Parquet (validation only if requested), schema and profile."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    parts = {
        "train": prepared.splits.train,
        "validation": prepared.splits.validation,
        "test": prepared.splits.test,
    }
    for part, frame in parts.items():
        if part == "validation" and frame.empty:
            continue  # no validation fraction asked for: no file
        path = directory / f"{part}.parquet"
        write_parquet(frame, path)
        out.append(_finish(path.name, path))
    for name, doc in (("schema.json", prepared.schema), ("profile.json", prepared.profile)):
        path = directory / name
        path.write_bytes(canonical_json(doc))
        out.append(_finish(name, path))
    return out


def content_version(files: list[WrittenFile]) -> str:
    return digest_entries(f.entry for f in files)

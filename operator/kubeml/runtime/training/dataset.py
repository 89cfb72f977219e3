"""Loading a prepared dataset version from S3, every file verified against the
manifest and the manifest against the version (the version is the digest of the
manifest's entries, so neither can change unnoticed)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ...data.types import ColumnType
from ...storage import (
    ArtifactStore,
    IntegrityError,
    KeyNotFound,
    digest_entries,
    parse_uri,
)
from .errors import TrainError

MANIFEST = "manifest.json"
SCHEMA = "schema.json"
SPLITS = ("train", "validation", "test")
_COLUMN_TYPES = frozenset({"integer", "number", "string", "boolean", "category"})


@dataclass(frozen=True)
class LoadedDataset:
    name: str
    version: str
    target: str
    target_type: ColumnType
    features: list[tuple[str, ColumnType]]  # schema order
    train: pd.DataFrame
    validation: pd.DataFrame  # empty when the dataset has no validation split
    test: pd.DataFrame


def store_for(store: ArtifactStore, bucket: str) -> ArtifactStore:
    """The store for another bucket on the same server (the dataset's uri names one)."""
    if bucket == store.bucket:
        return store
    return ArtifactStore(replace(store.settings, bucket=bucket))


def _integrity(name: str, message: str) -> TrainError:
    return TrainError("DatasetIntegrity", f"dataset {name}: {message}")


def _manifest(store: ArtifactStore, key: str, name: str, version: str) -> dict[str, Any]:
    try:
        doc = store.get_json(key)
    except KeyNotFound as err:
        raise TrainError(
            "DatasetNotFound", f"dataset {name} version {version[:12]}: {store.uri(key)} not found"
        ) from err
    try:
        files = {str(n): (int(f["size"]), str(f["sha256"])) for n, f in doc["files"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _integrity(name, f"{store.uri(key)} is malformed: {err!r}") from err
    actual = digest_entries((n, size, sha) for n, (size, sha) in files.items())
    if actual != version or doc.get("version") != version:
        raise _integrity(
            name,
            f"{store.uri(key)} does not describe version {version} "
            f"(its entries digest to {actual})",
        )
    return {"files": files}


def _download(
    store: ArtifactStore, key: str, dest: Path, size: int, sha256: str, name: str
) -> Path:
    try:
        store.download_file(key, dest, expected_sha256=sha256)
    except IntegrityError as err:
        raise _integrity(
            name, f"{store.uri(key)}: sha256 {err.actual} does not match the manifest's {sha256}"
        ) from err
    except KeyNotFound as err:
        raise _integrity(name, f"{store.uri(key)} listed in the manifest is missing") from err
    if dest.stat().st_size != size:  # the digest matched, so this cannot happen; be loud
        raise _integrity(name, f"{store.uri(key)}: size differs from the manifest's {size}")
    return dest


def _schema(path: Path, name: str) -> tuple[str, ColumnType, list[tuple[str, ColumnType]]]:
    try:
        doc = json.loads(path.read_text())
        target = str(doc["target"])
        columns = [
            (str(c["name"]), str(c["type"]), str(c.get("role", "feature"))) for c in doc["columns"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise _integrity(name, f"{SCHEMA} is malformed: {err!r}") from err
    types: dict[str, ColumnType] = {}
    for col, type_, _ in columns:
        if type_ not in _COLUMN_TYPES:
            raise _integrity(name, f"{SCHEMA}: column {col!r} has unknown type {type_!r}")
        types[col] = type_  # type: ignore[assignment]
    if target not in types:
        raise _integrity(name, f"{SCHEMA}: target column {target!r} is not among its columns")
    features = [(c, types[c]) for c, _, role in columns if role != "target" and c != target]
    return target, types[target], features


def load_dataset(store: ArtifactStore, *, name: str, version: str, uri: str) -> LoadedDataset:
    """Download and verify the version's schema and splits; raise TrainError
    (DatasetNotFound, DatasetIntegrity) or StorageError."""
    bucket, prefix = parse_uri(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    src = store_for(store, bucket)
    manifest = _manifest(src, prefix + MANIFEST, name, version)
    files: dict[str, tuple[int, str]] = manifest["files"]
    for needed in ("train.parquet", "test.parquet", SCHEMA):
        if needed not in files:
            raise _integrity(name, f"the manifest lists no {needed}")
    with tempfile.TemporaryDirectory(prefix="kubeml-train-") as tmp:
        paths = {
            file: _download(src, prefix + file, Path(tmp) / file, *files[file], name)
            for file in sorted(files)
            if file == SCHEMA or file.removesuffix(".parquet") in SPLITS
        }
        target, target_type, features = _schema(paths[SCHEMA], name)
        frames = {
            split: _read(paths[f"{split}.parquet"], name) if f"{split}.parquet" in paths else None
            for split in SPLITS
        }
    train, test = frames["train"], frames["test"]
    assert train is not None and test is not None
    validation = frames["validation"]
    if validation is None:
        validation = train.iloc[0:0]
    for split, frame in (("train", train), ("validation", validation), ("test", test)):
        missing = [c for c, _ in features if c not in frame.columns]
        if target not in frame.columns:
            missing.append(target)
        if missing and not (split == "validation" and frame.empty):
            raise _integrity(name, f"{split} split lacks columns {missing}")
    return LoadedDataset(name, version, target, target_type, features, train, validation, test)


def _read(path: Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # hashed bytes we cannot parse: still integrity
        raise _integrity(name, f"{path.name} is not readable Parquet: {err}") from err


__all__ = ["LoadedDataset", "load_dataset", "store_for"]

"""Uploading a prepared version under its content address, once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..data.files import WrittenFile
from ..storage import ArtifactStore, KeyNotFound, StorageError, digest_entries, layout
from ..storage.store import ObjectInfo

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "kubeml.io/dataset-manifest/v1"
_CONTENT_TYPES = {".parquet": "application/vnd.apache.parquet", ".json": "application/json"}


@dataclass(frozen=True)
class Published:
    version: str
    prefix: str  # "namespaces/<namespace>/datasets/<version>/"
    files: dict[str, ObjectInfo]  # by file name
    manifest: ObjectInfo
    reused: bool
    uploaded_bytes: int
    upload_seconds: float


def manifest_doc(version: str, files: list[WrittenFile], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": version,
        "files": {f.name: {"size": f.size, "sha256": f.sha256} for f in files},
        **extra,
    }


def _existing(store: ArtifactStore, key: str, version: str) -> dict[str, Any] | None:
    """The manifest already published for this version, if it is intact."""
    try:
        doc = store.get_json(key)
    except KeyNotFound:
        return None
    try:
        entries = [(n, int(f["size"]), str(f["sha256"])) for n, f in doc["files"].items()]
        intact = doc.get("version") == version and digest_entries(entries) == version
    except (KeyError, TypeError, ValueError, AttributeError):
        intact = False
    if not intact:
        # Someone wrote a broken manifest under a content address: heal it by re-uploading.
        log.warning(
            "manifest %s does not match version %s; uploading again", store.uri(key), version
        )
        return None
    return dict(doc)


def publish(
    store: ArtifactStore,
    namespace: str,
    version: str,
    files: list[WrittenFile],
    extra: dict[str, Any],
) -> Published:
    """Upload ``files`` under the namespace's datasets/<version>/ and the manifest last
    (it marks the version complete). If the manifest already exists, nothing is
    uploaded: the same content was published before, by this Dataset or another of
    the namespace with the same data."""
    prefix = layout.dataset_prefix(namespace, version)
    manifest_key = prefix + MANIFEST
    existing = _existing(store, manifest_key, version)
    if existing is not None:
        infos = {
            name: ObjectInfo(store.bucket, prefix + name, int(f["size"]), str(f["sha256"]))
            for name, f in existing["files"].items()
        }
        head = store.head(manifest_key)
        return Published(version, prefix, infos, head, True, 0, 0.0)
    started = time.perf_counter()
    infos = {}
    for f in files:
        content_type = _CONTENT_TYPES.get(f.path.suffix, "application/octet-stream")
        info = store.put_file(prefix + f.name, f.path, sha256=f.sha256, content_type=content_type)
        if info.size != f.size:
            raise StorageError(
                f"{info.uri}: uploaded {info.size} bytes, expected {f.size}",
                bucket=store.bucket,
                key=info.key,
            )
        infos[f.name] = info
    manifest = store.put_json(manifest_key, manifest_doc(version, files, extra))
    elapsed = time.perf_counter() - started
    sent = sum(f.size for f in files) + manifest.size
    return Published(version, prefix, infos, manifest, False, sent, elapsed)

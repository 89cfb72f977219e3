"""ArtifactStore: content-addressed objects in one S3 bucket, verified on read."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config

from .errors import BucketNotFound, IntegrityError, KeyNotFound, StorageError, map_error
from .hashing import canonical_json, sha256_bytes, sha256_file
from .settings import S3Settings
from .uri import make_uri, parse_uri

T = TypeVar("T")
SHA256_META = "sha256"
MiB = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None
    last_modified: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return make_uri(self.bucket, self.key)


@dataclass(frozen=True)
class TransferTuning:
    """Multipart settings. Parts of 16 MiB on 8 threads keep a local or in-cluster
    server busy; objects under the threshold go in one PUT (no multipart overhead)."""

    threshold: int = 16 * MiB
    chunk_size: int = 16 * MiB
    concurrency: int = 8

    def config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=self.chunk_size,
            max_concurrency=self.concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )


def make_client(settings: S3Settings, env: Mapping[str, str] | None = None, pool: int = 10) -> Any:
    """A boto3 S3 client with retries, timeouts, and credentials from env vars only."""
    access, secret, token = settings.credentials(env)
    config = Config(
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": settings.addressing_style},
        max_pool_connections=pool,
        # We carry our own sha256; botocore's default CRC32 trailers cost CPU and
        # use aws-chunked encoding that not every S3 clone accepts.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A private session: boto3's default session is global and caches credentials.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        aws_session_token=token,
        verify=settings.verify_tls,
        config=config,
    )


class ArtifactStore:
    """Objects in ``settings.bucket``. Every write records the sha256 in the object's
    metadata; reads verify against an expected digest when one is given."""

    def __init__(
        self,
        settings: S3Settings,
        *,
        env: Mapping[str, str] | None = None,
        tuning: TransferTuning | None = None,
    ) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.tuning = tuning or TransferTuning()
        self.client = make_client(settings, env, pool=max(10, self.tuning.concurrency + 2))

    @classmethod
    def from_env(cls) -> ArtifactStore:
        return cls(S3Settings.from_env())

    # -- addressing ---------------------------------------------------------------

    def uri(self, key: str = "") -> str:
        return make_uri(self.bucket, key)

    parse_uri = staticmethod(parse_uri)

    # -- writes -------------------------------------------------------------------

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        digest = sha256_bytes(data)
        extra = self._extra(digest, content_type, metadata)
        if len(data) < self.tuning.threshold:
            self._call(
                key, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
            )
        else:
            self._transfer_upload(key, io.BytesIO(data), extra)
        return ObjectInfo(self.bucket, key, len(data), digest, metadata=dict(extra["Metadata"]))

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        sha256: str | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a file (multipart above the threshold).

        ``sha256`` skips re-reading the file when the caller has just hashed it.
        """
        size = os.path.getsize(path)
        digest = sha256 or sha256_file(path)[0]
        extra = self._extra(digest, content_type, metadata)
        self._transfer_upload(key, str(path), extra)
        return ObjectInfo(self.bucket, key, size, digest, metadata=dict(extra["Metadata"]))

    def put_json(self, key: str, obj: object) -> ObjectInfo:
        return self.put_bytes(key, canonical_json(obj), content_type="application/json")

    def delete(self, key: str) -> None:
        """Delete one object (S3 answers success for a key that is already gone)."""
        self._call(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        if not prefix:
            raise ValueError("refusing to delete an empty prefix (the whole bucket)")
        keys = [o.key for o in self.list_prefix(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = {"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            self._call(
                prefix, partial(self.client.delete_objects, Bucket=self.bucket, Delete=batch)
            )
        return len(keys)

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True if it was created."""
        try:
            self._call(None, lambda: self.client.head_bucket(Bucket=self.bucket))
            return False
        except (BucketNotFound, KeyNotFound):
            pass
        self._call(None, lambda: self.client.create_bucket(Bucket=self.bucket))
        return True

    # -- reads --------------------------------------------------------------------

    def get_bytes(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        def read() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with body:
                return bytes(body.read())

        data = self._call(key, read)
        if expected_sha256 is not None:
            self._verify(key, expected_sha256, sha256_bytes(data))
        return data

    def get_json(self, key: str, *, expected_sha256: str | None = None) -> Any:
        data = self.get_bytes(key, expected_sha256=expected_sha256)
        try:
            return json.loads(data)
        except ValueError as err:
            raise StorageError(
                f"{self.uri(key)}: not valid JSON: {err}", bucket=self.bucket, key=key
            ) from err

    def download_file(
        self, key: str, path: str | Path, *, expected_sha256: str | None = None
    ) -> str:
        """Download to ``path`` (atomically: a partial or tampered file never appears
        under the final name) and return its sha256."""
        dest = Path(path)
        part = dest.with_name(dest.name + ".part")
        try:
            with self._manager() as manager:
                future = manager.download(self.bucket, key, str(part))
                self._call(key, future.result)
            digest, _ = sha256_file(part)
            if expected_sha256 is not None:
                self._verify(key, expected_sha256, digest)
            part.replace(dest)
            return digest
        finally:
            part.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo:
        resp = self._call(key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        meta = {str(k).lower(): str(v) for k, v in (resp.get("Metadata") or {}).items()}
        return ObjectInfo(
            self.bucket,
            key,
            int(resp.get("ContentLength", 0)),
            meta.get(SHA256_META),
            str(resp.get("ETag", "")).strip('"') or None,
            resp.get("LastModified"),
            meta,
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except KeyNotFound:
            return False
        return True

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix``, sorted by key."""
        return sorted(self._iter_prefix(prefix), key=lambda o: o.key)

    def _iter_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in self._call(prefix, lambda: list(pages)):
            for obj in page.get("Contents") or []:
                yield ObjectInfo(
                    self.bucket,
                    str(obj["Key"]),
                    int(obj.get("Size", 0)),
                    etag=str(obj.get("ETag", "")).strip('"') or None,
                    last_modified=obj.get("LastModified"),
                )

    # -- plumbing -----------------------------------------------------------------

    def _extra(
        self, digest: str, content_type: str, metadata: Mapping[str, str] | None
    ) -> dict[str, Any]:
        meta = {**(metadata or {}), SHA256_META: digest}
        return {"Metadata": meta, "ContentType": content_type}

    @contextmanager
    def _manager(self) -> Iterator[Any]:
        manager = create_transfer_manager(self.client, self.tuning.config())
        try:
            yield manager
        finally:
            manager.shutdown()

    def _transfer_upload(self, key: str, source: str | io.BytesIO, extra: dict[str, Any]) -> None:
        # The transfer manager directly, not client.upload_file: that wraps every
        # ClientError in S3UploadFailedError and loses the error code we map.
        with self._manager() as manager:
            future = manager.upload(source, self.bucket, key, extra_args=extra)
            self._call(key, future.result)

    def _verify(self, key: str, expected: str, actual: str) -> None:
        if expected.lower() != actual:
            raise IntegrityError(bucket=self.bucket, key=key, expected=expected, actual=actual)

    def _call(self, key: str | None, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as err:
            mapped = map_error(
                err, bucket=self.bucket, key=key, endpoint=self.settings.endpoint_url
            )
            if type(mapped) is KeyNotFound and key is not None and not self._bucket_exists():
                # HEAD answers a bare 404 for a missing bucket too: tell them apart.
                mapped = BucketNotFound(
                    f"s3://{self.bucket}/{key}: bucket {self.bucket} does not exist",
                    bucket=self.bucket,
                    key=key,
                )
            if mapped is err:
                raise
            raise mapped from err

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as err:
            return not isinstance(map_error(err, bucket=self.bucket), BucketNotFound | KeyNotFound)
        return True

"""ArtifactStore against a real S3 server (SeaweedFS started for this test process)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kubeml.storage import (
    AccessDenied,
    ArtifactStore,
    BucketNotFound,
    CredentialsMissing,
    EndpointUnreachable,
    IntegrityError,
    KeyNotFound,
    sha256_bytes,
)
from kubeml.storage.devserver import SeaweedS3, free_ports, shared_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> SeaweedS3:
    return shared_server()


@pytest.fixture
def store(server: SeaweedS3) -> ArtifactStore:
    return ArtifactStore(server.settings(), env=server.env())


@pytest.fixture
def prefix(store: ArtifactStore) -> Iterator[str]:
    p = f"test-storage/{uuid.uuid4().hex[:8]}/"
    yield p
    store.delete_prefix(p)


def test_round_trip_with_sha256_in_metadata(store: ArtifactStore, prefix: str) -> None:
    data = b"hello, artifacts\n"
    info = store.put_bytes(prefix + "a.txt", data, metadata={"kind": "greeting"})
    assert info.sha256 == sha256_bytes(data)
    assert info.uri == f"s3://{store.bucket}/{prefix}a.txt"
    head = store.head(prefix + "a.txt")
    assert (head.size, head.sha256, head.metadata["kind"]) == (len(data), info.sha256, "greeting")
    assert store.get_bytes(prefix + "a.txt", expected_sha256=info.sha256) == data
    assert store.exists(prefix + "a.txt")
    assert not store.exists(prefix + "b.txt")

    store.put_json(prefix + "z.json", {"b": [1, 2], "a": None})
    store.put_bytes(prefix + "m/1.bin", b"1")
    assert store.get_json(prefix + "z.json") == {"a": None, "b": [1, 2]}
    keys = [o.key for o in store.list_prefix(prefix)]
    assert keys == [prefix + "a.txt", prefix + "m/1.bin", prefix + "z.json"]
    assert store.delete_prefix(prefix + "m/") == 1
    assert [o.key for o in store.list_prefix(prefix)] == [prefix + "a.txt", prefix + "z.json"]
    assert store.parse_uri(store.uri(prefix + "a.txt")) == (store.bucket, prefix + "a.txt")


def test_multipart_upload_of_20_mb(store: ArtifactStore, prefix: str, tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024 + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    info = store.put_file(prefix + "big.bin", src)
    assert (info.size, info.sha256) == (len(data), sha256_bytes(data))
    head = store.head(prefix + "big.bin")
    assert head.size == len(data)
    assert head.sha256 == info.sha256
    assert head.etag is not None
    assert head.etag.endswith("-2")  # two 16 MiB parts: it really went multipart
    dest = tmp_path / "back.bin"
    assert store.download_file(prefix + "big.bin", dest, expected_sha256=info.sha256) == info.sha256
    assert dest.read_bytes() == data
    from_bytes = store.put_bytes(prefix + "big2.bin", data)
    assert store.head(prefix + "big2.bin").etag.endswith("-2")  # type: ignore[union-attr]
    assert store.get_bytes(prefix + "big2.bin", expected_sha256=from_bytes.sha256) == data


def test_tampered_object_fails_integrity(store: ArtifactStore, prefix: str, tmp_path: Path) -> None:
    key = prefix + "model.bin"
    info = store.put_bytes(key, b"the real model")
    assert info.sha256 is not None
    # An attacker (or a bug) replaces the bytes but keeps the recorded digest.
    store.client.put_object(
        Bucket=store.bucket, Key=key, Body=b"evil model", Metadata={"sha256": info.sha256}
    )
    with pytest.raises(IntegrityError) as err:
        store.get_bytes(key, expected_sha256=info.sha256)
    assert err.value.expected == info.sha256
    assert err.value.actual == sha256_bytes(b"evil model")
    for part in (store.bucket, key, info.sha256, err.value.actual):
        assert part in str(err.value)
    dest = tmp_path / "model.bin"
    with pytest.raises(IntegrityError):
        store.download_file(key, dest, expected_sha256=info.sha256)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left either


def test_missing_key(store: ArtifactStore, prefix: str, tmp_path: Path) -> None:
    key = prefix + "absent.csv"
    for call in (
        lambda: store.get_bytes(key),
        lambda: store.head(key),
        lambda: store.download_file(key, tmp_path / "x"),
    ):
        with pytest.raises(KeyNotFound) as err:
            call()
        assert f"s3://{store.bucket}/{key}" in str(err.value)
        assert err.value.reason == "KeyNotFound"


def test_missing_bucket(server: SeaweedS3) -> None:
    bucket = f"kubeml-missing-{uuid.uuid4().hex[:8]}"
    store = ArtifactStore(server.settings(bucket=bucket), env=server.env())
    for call in (
        lambda: store.get_bytes("k.csv"),
        lambda: store.head("k.csv"),
        lambda: store.list_prefix("p/"),
    ):
        with pytest.raises(BucketNotFound) as err:
            call()
        assert bucket in str(err.value)
    assert store.ensure_bucket() is True
    assert store.ensure_bucket() is False
    assert store.list_prefix("") == []


def test_wrong_secret_key_is_access_denied(server: SeaweedS3, store: ArtifactStore) -> None:
    store.put_bytes("test-storage/denied.txt", b"x")
    bad = ArtifactStore(
        server.settings(), env={**server.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    )
    for call in (
        lambda: bad.get_bytes("test-storage/denied.txt"),
        lambda: bad.head("test-storage/denied.txt"),
        lambda: bad.put_bytes("test-storage/denied.txt", b"y"),
    ):
        with pytest.raises(AccessDenied) as err:
            call()
        assert f"s3://{server.bucket}/test-storage/denied.txt" in str(err.value)
        assert not err.value.transient
    with pytest.raises(AccessDenied, match=server.bucket):
        bad.list_prefix("test-storage/")
    assert store.get_bytes("test-storage/denied.txt") == b"x"


def test_closed_port_is_endpoint_unreachable(server: SeaweedS3) -> None:
    (port,) = free_ports(1)  # nothing listens there once the probe socket is closed
    settings = replace(server.settings(), endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
    store = ArtifactStore(settings, env=server.env())
    with pytest.raises(EndpointUnreachable) as err:
        store.get_bytes("some/key")
    assert err.value.transient
    assert err.value.reason == "EndpointUnreachable"
    assert f"127.0.0.1:{port}" in str(err.value)
    assert f"s3://{server.bucket}/some/key" in str(err.value)


def test_no_credentials_in_env(server: SeaweedS3) -> None:
    with pytest.raises(CredentialsMissing, match="AWS_ACCESS_KEY_ID"):
        ArtifactStore(server.settings(), env={})

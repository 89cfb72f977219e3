"""Mapping botocore's exceptions onto the typed storage failures (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from kubeml.storage import (
    AccessDenied,
    BucketNotFound,
    CredentialsMissing,
    EndpointUnreachable,
    IntegrityError,
    KeyNotFound,
    S3Settings,
    StorageError,
    StorageUnavailable,
    TLSError,
    make_uri,
    map_error,
    parse_uri,
)


def client_error(code: str, status: int, op: str = "GetObject", message: str = "") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, op)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (client_error("NoSuchBucket", 404), BucketNotFound),
        (client_error("NoSuchKey", 404), KeyNotFound),
        (client_error("404", 404, "HeadObject"), KeyNotFound),
        (client_error("AccessDenied", 403), AccessDenied),
        (client_error("InvalidAccessKeyId", 403), AccessDenied),
        (client_error("SignatureDoesNotMatch", 403), AccessDenied),
        (client_error("403", 403, "HeadObject"), AccessDenied),
        (client_error("SlowDown", 503), StorageUnavailable),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("InvalidArgument", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), EndpointUnreachable),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), EndpointUnreachable),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), EndpointUnreachable),
        (SSLError(endpoint_url="https://127.0.0.1:1", error="bad cert"), TLSError),
        (NoCredentialsError(), CredentialsMissing),
    ],
)
def test_mapping(err: Exception, kind: type[StorageError]) -> None:
    mapped = map_error(err, bucket="data", key="raw/x.csv", endpoint="http://127.0.0.1:1")
    assert type(mapped) is kind
    assert "data" in str(mapped)
    assert mapped.bucket == "data"
    assert mapped.key == "raw/x.csv"
    if kind is not StorageError:
        assert "raw/x.csv" in str(mapped)


@pytest.mark.parametrize(
    ("kind", "reason", "transient"),
    [
        (BucketNotFound, "BucketNotFound", False),
        (AccessDenied, "AccessDenied", False),
        (KeyNotFound, "KeyNotFound", False),
        (EndpointUnreachable, "EndpointUnreachable", True),
        (StorageUnavailable, "StorageUnavailable", True),
        (TLSError, "TLSError", False),
        (CredentialsMissing, "CredentialsMissing", False),
    ],
)
def test_reasons_are_camelcase_words_with_a_transient_flag(
    kind: type[StorageError], reason: str, transient: bool
) -> None:
    err = kind("x", bucket="b", key="k")
    assert isinstance(err, StorageError)
    assert err.reason == reason
    assert reason.isalpha()
    assert reason[0].isupper()
    assert err.transient is transient


def test_integrity_error_names_everything() -> None:
    err = IntegrityError(bucket="b", key="k/m.bin", expected="a" * 64, actual="c" * 64)
    assert err.reason == "IntegrityError"
    assert not err.transient
    for part in ("s3://b/k/m.bin", "a" * 64, "c" * 64):
        assert part in str(err)


def test_access_denied_message_keeps_the_server_detail() -> None:
    err = map_error(client_error("AccessDenied", 403, "PutObject", "no write"), bucket="b", key="k")
    assert "PutObject" in str(err)
    assert "no write" in str(err)


def test_storage_errors_pass_through_and_unknown_errors_are_wrapped() -> None:
    original = KeyNotFound("gone", bucket="b", key="k")
    assert map_error(original, bucket="other") is original
    wrapped = map_error(RuntimeError("boom"), bucket="b", key="k")
    assert type(wrapped) is StorageError
    assert "boom" in str(wrapped)


def test_uri_round_trip() -> None:
    assert make_uri("b", "datasets/v/") == "s3://b/datasets/v/"
    assert parse_uri("s3://b/datasets/v/x.json") == ("b", "datasets/v/x.json")
    assert parse_uri("s3://b") == ("b", "")
    for bad in ("http://b/k", "b/k", "s3:///k"):
        with pytest.raises(ValueError, match="URI"):
            parse_uri(bad)


def test_settings_from_env_defaults_and_overrides() -> None:
    s = S3Settings.from_env({})
    assert (s.bucket, s.region, s.endpoint_url, s.verify_tls) == ("kubeml", "us-east-1", None, True)
    assert s.addressing_style == "auto"
    s = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_REGION": "eu-west-1",
            "KUBEML_BUCKET": "ml",
            "KUBEML_S3_VERIFY": "false",
        }
    )
    assert (s.bucket, s.region, s.endpoint_url, s.verify_tls) == (
        "ml",
        "eu-west-1",
        "http://127.0.0.1:9000",
        False,
    )
    assert s.addressing_style == "path"
    assert S3Settings.from_env({"KUBEML_S3_VERIFY": "/etc/ca.pem"}).verify_tls == "/etc/ca.pem"


def test_credentials_only_from_env_with_optional_prefix() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "A",
        "AWS_SECRET_ACCESS_KEY": "S",
        "KUBEML_SOURCE_AWS_ACCESS_KEY_ID": "A2",
        "KUBEML_SOURCE_AWS_SECRET_ACCESS_KEY": "S2",
    }
    assert S3Settings().credentials(env) == ("A", "S", None)
    assert S3Settings(credentials_env_prefix="KUBEML_SOURCE_").credentials(env) == (
        "A2",
        "S2",
        None,
    )
    with pytest.raises(CredentialsMissing, match="KUBEML_SOURCE_AWS_ACCESS_KEY_ID"):
        S3Settings(credentials_env_prefix="KUBEML_SOURCE_").credentials({})

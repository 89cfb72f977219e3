"""Typed storage failures and the mapping from botocore's exceptions onto them.

Every failure names the bucket and key it concerns and carries a ``reason`` (one
CamelCase word, used verbatim as a Kubernetes condition reason) and a ``transient``
flag that tells a Job whether retrying can help.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)


class StorageError(Exception):
    reason = "StorageError"
    transient = False

    def __init__(self, message: str, *, bucket: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.bucket = bucket
        self.key = key


class BucketNotFound(StorageError):
    reason = "BucketNotFound"


class AccessDenied(StorageError):
    reason = "AccessDenied"


class KeyNotFound(StorageError):
    reason = "KeyNotFound"


class EndpointUnreachable(StorageError):
    reason = "EndpointUnreachable"
    transient = True


class StorageUnavailable(StorageError):
    """The server answered but is overloaded or failing (5xx, throttling)."""

    reason = "StorageUnavailable"
    transient = True


class CredentialsMissing(StorageError):
    reason = "CredentialsMissing"


class TLSError(StorageError):
    """A certificate problem does not fix itself: permanent, unlike a refused connection."""

    reason = "TLSError"


class IntegrityError(StorageError):
    reason = "IntegrityError"

    def __init__(self, *, bucket: str, key: str, expected: str, actual: str):
        super().__init__(
            f"s3://{bucket}/{key}: sha256 mismatch (expected {expected}, got {actual})",
            bucket=bucket,
            key=key,
        )
        self.expected = expected
        self.actual = actual


_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
    "403",
    "Forbidden",
}
_KEY_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_UNAVAILABLE = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "503",
    "500",
    "502",
    "504",
}


def _where(bucket: str | None, key: str | None) -> str:
    if bucket and key:
        return f"s3://{bucket}/{key}"
    if bucket:
        return f"bucket {bucket}"
    return "S3"


def map_error(
    err: Exception, *, bucket: str | None, key: str | None = None, endpoint: str | None = None
) -> StorageError:
    """The typed failure for a botocore exception (anything else: a generic StorageError)."""
    if isinstance(err, StorageError):
        return err
    where = _where(bucket, key)
    kw = {"bucket": bucket, "key": key}
    if isinstance(err, ClientError):
        info = err.response.get("Error", {})
        code = str(info.get("Code") or "")
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = str(info.get("Message") or code or f"HTTP {status}")
        op = err.operation_name
        if code == "NoSuchBucket":
            return BucketNotFound(f"{where}: bucket {bucket} does not exist ({op})", **kw)
        if code in _DENIED or status == 403:
            return AccessDenied(f"{where}: access denied ({op}: {code or status}: {detail})", **kw)
        if code in _KEY_MISSING or status == 404:
            return KeyNotFound(f"{where}: no such key ({op})", **kw)
        if code in _UNAVAILABLE or status >= 500:
            return StorageUnavailable(f"{where}: server error ({op}: {code}: {detail})", **kw)
        return StorageError(f"{where}: {op} failed: {code}: {detail}", **kw)
    target = endpoint or "the S3 endpoint"
    if isinstance(err, SSLError):
        return TLSError(f"{where}: TLS handshake with {target} failed: {err}", **kw)
    if isinstance(
        err,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | ProxyConnectionError,
    ):
        return EndpointUnreachable(f"{where}: cannot reach {target}: {err}", **kw)
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return CredentialsMissing(
            f"{where}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", **kw
        )
    if isinstance(err, BotoCoreError):
        return StorageError(f"{where}: {err}", **kw)
    return StorageError(f"{where}: {type(err).__name__}: {err}", **kw)

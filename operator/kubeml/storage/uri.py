"""s3:// URIs."""

from __future__ import annotations


def make_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; the key may be empty (a bucket or prefix URI)."""
    scheme, sep, rest = uri.partition("://")
    if scheme != "s3" or not sep:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in the s3:// URI {uri!r}")
    return bucket, key

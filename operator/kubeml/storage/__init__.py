"""The artifact store over S3: content addressing, integrity, typed failures."""

from .errors import (
    AccessDenied,
    BucketNotFound,
    CredentialsMissing,
    EndpointUnreachable,
    IntegrityError,
    KeyNotFound,
    StorageError,
    StorageUnavailable,
    TLSError,
    map_error,
)
from .hashing import canonical_json, digest_entries, sha256_bytes, sha256_file, sha256_stream
from .settings import S3Settings
from .store import ArtifactStore, ObjectInfo, TransferTuning
from .uri import make_uri, parse_uri

__all__ = [
    "AccessDenied",
    "ArtifactStore",
    "BucketNotFound",
    "CredentialsMissing",
    "EndpointUnreachable",
    "IntegrityError",
    "KeyNotFound",
    "ObjectInfo",
    "S3Settings",
    "StorageError",
    "StorageUnavailable",
    "TLSError",
    "TransferTuning",
    "canonical_json",
    "digest_entries",
    "make_uri",
    "map_error",
    "parse_uri",
    "sha256_bytes",
    "sha256_file",
    "sha256_stream",
]

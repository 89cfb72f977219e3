"""sha256 helpers: the content addresses of artifacts and dataset versions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

# 1 MiB reads: large enough that hashing runs near memory bandwidth, small enough
# that a multi-GB file never sits in memory.
CHUNK = 1 << 20

Entry = tuple[str, int, str]
"""(name, size in bytes, sha256 hex) of one file in a set."""


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Digest and size of everything left in ``stream``."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def sha256_file(path: str | Path) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def digest_entries(entries: Iterable[Entry]) -> str:
    """The content version of a set of files: sha256 over its sorted entries.

    Sorting makes the version independent of the order files were written in;
    the size is included so that a digest collision alone cannot alias two sets.
    Names must not contain newlines or tabs (they separate the fields).
    """
    lines = []
    for name, size, digest in sorted(entries):
        if any(c in name for c in "\t\n"):
            raise ValueError(f"entry name {name!r} contains a tab or newline")
        if size < 0:
            raise ValueError(f"entry {name!r} has a negative size {size}")
        lines.append(f"{name}\t{size}\t{digest.lower()}\n")
    return sha256_bytes("".join(lines).encode())


def canonical_json(obj: object) -> bytes:
    """Deterministic JSON bytes: sorted keys, fixed separators, no NaN (not JSON)."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()

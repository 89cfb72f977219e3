"""Model artifacts in the skops format: written by the trainer, loaded only after
their sha256 and every type they name have been checked.

pickle and joblib run arbitrary code on load; skops reads a zip of JSON and .npy
files and constructs only types it was told to trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import skops.io as sio

from .errors import ArtifactMismatch, CorruptArtifact, UntrustedArtifact
from .trusted import foreign, refused

FORMAT = "skops"
SUFFIX = ".skops"
# Deflate at a low level: fitted forests are mostly small integers and repeated
# floats, so level 1 roughly halves them at a fraction of level 9's CPU.
_COMPRESSION = zipfile.ZIP_DEFLATED
_LEVEL = 1


def save(model: Any) -> bytes:
    """The skops bytes of a fitted estimator."""
    data: bytes = sio.dumps(model, compression=_COMPRESSION, compresslevel=_LEVEL)
    return data


def save_file(model: Any, path: str | Path) -> tuple[str, int]:
    """Write the skops archive to ``path`` (large models never sit in memory twice);
    returns its sha256 and size."""
    # Imported here: kubeml.storage brings boto3, which the model server (a user of
    # load) keeps out of its process.
    from ..storage.hashing import sha256_file

    sio.dump(model, path, compression=_COMPRESSION, compresslevel=_LEVEL)
    return sha256_file(path)


def load(data: bytes, expected_sha256: str) -> Any:
    """The estimator in ``data``, if its digest is ``expected_sha256`` and it contains
    only trusted types.

    The digest is checked before anything is parsed, so tampered bytes never reach
    the deserializer.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise ArtifactMismatch(expected_sha256, actual)
    names = _type_names(data)
    untrusted = _untrusted(data)
    bad = sorted({*refused(untrusted), *foreign(names)})
    if bad:
        raise UntrustedArtifact(bad)
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as err:  # skops raises many types for a malformed archive
        raise CorruptArtifact(f"model artifact could not be loaded: {err}") from err


def _untrusted(data: bytes) -> list[str]:
    """Types skops does not trust by default (it parses the schema, constructs nothing)."""
    try:
        return list(sio.get_untrusted_types(data=data))
    except Exception as err:
        raise CorruptArtifact(f"not a skops archive: {err}") from err


def _type_names(data: bytes) -> set[str]:
    """Every ``module.class`` named in the archive's schema, including the ones skops
    trusts by default, so that the module-root rule covers them too."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise CorruptArtifact(f"not a skops archive: {err}") from err
    names: set[str] = set()
    stack: list[Any] = [schema]
    while stack:  # iterative: a deep pipeline must not hit the recursion limit
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                names.add(f"{module}.{cls}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names

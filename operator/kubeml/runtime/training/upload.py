"""Writing the fitted model to S3 under its content address, and the environment
that produced it."""

from __future__ import annotations

import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from ... import models
from ...storage import ArtifactStore, layout

_DISTRIBUTIONS = ("scikit-learn", "numpy", "skops", "pandas")


def upload_model(
    store: ArtifactStore, namespace: str, model_name: str, model: Any
) -> dict[str, Any]:
    """Serialize with skops (via a temp file: a forest can be hundreds of MB) and
    upload once, into the namespace's model space; the same bytes are already there
    when the key exists."""
    with tempfile.TemporaryDirectory(prefix="kubeml-model-") as tmp:
        path = Path(tmp) / f"model{models.SUFFIX}"
        sha256, size = models.save_file(model, path)
        key = layout.model_key(namespace, model_name, sha256)
        if not store.exists(key):
            store.put_file(key, path, sha256=sha256, content_type="application/zip")
    return {"uri": store.uri(key), "sha256": sha256, "size": size, "format": models.FORMAT}


def environment() -> dict[str, str]:
    """Versions that decide whether the artifact loads and predicts the same elsewhere."""
    env = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "unknown"
    return env

"""Writing the fitted model to S3 under its content address, and the environment
that produced it."""

from __future__ import annotations

import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from ... import models
from ...storage import ArtifactStore

MODELS_PREFIX = "models"
_DISTRIBUTIONS = ("scikit-learn", "numpy", "skops", "pandas")


def model_key(model_name: str, sha256: str) -> str:
    return f"{MODELS_PREFIX}/{model_name}/{sha256}{models.SUFFIX}"


def upload_model(store: ArtifactStore, model_name: str, model: Any) -> dict[str, Any]:
    """Serialize with skops (via a temp file: a forest can be hundreds of MB) and
    upload once; the same bytes are already there when the key exists."""
    with tempfile.TemporaryDirectory(prefix="kubeml-model-") as tmp:
        path = Path(tmp) / f"model{models.SUFFIX}"
        sha256, size = models.save_file(model, path)
        key = model_key(model_name, sha256)
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

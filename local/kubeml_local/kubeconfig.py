"""Self-contained kubeconfig files (certificates embedded, so copying one file is enough)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

CLUSTER_NAME = "kubeml-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, cert: Path, key: Path, user: str
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert),
                    "client-key-data": _b64(key),
                },
            }
        ],
        "contexts": [
            {
                "name": CLUSTER_NAME,
                "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": "default"},
            }
        ],
        "current-context": CLUSTER_NAME,
    }
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600, exist_ok=True)
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    # Atomic so a reader polling the file never sees half a kubeconfig.
    tmp.replace(path)

"""Tool binaries built from pinned Go modules (cached; built on first use)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def built(script: str) -> Path:
    """Run hack/<tool>/build.sh (a no-op when cached) and return its output directory."""
    out = subprocess.run(
        [str(ROOT / "hack" / script / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def gateway_api_crds() -> Path:
    """The Gateway API's standard-channel CRD files (hack/gateway-api/fetch.sh, cached)."""
    out = subprocess.run(
        [str(ROOT / "hack" / "gateway-api" / "fetch.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Path(out.stdout.strip().splitlines()[-1])

"""Finding (or building) etcd, kube-apiserver, kube-controller-manager and kubectl.

``hack/k8s/build.sh`` builds them from the pinned Go module into
``<cache>/bin/k8s-<v>-etcd-<v>-<go.sum hash>`` and prints that directory. Calling it when
the directory is complete is cheap, but calling it while another build of the same key is
running starts a second build into the same ``.partial`` directory, so we compute the key
ourselves, use a complete directory directly, and refuse while a build looks active.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
BIN_DIR_ENV = "KUBEML_BIN_DIR"
# A .partial directory written to this recently is taken as a build in progress.
ACTIVE_BUILD_WINDOW_S = 300


class BinariesError(RuntimeError):
    pass


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "hack" / "k8s" / "build.sh").exists() else None


def cache_root() -> Path:
    if env := os.environ.get("KUBEML_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "kubeml"


def complete(d: Path) -> bool:
    return all(os.access(d / n, os.X_OK) for n in NAMES)


def expected_dir(build_script: Path) -> Path:
    """The cache directory build.sh would print, computed the way build.sh does."""
    text = build_script.read_text()
    k8s = re.search(r"^K8S_VERSION=(\S+)", text, re.M)
    etcd = re.search(r"^ETCD_VERSION=(\S+)", text, re.M)
    if not (k8s and etcd):
        raise BinariesError(f"cannot read versions from {build_script}")
    digest = hashlib.sha256((build_script.parent / "go.sum").read_bytes()).hexdigest()[:12]
    return cache_root() / "bin" / f"k8s-{k8s[1]}-etcd-{etcd[1]}-{digest}"


def _build_active(partial: Path) -> bool:
    if not partial.is_dir():
        return False
    stamps = [partial.stat().st_mtime] + [p.stat().st_mtime for p in partial.iterdir()]
    return time.time() - max(stamps) < ACTIVE_BUILD_WINDOW_S


def resolve(bin_dir: Path | None = None, *, build: bool = True) -> Path:
    """Return a directory holding all four binaries; build them when allowed and needed."""
    explicit = bin_dir or (Path(os.environ[BIN_DIR_ENV]) if os.environ.get(BIN_DIR_ENV) else None)
    if explicit:
        if not complete(explicit):
            raise BinariesError(f"{explicit} lacks one of {', '.join(NAMES)}")
        return explicit
    root = repo_root()
    if root is None:
        return _newest_cached()
    script = root / "hack" / "k8s" / "build.sh"
    out = expected_dir(script)
    if complete(out):
        return out
    partial = out.with_name(out.name + ".partial")
    if _build_active(partial):
        raise BinariesError(
            f"a build seems to be running into {partial}; wait for it to finish "
            f"(or remove the directory if it is stale)"
        )
    if not build:
        raise BinariesError(f"control-plane binaries not built; run {script}")
    # Progress goes to our stderr; only the directory comes back on stdout.
    done = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=True)
    built = Path(done.stdout.strip().splitlines()[-1])
    if not complete(built):
        raise BinariesError(f"{script} printed {built}, which lacks binaries")
    return built


def _newest_cached() -> Path:
    dirs = [d for d in (cache_root() / "bin").glob("k8s-*") if complete(d)]
    if not dirs:
        raise BinariesError(
            f"no control-plane binaries under {cache_root() / 'bin'}; set {BIN_DIR_ENV} or run "
            "hack/k8s/build.sh from a source checkout"
        )
    return max(dirs, key=lambda d: d.stat().st_mtime)

"""Building the operator and runtime images without Docker: ``kubeml local images``.

Registry base images cannot be pulled here, so the base is made from Debian's packages
with ``mmdebstrap`` and imported into buildah's storage as ``localhost/kubeml-base``. The
Dockerfiles under ``images/`` are then built unchanged with ``buildah bud --isolation
chroot``, their ``BASE_IMAGE`` build argument pointing at that base, and tagged exactly
as the chart and the operator reference them (``ghcr.io/kubeml/<name>:<appVersion>``).

Python dependencies: a chroot build sees neither the host's pip settings nor the CA of
a TLS proxy in the host's bundle. Rather than teach the Dockerfiles about either, the
dependencies are fetched once per dependency set into a wheelhouse under the cache
(``pip wheel`` run inside the base itself, so the wheels fit its interpreter, with the
host's CA bundle and pip settings mounted in), and every build step gets that
wheelhouse and a ``pip.conf`` saying "no index, find links there" through bind mounts,
which never become a layer. The builds are then offline and the Dockerfiles stay what a
plain ``docker build`` runs.

Caching: the base carries a label naming its suite and packages; each image carries a
label with the hash of everything that goes into it (Dockerfile, the files the build
context admits, the base image's id). Matching labels skip the work.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubeml_local.binaries import cache_root

REGISTRY = "ghcr.io/kubeml"
NAMES = ("operator", "runtime")
BASE_TAG = "localhost/kubeml-base:bookworm"
SUITE = "bookworm"
# What the Dockerfiles call: pip in the build stage, python -m venv, groupadd/useradd;
# python-is-python3 because they run `python`, ca-certificates for pip's TLS.
BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "ca-certificates",
    "passwd",
)
# Left out of the base like the official slim images do: man pages, docs (but not the
# copyright files), translations.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
BASE_LABEL = "io.kubeml.base"
CONTENT_LABEL = "io.kubeml.content-hash"
# The build context, as .dockerignore admits it: these paths, minus the ignored parts.
CONTEXT_PATHS = ("pyproject.toml", "README.md", "operator")
IGNORED_PARTS = ("__pycache__", ".mypy_cache")
IGNORED_SUFFIXES = (".pyc", ".egg-info")
# Host pip settings worth carrying into the wheelhouse fetch (a mirror, timeouts, a
# proxy); PIP_FIND_LINKS and the like name host paths the base does not have.
PASSED_ENV = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
INSTALL_HINT = "apt-get install buildah mmdebstrap"

Echo = Callable[[str], None]


class ImagesError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    name: str
    tag: str
    cached: bool
    seconds: float
    size_bytes: int
    content_hash: str

    def line(self) -> str:
        state = "cached" if self.cached else "built"
        return (
            f"{self.name:<9} {state:<6} {self.seconds:7.1f} s "
            f"{self.size_bytes / 1e6:8.0f} MB  {self.tag}"
        )


def repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "images" / "operator" / "Dockerfile").exists():
        raise ImagesError(f"no images/ under {root}: build the images from a source checkout")
    return root


def check_tools() -> None:
    missing = [t for t in ("buildah", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        raise ImagesError(f"{' and '.join(missing)} not found; install with: {INSTALL_HINT}")


def version(root: Path) -> str:
    """The image tag: the chart's appVersion (the chart's default tag), which must equal
    the package version (the operator's default runtime image uses it too)."""
    chart = yaml.safe_load((root / "charts" / "kubeml" / "Chart.yaml").read_text())
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    app = str(chart["appVersion"])
    if app != project["version"]:
        raise ImagesError(
            f"charts/kubeml appVersion {app} differs from pyproject version {project['version']}"
        )
    return app


def tag(name: str, root: Path) -> str:
    return f"{REGISTRY}/{name}:{version(root)}"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, text=True, capture_output=True)
    if done.returncode != 0:
        # The end of the output says what failed (a pip resolution, a RUN step).
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ImagesError(f"{' '.join(args[:3])} ... failed ({done.returncode}):\n{tail}")
    return done


def inspect(ref: str) -> dict[str, object] | None:
    """buildah's description of image `ref`, or None when there is no such image."""
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", ref], text=True, capture_output=True
    )
    if done.returncode != 0:
        return None
    data: dict[str, object] = json.loads(done.stdout)
    return data


def image_id(info: dict[str, object]) -> str:
    return str(info["FromImageID"])


def labels(info: dict[str, object]) -> dict[str, str]:
    oci = info.get("OCIv1")
    config = oci.get("config") if isinstance(oci, dict) else None
    found = config.get("Labels") if isinstance(config, dict) else None
    return dict(found or {})


def size_bytes(info: dict[str, object]) -> int:
    """Uncompressed size: the sum of the layers (what `buildah images` shows)."""
    manifest = json.loads(str(info["Manifest"]))
    return sum(int(layer["size"]) for layer in manifest["layers"])


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    # Two builds at once (a test and `make images-local`) would both build and race
    # on the tags; the second waits and then finds everything cached.
    path = cache_root() / "images.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- the base ------------------------------------------------------------------------------


def base_key() -> str:
    spec = json.dumps([SUITE, BASE_PACKAGES, DPKG_OPTIONS])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def ensure_base(echo: Echo, *, rebuild: bool = False) -> Result:
    t0 = time.monotonic()
    info = inspect(BASE_TAG)
    key = base_key()
    if info is not None and labels(info).get(BASE_LABEL) == key and not rebuild:
        return Result("base", BASE_TAG, True, time.monotonic() - t0, size_bytes(info), key)
    echo(f">> {BASE_TAG}: mmdebstrap {SUITE} with {', '.join(BASE_PACKAGES)}")
    old = image_id(info) if info else None
    with tempfile.TemporaryDirectory(prefix="kubeml-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                *(f"--dpkgopt={o}" for o in DPKG_OPTIONS),
                SUITE,
                str(rootfs),
            ]
        )
        container = _run(["buildah", "from", "--quiet", "scratch"]).stdout.strip()
        try:
            mount = _run(["buildah", "mount", container]).stdout.strip()
            # Numeric owners: names would be mapped through the host's /etc/passwd.
            _run(["tar", "--numeric-owner", "-xf", str(rootfs), "-C", mount])
            _run(["buildah", "umount", container])
            _run(
                [
                    "buildah",
                    "config",
                    "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env",
                    "LANG=C.UTF-8",
                    "--cmd",
                    "python3",
                    "--label",
                    f"{BASE_LABEL}={key}",
                    container,
                ]
            )
            _run(["buildah", "commit", "--quiet", container, BASE_TAG])
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True)
    _drop_if_untagged(old)
    info = inspect(BASE_TAG)
    assert info is not None
    return Result("base", BASE_TAG, False, time.monotonic() - t0, size_bytes(info), key)


def _drop_if_untagged(old_id: str | None) -> None:
    """Remove the image a rebuild took the tag from, so rebuilds do not pile up; an
    image that still has a name (or a container) is left alone."""
    if old_id is None:
        return
    done = subprocess.run(["buildah", "images", "--json"], text=True, capture_output=True)
    for image in json.loads(done.stdout or "[]"):
        if old_id.startswith(image["id"]) and not image.get("names"):
            subprocess.run(["buildah", "rmi", old_id], capture_output=True)


# -- the wheelhouse ------------------------------------------------------------------------


def requirements(root: Path) -> list[str]:
    """Everything `pip wheel .` needs: the build backend and the package's dependencies."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return [*data["build-system"]["requires"], *data["project"]["dependencies"]]


def wheels_dir(root: Path) -> Path:
    spec = json.dumps([base_key(), requirements(root)])
    return cache_root() / "wheels" / hashlib.sha256(spec.encode()).hexdigest()[:16]


def _host_ca_bundle() -> Path | None:
    """The CA bundle host pip uses (it may hold a TLS proxy's CA the base lacks)."""
    candidates = [os.environ.get("PIP_CERT")]
    conf = configparser.ConfigParser()
    conf.read("/etc/pip.conf")
    candidates.append(conf.get("global", "cert", fallback=None))
    candidates.append("/etc/ssl/certs/ca-certificates.crt")
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def ensure_wheelhouse(root: Path, echo: Echo, *, rebuild: bool = False) -> tuple[Path, bool, float]:
    """The dependency wheels for this pyproject and base: (dir, cached, seconds)."""
    t0 = time.monotonic()
    out = wheels_dir(root)
    if (out / ".complete").exists() and not rebuild:
        return out, True, time.monotonic() - t0
    reqs = requirements(root)
    echo(f">> wheelhouse {out}: pip wheel of {len(reqs)} requirements inside {BASE_TAG}")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    args = ["-v", f"{partial}:/wheelhouse"]
    ca = _host_ca_bundle()
    if ca is not None:
        args += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
    if Path("/etc/pip.conf").is_file():
        args += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    # The host pip.conf's cert path is the host's; inside, the bundle sits at the default.
    env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    for k, v in env.items():
        args += ["--env", f"{k}={v}"]
    container = _run(["buildah", "from", "--quiet", BASE_TAG]).stdout.strip()
    try:
        _run(
            [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                *args,
                container,
                "--",
                "python3",
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--wheel-dir",
                "/wheelhouse",
                *reqs,
            ]
        )
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    (partial / ".complete").touch()
    # An incomplete (or --rebuild) wheelhouse of the same key is replaced whole.
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    # Older dependency sets are of no further use.
    for other in out.parent.iterdir():
        if other != out:
            shutil.rmtree(other, ignore_errors=True)
    return out, False, time.monotonic() - t0


def pip_conf(wheels: Path) -> Path:
    """The pip settings every build step sees: offline, from the wheelhouse."""
    path = cache_root() / "images" / "pip.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by kubeml_local.images for buildah builds: no index, wheels from\n"
        f"# {wheels} (mounted at /wheelhouse).\n"
        "[global]\nno-index = true\nfind-links = /wheelhouse\n"
    )
    return path


# -- the images ----------------------------------------------------------------------------


def context_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for rel in CONTEXT_PATHS:
        path = root / rel
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for p in candidates:
            parts = p.relative_to(root).parts
            if not p.is_file() or any(part in IGNORED_PARTS for part in parts):
                continue
            if any(part.endswith(IGNORED_SUFFIXES) for part in parts):
                continue
            files.append(p)
    return files


def content_hash(root: Path, name: str, base_id: str) -> str:
    h = hashlib.sha256()
    dockerfile = root / "images" / name / "Dockerfile"
    for p in [dockerfile, *context_files(root)]:
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    h.update(base_id.encode())
    return h.hexdigest()[:32]


def build_image(
    root: Path, name: str, base_id: str, wheels: Path, echo: Echo, *, rebuild: bool = False
) -> Result:
    t0 = time.monotonic()
    ref = tag(name, root)
    digest = content_hash(root, name, base_id)
    info = inspect(ref)
    if info is not None and labels(info).get(CONTENT_LABEL) == digest and not rebuild:
        return Result(name, ref, True, time.monotonic() - t0, size_bytes(info), digest)
    echo(f">> {ref}: buildah bud images/{name}/Dockerfile")
    old = image_id(info) if info else None
    _run(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--build-arg",
            f"BASE_IMAGE={BASE_TAG}",
            "--label",
            f"{CONTENT_LABEL}={digest}",
            "-v",
            f"{wheels}:/wheelhouse:ro",
            "-v",
            f"{pip_conf(wheels)}:/etc/pip.conf:ro",
            "-f",
            str(root / "images" / name / "Dockerfile"),
            "-t",
            ref,
            str(root),
        ]
    )
    _drop_if_untagged(old)
    info = inspect(ref)
    assert info is not None
    return Result(name, ref, False, time.monotonic() - t0, size_bytes(info), digest)


def build_all(echo: Echo, *, rebuild: bool = False) -> list[Result]:
    """The base and both images, each built only when its inputs changed."""
    check_tools()
    root = repo_root()
    with _lock():
        base = ensure_base(echo, rebuild=rebuild)
        base_info = inspect(BASE_TAG)
        assert base_info is not None
        wheels, wheels_cached, wheels_s = ensure_wheelhouse(root, echo, rebuild=rebuild)
        if not wheels_cached:
            echo(f">> wheelhouse filled in {wheels_s:.1f} s")
        results = [base]
        for name in NAMES:
            results.append(
                build_image(root, name, image_id(base_info), wheels, echo, rebuild=rebuild)
            )
    return results

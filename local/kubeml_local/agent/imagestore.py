"""The node's images: buildah's local storage (``kubeml local images`` builds into it).

Nothing is ever pulled: the local cluster has no registry access, so an image that is not
in the store is an ``ErrImagePull`` naming it, as on a kubelet whose pull failed. Each
container run gets a buildah working container of its own (a fresh writable layer, as a
runtime gives each new container), mounted where the launcher can chroot into it, and
removed when the run ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeml_local.agent.imageplan import ImageConfig

log = logging.getLogger(__name__)

BUILDAH = "buildah"


class ImageError(Exception):
    """buildah failed for a reason other than a missing image."""


@dataclass(frozen=True)
class Rootfs:
    name: str  # the working container
    path: str  # its mounted root filesystem
    passwd: str
    group: str


async def _buildah(*args: str, timeout: float = 120.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        BUILDAH,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ImageError(f"buildah {args[0]} timed out after {timeout:.0f}s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class ImageStore:
    """buildah's storage on this host, seen by one agent (``prefix`` names its containers)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @staticmethod
    def available() -> str | None:
        """None when buildah is usable, else why not (one line)."""
        if shutil.which(BUILDAH) is None:
            return "buildah is not installed (apt-get install buildah)"
        return None

    async def config(self, image: str) -> ImageConfig | None:
        """The image's config, or None when the store has no such image."""
        if not image:
            return None
        code, out, err = await _buildah("inspect", "--type", "image", image)
        if code != 0:
            if "not known" in err or "no such" in err.lower():
                return None
            raise ImageError(f"buildah inspect {image}: {err.strip()}")
        return ImageConfig.from_oci(json.loads(out).get("OCIv1") or {})

    def container_name(self, pod_uid: str, container: str) -> str:
        return f"{self.prefix}-{pod_uid}-{container}"

    async def create(self, name: str, image: str) -> Rootfs:
        await self.remove(name)  # a restart gets a fresh layer, as with a runtime
        code, _, err = await _buildah("from", "--pull=never", "--quiet", "--name", name, image)
        if code != 0:
            raise ImageError(f"buildah from {image}: {err.strip()}")
        code, out, err = await _buildah("mount", name)
        if code != 0:
            await self.remove(name)
            raise ImageError(f"buildah mount {name}: {err.strip()}")
        path = out.strip().splitlines()[-1]
        root = Path(path)
        return Rootfs(name, path, _read(root / "etc/passwd"), _read(root / "etc/group"))

    async def remove(self, name: str) -> None:
        code, _, err = await _buildah("rm", name)
        if code != 0 and "not known" not in err and "no container" not in err.lower():
            log.debug("buildah rm %s: %s", name, err.strip())

    async def remove_leftovers(self) -> int:
        """Working containers of an earlier run of this agent (it died without cleaning)."""
        code, out, _ = await _buildah("containers", "--format", "{{.ContainerName}}")
        if code != 0:
            return 0
        names = [n for n in out.split() if n.startswith(self.prefix + "-")]
        for name in names:
            await self.remove(name)
        if names:
            log.info("removed %d leftover image containers", len(names))
        return len(names)

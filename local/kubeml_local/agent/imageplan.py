"""Pure translation of a container into a process inside its image (``up --images``).

Where :func:`kubeml_local.agent.podspec.plan_process` runs a container's command with the
host's files (paths rewritten into the agent's directories), this plan runs it the way a
container runtime does: in the image's root filesystem, with the image's ENTRYPOINT/CMD,
ENV, USER and WORKDIR as Kubernetes combines them with the pod spec, and with each volume
bind-mounted at its ``mountPath`` (so nothing is rewritten). The launcher
(:mod:`kubeml_local.agent.enter`) carries out the :class:`Sandbox`.

Kubernetes' rules, as implemented here:
- ``command`` replaces ENTRYPOINT and drops CMD; ``args`` alone replaces CMD.
- The image's ENV is the base; the agent's variables (Service and pod variables) come over
  it and the container's ``env``/``envFrom`` over both.
- ``runAsUser``/``runAsGroup`` win over the image's USER; a USER given by name is looked up
  in the image's /etc/passwd (and /etc/group); ``runAsNonRoot`` refuses a resolved uid 0.
- ``workingDir`` wins over WORKDIR; the default is ``/``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeml_local.agent.expansion import expand, mapping_for
from kubeml_local.agent.podspec import (
    ConfigError,
    Identity,
    Lookups,
    PathRewriter,
    PodRuntime,
    ProcessPlan,
    container_env,
    container_mounts,
    memory_limit,
    security_value,
    spec,
    static_env,
)

# Host files a container sees as its own (a runtime writes its own copies; ours are the
# host's, read-only, so loopback names resolve as they do for the agent).
HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")
# The agent's variables that name host paths: they mean nothing inside an image.
HOST_ONLY_ENV = ("PATH", "HOME", "KUBECONFIG", "KUBEML_SERVICEACCOUNT_DIR", "KUBEML_POD_ROOT")


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that decide how a container starts."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""

    @classmethod
    def from_oci(cls, document: Mapping[str, Any]) -> ImageConfig:
        """From ``buildah inspect --type image``'s ``OCIv1`` object (its ``config``)."""
        config = document.get("config") or {}
        return cls(
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            env=tuple(config.get("Env") or ()),
            user=str(config.get("User") or ""),
            working_dir=str(config.get("WorkingDir") or ""),
        )

    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            if name:
                out[name] = value
        return out


@dataclass(frozen=True)
class Mount:
    target: str  # path inside the container
    source: str  # host path
    read_only: bool = False


@dataclass(frozen=True)
class Sandbox:
    """What the launcher sets up before it execs: root, mounts, identity, working dir."""

    image: str
    root: str
    mounts: tuple[Mount, ...] = ()
    read_only_root: bool = False
    host_files: tuple[str, ...] = HOST_FILES

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "root": self.root,
            "mounts": [[m.target, m.source, m.read_only] for m in self.mounts],
            "readOnlyRoot": self.read_only_root,
            "hostFiles": list(self.host_files),
        }


def argv_for(container: Mapping[str, Any], image: ImageConfig) -> list[str]:
    command = [str(a) for a in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if command:
        return command + args
    return list(image.entrypoint) + (args if args else list(image.cmd))


def _passwd_entry(passwd: str, key: str, by_uid: bool) -> tuple[int, int] | None:
    """(uid, gid) of the /etc/passwd line whose name (or uid) is ``key``."""
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or not (parts[2].isdigit() and parts[3].isdigit()):
            continue
        if parts[2 if by_uid else 0] == key:
            return int(parts[2]), int(parts[3])
    return None


def _group_id(group: str, name: str) -> int | None:
    for line in group.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] == name and parts[2].isdigit():
            return int(parts[2])
    return None


def image_user(user: str, passwd: str, group: str) -> tuple[int, int]:
    """uid and gid of an image's USER (``uid``, ``name``, ``uid:gid``, ``name:group``): a
    user without a group gets its passwd entry's group, else its own number."""
    if not user:
        return 0, 0
    name, _, grp = user.partition(":")
    entry = _passwd_entry(passwd, name, by_uid=name.isdigit())
    if entry is None and not name.isdigit():
        raise ConfigError(
            f"unable to find user {name}: no matching entries in passwd file",
            "CreateContainerError",
        )
    uid = entry[0] if entry else int(name)
    gid = entry[1] if entry else uid
    if not grp:
        return uid, gid
    if grp.isdigit():
        return uid, int(grp)
    found = _group_id(group, grp)
    if found is None:
        raise ConfigError(
            f"unable to find group {grp}: no matching entries in group file",
            "CreateContainerError",
        )
    return uid, found


def identity_in_image(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    image: ImageConfig,
    passwd: str,
    group: str,
) -> Identity:
    psc = spec(pod).get("securityContext") or {}

    def pick(key: str) -> Any:
        return security_value(pod, container, key)

    uid, gid = pick("runAsUser"), pick("runAsGroup")
    if uid is None:
        img_uid, img_gid = image_user(image.user, passwd, group)
        uid, gid = img_uid, img_gid if gid is None else gid
    if gid is None:
        # runAsUser without runAsGroup: the image's entry for that uid, else the uid itself.
        entry = _passwd_entry(passwd, str(uid), by_uid=True)
        gid = entry[1] if entry else uid
    if pick("runAsNonRoot") and int(uid) == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root (pod: non-root)")
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    return Identity(int(uid), int(gid), tuple(dict.fromkeys(groups)))


def _mounts(
    container: Mapping[str, Any], volume_dirs: Mapping[str, str], static_env: Mapping[str, str]
) -> tuple[Mount, ...]:
    resolved = container_mounts(container, volume_dirs, static_env)
    flags = [bool(vm.get("readOnly")) for vm in container.get("volumeMounts") or []]
    out: dict[str, Mount] = {}
    for (target, source), ro in zip(resolved, flags, strict=True):
        norm = posixpath.normpath(target)
        if not norm.startswith("/") or norm == "/":
            raise ConfigError(f"mountPath {target!r} must be an absolute path other than /")
        out[norm] = Mount(norm, source, ro)
    # Parents before children: a mount at /a/b must land on top of the one at /a.
    return tuple(sorted(out.values(), key=lambda m: m.target.count("/")))


def plan_in_image(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    image_ref: str,
    image: ImageConfig,
    root: str,
    passwd: str,
    group: str,
    rt: PodRuntime,
    lookups: Lookups,
    base_env: Mapping[str, str],
    volume_dirs: Mapping[str, str],
) -> ProcessPlan:
    who = identity_in_image(pod, container, image, passwd, group)
    mounts = _mounts(container, volume_dirs, static_env(pod, container, rt))
    agent_env = {k: v for k, v in base_env.items() if k not in HOST_ONLY_ENV}
    layered = {**image.env_map(), **agent_env}
    layered.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    layered.setdefault("HOME", "/")
    same = PathRewriter.build(())
    own = container_env(pod, container, rt, lookups, layered, same)
    env = {**layered, **own}
    lookup = mapping_for(own, layered)
    argv = tuple(expand(a, lookup) for a in argv_for(container, image))
    if not argv:
        raise ConfigError(
            f"no command specified: image {image_ref} has no ENTRYPOINT or CMD "
            "and the container no command",
            "CreateContainerError",
        )
    working_dir = container.get("workingDir") or image.working_dir or "/"
    if not working_dir.startswith("/"):
        raise ConfigError(f"workingDir {working_dir!r} must be absolute", "CreateContainerError")
    read_only = bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))
    sandbox = Sandbox(image=image_ref, root=root, mounts=mounts, read_only_root=read_only)
    return ProcessPlan(
        argv=argv,
        env=env,
        cwd=posixpath.normpath(working_dir),
        identity=who,
        memory_limit=memory_limit(container),
        rewriter=same,
        sandbox=sandbox,
    )

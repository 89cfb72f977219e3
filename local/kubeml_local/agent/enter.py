"""Enter a container's image, then exec its process: ``python -I -m kubeml_local.agent.enter
SANDBOX_JSON UID GID GROUPS CWD -- ARGV...`` (started by the agent, as root).

In a mount namespace of its own (so nothing leaks to the host or other pods) it binds the
image's root filesystem onto itself, mounts /proc, /dev and /sys, binds the host's
/etc/hosts and /etc/resolv.conf read-only and each volume at its mount path, makes the root
read-only when the container asks for ``readOnlyRootFilesystem``, chroots, drops to the
pod's user and execs. The exec keeps the pid, so the agent's process *is* the container's:
signals, exit codes, memory accounting and ``/proc/<pid>/root`` all refer to it.

Mount points are resolved inside the image the way a runtime does, following the image's
symlinks within its root (Debian's ``/var/run -> /run`` must land in the image's /run,
never the host's). Failures print one line to the container log and exit 128, like a
runtime's StartError.
"""

from __future__ import annotations

import ctypes
import json
import os
import posixpath
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
START_ERROR = 128
NOT_FOUND = 127

_libc = ctypes.CDLL(None, use_errno=True)


class EnterError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise EnterError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {source or fstype} on {target}",
    )


def resolve_in_root(root: str, path: str, max_links: int = 40) -> str:
    """The host path of ``path`` inside ``root``, following symlinks as if ``root`` were /.

    Missing components are left as they are (the caller creates them); ``..`` never climbs
    above ``root``."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = posixpath.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                raise EnterError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return posixpath.join(root, *resolved)


def _make_point(root: str, target: str, source_is_dir: bool) -> str:
    """The resolved mount point for ``target``, created (directory or empty file) if missing."""
    point = resolve_in_root(root, target)
    if source_is_dir:
        os.makedirs(point, exist_ok=True)
    elif not os.path.exists(point):
        parent = resolve_in_root(root, posixpath.dirname(target))
        os.makedirs(parent, exist_ok=True)
        point = posixpath.join(parent, posixpath.basename(target))
        with open(point, "a"):
            pass
    return point


def enter(sandbox: dict[str, Any], cwd: str) -> None:
    root = os.path.realpath(sandbox["root"])
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    # Nothing we mount may propagate back to the host's namespace.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(root, root, None, MS_BIND | MS_REC)
    binds: list[tuple[str, str, bool]] = []
    for host_file in sandbox.get("hostFiles") or []:
        if os.path.exists(host_file):
            binds.append((_make_point(root, host_file, False), host_file, True))
    for target, source, read_only in sandbox.get("mounts") or []:
        if not os.path.exists(source):
            raise EnterError(f"volume source {source} for {target} does not exist")
        binds.append((_make_point(root, target, os.path.isdir(source)), source, bool(read_only)))
    proc_point = _make_point(root, "/proc", True)
    dev_point = _make_point(root, "/dev", True)
    sys_point = _make_point(root, "/sys", True)
    work = _make_point(root, cwd, True)  # like a runtime, create a missing workingDir
    if sandbox.get("readOnlyRoot"):
        _mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _mount("proc", proc_point, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("/dev", dev_point, None, MS_BIND | MS_REC)
    _mount("/sys", sys_point, None, MS_BIND | MS_REC)
    for point, source, read_only in binds:
        _mount(source, point, None, MS_BIND | MS_REC)
        if read_only:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chroot(root)
    os.chdir(posixpath.join("/", posixpath.relpath(work, root)))


def drop(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def main(argv: list[str]) -> int:
    try:
        sep = argv.index("--")
        spec, uid, gid, groups, cwd = argv[:sep]
        command = argv[sep + 1 :]
        sandbox = json.loads(spec)
    except (ValueError, IndexError) as err:
        print(f"kubeml-local enter: bad arguments: {err}", file=sys.stderr)
        return 2
    try:
        enter(sandbox, cwd)
        drop(int(uid), int(gid), [int(g) for g in groups.split(",") if g])
    except (EnterError, OSError) as err:
        print(
            f"kubeml-local: cannot start the container in image {sandbox.get('image')}: {err}",
            file=sys.stderr,
        )
        return START_ERROR
    try:
        os.execvpe(command[0], command, dict(os.environ))
    except OSError as err:
        where = os.environ.get("PATH", "")
        print(f'exec: "{command[0]}": {err.strerror} (PATH={where})', file=sys.stderr)
        return NOT_FOUND
    return START_ERROR  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

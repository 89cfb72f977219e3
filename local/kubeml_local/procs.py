"""Starting, finding and stopping our processes (Linux: reads /proc).

Each component runs in its own process group, so a signal reaches the helpers it forks.
Each carries ``KUBEML_LOCAL_STATE=<state dir>`` in its environment: a pid from a status file
is only signalled if it still carries that marker (pids get reused), and after a crash any
stray process of one cluster is found by scanning /proc for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from kubeml_local.layout import MARKER_ENV

POLL_S = 0.1
PR_SET_CHILD_SUBREAPER = 36


def component_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[MARKER_ENV] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(
    argv: Sequence[str], *, log: Path, root: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=component_env(root, extra_env),
            cwd=root,
            process_group=0,
        )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces or parentheses; everything after the last ')' is safe.
    return raw[raw.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """True for a running process; zombies count as dead."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def has_marker(pid: int, root: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_ENV}={root}".encode() in environ.split(b"\0")


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def marked_pids(root: Path) -> list[int]:
    """Live processes of the cluster in ``root`` (except the caller)."""
    me = os.getpid()
    return [p for p in _all_pids() if p != me and alive(p) and has_marker(p, root)]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        parent = parent_of(p)
        if parent is not None:
            children.setdefault(parent, []).append(p)
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _signal(pid: int, sig: signal.Signals, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Poll until every pid is dead or the deadline passes; return the survivors."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left:
        reap_zombies()
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return left


def stop_pids(pids: Iterable[int], grace: float, *, groups: bool = False) -> list[int]:
    """SIGTERM, wait up to ``grace``, then SIGKILL; return what survived even that."""
    targets = [p for p in pids if alive(p)]
    for p in targets:
        _signal(p, signal.SIGTERM, group=groups)
    left = wait_gone(targets, grace)
    for p in left:
        _signal(p, signal.SIGKILL, group=groups)
    return wait_gone(left, 5.0)


def stop_popen(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop one component and its whole process group."""
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM, group=True)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL, group=True)
            proc.wait(5.0)
    # Helpers left in the group after its leader exited get the same treatment.
    _signal(proc.pid, signal.SIGKILL, group=True)


def become_subreaper() -> bool:
    """Make orphans of our descendants re-parent to us (not to init), so that processes a
    component double-forks (pods of the node agent) can still be found and stopped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap_zombies(keep: Iterable[int] = ()) -> None:
    """Collect exit statuses of adopted orphans; ``keep`` are children a Popen still owns."""
    owned = set(keep)
    for child in _children_of(os.getpid()):
        if child in owned:
            continue
        fields = _stat_fields(child)
        if fields and fields[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, os.WNOHANG)


def _children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return [p for p in _all_pids() if parent_of(p) == pid]
    return [int(p) for p in text.split()]

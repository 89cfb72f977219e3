"""Local processes for containers: start, stop, and find strays of an earlier agent.

Every container process starts in a new session (so its whole tree can be signalled and
its memory summed), with its stdout and stderr appended to one log file, a minimal
environment built by the agent (never the agent's own: that would leak the admin
kubeconfig), and, when the agent is root, the pod's uid/gid with supplementary groups set
explicitly (otherwise the child would keep root's groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeml_local.agent.memory import kill_group, kill_session, scan, session_members
from kubeml_local.agent.podspec import Identity, ProcessPlan

log = logging.getLogger(__name__)

# Set in every pod process so a restarted agent can find and kill the strays of a previous
# run that died without cleaning up. Value: "<instance key>:<agent pid>", the key being
# derived from state dir and node name.
AGENT_MARKER_ENV = "KUBEML_AGENT_INSTANCE"


class StartError(Exception):
    """The process could not be started (containerd: StartError, exit code 128)."""


@dataclass(frozen=True)
class Launch:
    """How to start a plan's argv: directly as the pod's user, or (inside an image) through
    the launcher, which runs as root until it has entered the image and then drops."""

    argv: tuple[str, ...]
    cwd: str
    identity: Identity


def launch(plan: ProcessPlan, argv: tuple[str, ...]) -> Launch:
    box = plan.sandbox
    if box is None:
        return Launch(argv, plan.cwd, plan.identity)
    who = plan.identity
    groups = ",".join(str(g) for g in who.groups)
    wrapped = (
        sys.executable,
        "-I",  # the container's PYTHON* variables are for the container, not the launcher
        "-m",
        "kubeml_local.agent.enter",
        json.dumps(box.to_json(), separators=(",", ":")),
        str(who.uid if who.uid is not None else 0),
        str(who.gid if who.gid is not None else 0),
        groups,
        plan.cwd,
        "--",
        *argv,
    )
    return Launch(wrapped, "/", Identity(None, None, ()))


async def spawn(
    plan: ProcessPlan, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**plan.env, **(extra_env or {})}
    how = launch(plan, plan.argv)
    who = how.identity
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *how.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fd,
            stderr=asyncio.subprocess.STDOUT,
            cwd=how.cwd,
            env=env,
            start_new_session=True,
            user=who.uid,
            group=who.gid,
            extra_groups=list(who.groups) if who.uid is not None else None,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        raise StartError(f"failed to start {plan.argv[0]!r}: {exc}") from exc
    finally:
        os.close(fd)


async def run_exec(plan: ProcessPlan, argv: tuple[str, ...], timeout: float) -> bool:
    """An exec probe: the command in the container's context; success is exit code 0."""
    how = launch(plan, argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *how.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=how.cwd,
            env=dict(plan.env),
            start_new_session=True,
            user=how.identity.uid,
            group=how.identity.gid,
            extra_groups=list(how.identity.groups) if how.identity.uid is not None else None,
        )
    except (OSError, ValueError):
        return False
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        return False
    finally:
        # Also on timeout or cancellation: a probe must not leave processes behind.
        kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5)


def reap_session(session: int) -> None:
    """After the main process exited, kill what it left behind (a container's processes
    all die with it, because the runtime tears down its PID namespace)."""
    if session_members(session):
        kill_session(session, signal.SIGKILL)


def _agent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_strays(key: str, *, mine: bool) -> int:
    """SIGKILL pod processes of this instance key: with ``mine`` those this agent started
    (on exit); otherwise those of earlier agents that are gone (on start). Processes of a
    live agent of the same key are left alone."""
    prefix = f"{AGENT_MARKER_ENV}={key}:".encode()
    killed = 0
    me = os.getpid()
    for stat in scan():
        if stat.pid == me:
            continue
        try:
            environ = Path(f"/proc/{stat.pid}/environ").read_bytes()
        except OSError:
            continue
        owners = [v[len(prefix) :] for v in environ.split(b"\0") if v.startswith(prefix)]
        if not owners or not owners[0].isdigit():
            continue
        owner = int(owners[0])
        if (owner == me) if mine else (owner != me and not _agent_alive(owner)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(stat.pid, signal.SIGKILL)
                killed += 1
    if killed:
        whose = "this agent's" if mine else "an earlier agent's"
        log.warning("killed %d leftover pod processes of %s", killed, whose)
    return killed

"""Memory limits by sampling: the RSS of every process in a container's session.

Each container runs in its own session (its main process is the session leader), so the
session id names the whole process tree, daemonised children included. The monitor reads
/proc a few times a second and SIGKILLs a session whose RSS sum exceeds its limit; the
runner then reports ``OOMKilled`` with exit code 137 as the kubelet would. Sampling was
chosen over cgroups because it works unchanged on cgroup v1, v2 and without root; the
price is that a process allocating faster than the sampling interval can overshoot the
limit briefly (by what it allocates in one interval) before it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    session: int
    rss_bytes: int


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat; the command name may contain spaces and parentheses."""
    pid_part, _, rest = text.partition(" (")
    fields = rest.rpartition(") ")[2].split()
    # fields[0] is field 3 (state) of proc(5); rss is field 24.
    return ProcStat(
        pid=int(pid_part),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


def scan(proc: Path = Path("/proc")) -> list[ProcStat]:
    out = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return out


def session_members(session: int, stats: list[ProcStat] | None = None) -> list[int]:
    return [s.pid for s in (stats if stats is not None else scan()) if s.session == session]


def session_rss(stats: list[ProcStat]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for s in stats:
        totals[s.session] = totals.get(s.session, 0) + s.rss_bytes
    return totals


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group: cheap (no /proc scan), so fine on the event loop."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_session(
    session: int, sig: int = signal.SIGKILL, stats: list[ProcStat] | None = None
) -> None:
    """Signal the process group and every straggler that stayed in the session (without
    ``stats`` this scans /proc: run it in a thread from async code)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, sig)
    for pid in session_members(session, stats):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class _Watch:
    limit: int
    on_exceeded: Callable[[int], None]
    fired: bool = False


class MemoryMonitor:
    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._watches: dict[int, _Watch] = {}

    def watch(self, session: int, limit: int, on_exceeded: Callable[[int], None]) -> None:
        self._watches[session] = _Watch(limit, on_exceeded)

    def unwatch(self, session: int) -> None:
        self._watches.pop(session, None)

    def check(self, stats: list[ProcStat]) -> None:
        totals = session_rss(stats)
        for session, w in list(self._watches.items()):
            used = totals.get(session, 0)
            if used > w.limit and not w.fired:
                w.fired = True
                log.info("session %d uses %d bytes > limit %d: OOM kill", session, used, w.limit)
                # Kill first, then tell the runner: the report must follow the kill.
                kill_session(session, stats=stats)
                w.on_exceeded(used)

    async def run(self) -> None:
        while True:
            if self._watches:
                try:
                    stats = await asyncio.to_thread(scan)
                    self.check(stats)
                except Exception:
                    log.exception("memory sampling failed")
            await asyncio.sleep(self.interval)

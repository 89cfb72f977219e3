"""Readiness, liveness and startup probes: result tracking (pure) and the three probe kinds.

Probes only ever dial loopback: a probe whose ``host`` is not a loopback address fails
without sending anything, since pod IPs here are loopback addresses anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeTiming:
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


class ProbeTracker:
    """Consecutive-result counting of one probe, as the kubelet's prober worker does.

    Readiness starts failed and startup starts unknown (both need successes); liveness
    starts successful (it needs failures to act)."""

    def __init__(self, kind: str, timing: ProbeTiming) -> None:
        self.kind = kind
        self.timing = timing
        self.result: bool | None = (
            True if kind == "liveness" else (False if kind == "readiness" else None)
        )
        self._run = 0
        self._last: bool | None = None

    def record(self, ok: bool) -> bool:
        """Feed one probe result; return True when the overall result changed."""
        self._run = self._run + 1 if self._last == ok else 1
        self._last = ok
        threshold = self.timing.success_threshold if ok else self.timing.failure_threshold
        if self._run >= threshold and self.result != ok:
            self.result = ok
            return True
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def http_get(host: str, port: int, probe: Mapping[str, Any], timeout: float) -> bool:
    action = probe["httpGet"]
    host = action.get("host") or host
    if not is_loopback(host):
        log.warning("httpGet probe to non-loopback host %s refused", host)
        return False
    scheme = str(action.get("scheme") or "HTTP").lower()
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.36"}
    headers.update({h["name"]: h["value"] for h in action.get("httpHeaders") or []})
    netloc = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{netloc}:{port}{path}"
    # The kubelet does not verify probe certificates either.
    ctx: ssl.SSLContext | bool = scheme != "https"
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
            ) as session,
            session.get(url, headers=headers, allow_redirects=False, ssl=ctx) as resp,
        ):
            # Like the kubelet: 2xx and 3xx succeed (redirects are not followed off-host).
            return 200 <= resp.status < 400
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def tcp_socket(host: str, port: int, probe: Mapping[str, Any], timeout: float) -> bool:
    host = probe["tcpSocket"].get("host") or host
    if not is_loopback(host):
        log.warning("tcpSocket probe to non-loopback host %s refused", host)
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def run_probe_loop(
    tracker: ProbeTracker,
    attempt: Callable[[], Awaitable[bool]],
    on_change: Callable[[ProbeTracker], None],
    *,
    stop_on_success: bool = False,
) -> None:
    """Probe every period after the initial delay until cancelled (startup: until success)."""
    timing = tracker.timing
    await asyncio.sleep(timing.initial_delay)
    loop = asyncio.get_running_loop()
    while True:
        begin = loop.time()
        try:
            ok = await asyncio.wait_for(attempt(), timing.timeout + 1.0)
        except TimeoutError:
            ok = False
        except Exception:  # a broken probe is a failed probe, never a dead runner
            log.exception("%s probe raised", tracker.kind)
            ok = False
        if tracker.record(ok):
            on_change(tracker)
        if stop_on_success and tracker.result:
            return
        await asyncio.sleep(max(0.0, timing.period - (loop.time() - begin)))

"""Polling with deadlines (never fixed sleeps) and the health probes of each component."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from kubeml_local.pki import Pki

T = TypeVar("T")
POLL_S = 0.2


class NotReady(TimeoutError):
    pass


def poll(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    guard: Callable[[], None] = lambda: None,
    interval: float = POLL_S,
) -> T:
    """Call ``probe`` until it returns something other than None/False.

    ``guard`` runs before each attempt and raises to abort early (a component died, a stop
    was requested) instead of waiting out the deadline. Probe exceptions mean "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        guard()
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as err:  # any failure of a probe only means: not ready yet
            last = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise NotReady(f"{what} not ready after {timeout:.0f}s{detail}")
        time.sleep(interval)


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def etcd_healthy(url: str) -> bool:
    status, body = _get(f"{url}/health")
    return status == 200 and json.loads(body).get("health") == "true"


def client_context(pki: Pki, cert_name: str = "admin") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    crt, key = pki.client(cert_name)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def apiserver_ready(url: str, context: ssl.SSLContext) -> bool:
    status, _ = _get(f"{url}/readyz", context)
    return status == 200


def apiserver_readyz_detail(url: str, context: ssl.SSLContext) -> str:
    """The verbose /readyz report: names the check that holds readiness back."""
    try:
        status, body = _get(f"{url}/readyz?verbose", context)
    except OSError as err:
        return f"unreachable: {err}"
    failed = [line for line in body.splitlines() if "failed" in line]
    return f"HTTP {status}: " + ("; ".join(failed) if failed else "ok")

"""Loopback pod IPs: each pod gets its own 127.x.y.z so servers of different pods can use
the same port. Linux routes all of 127.0.0.0/8 to ``lo``, so any of them can be bound
without configuring anything. Addresses are handed out round-robin (like host-local IPAM),
so a freed address is not reused at once by the next pod.

Several local clusters may run on one host (a test session next to a dev cluster), each
with its agent and the same default range. With a ``claims_dir`` every address is also
claimed host-wide by creating ``<claims_dir>/<ip>`` exclusively (content: the agent's pid);
claims of agents that are no longer alive are taken over.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LoopbackIPAM:
    def __init__(self, cidr: str = "127.1.0.0/16", claims_dir: Path | None = None) -> None:
        net = ipaddress.ip_network(cidr)
        if not (
            isinstance(net, ipaddress.IPv4Network)
            and net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))
        ):
            raise ValueError(f"pod IP range {cidr} must lie inside 127.0.0.0/8")
        self._net = net
        self._cursor = 0
        self._by_key: dict[str, str] = {}
        self._used: set[str] = set()
        self._claims = claims_dir
        if claims_dir is not None:
            try:
                claims_dir.mkdir(parents=True, exist_ok=True)
                if claims_dir.stat().st_uid == os.geteuid():
                    claims_dir.chmod(0o1777)  # shared by agents of any user, like /tmp
            except OSError as exc:
                self._disable_claims(exc)

    def _disable_claims(self, exc: OSError) -> None:
        log.warning(
            "pod IP claims in %s unusable (%s): not coordinating with other agents",
            self._claims,
            exc,
        )
        self._claims = None

    def _usable(self, ip: ipaddress.IPv4Address) -> bool:
        # Skip .0/.1 and .255 of each /24: they look like network/gateway/broadcast
        # addresses to humans and tools, though loopback does not care.
        return ip in self._net and ip.packed[3] not in (0, 1, 255)

    def _in_pool(self, ip: str) -> bool:
        try:
            return self._usable(ipaddress.IPv4Address(ip))
        except ValueError:
            return False

    def allocate(self, key: str, preferred: str | None = None) -> str:
        if key in self._by_key:
            return self._by_key[key]
        ip = None
        if preferred and self._in_pool(preferred) and preferred not in self._used:
            ip = preferred if self._claim(preferred) else None
        if ip is None:
            ip = self._next_free()
        self._by_key[key] = ip
        self._used.add(ip)
        return ip

    def _next_free(self) -> str:
        size = self._net.num_addresses
        for _ in range(size):
            candidate = self._net.network_address + self._cursor
            self._cursor = (self._cursor + 1) % size
            ip = str(candidate)
            if self._usable(candidate) and ip not in self._used and self._claim(ip):
                return ip
        raise RuntimeError("pod IP range exhausted")

    def _claim(self, ip: str) -> bool:
        if self._claims is None:
            return True
        path = self._claims / ip
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except PermissionError as exc:
                self._disable_claims(exc)
                return True
            except FileExistsError:
                try:
                    owner = int(path.read_text().strip() or "0")
                except (OSError, ValueError):
                    owner = 0
                if owner == os.getpid() or (owner and _alive(owner)):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a dead agent's claim
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def release(self, key: str) -> None:
        ip = self._by_key.pop(key, None)
        if ip is None:
            return
        self._used.discard(ip)
        if self._claims is not None:
            with contextlib.suppress(OSError):
                path = self._claims / ip
                if path.read_text().strip() == str(os.getpid()):
                    path.unlink()

    def release_all(self) -> None:
        for key in list(self._by_key):
            self.release(key)

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

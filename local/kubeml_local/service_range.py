"""Each local cluster's own range of ClusterIPs, so clusters on one machine never collide.

ClusterIPs are loopback addresses the node agent's service proxy listens on; two clusters
with the same range would fight over the same ``clusterIP:port``. Each cluster therefore
takes a free /20 of ``127.96.0.0/12`` (240 of them: none inside ``127.96.0.0/16``, see
LEGACY), recorded in its ``cluster.json`` and kept across restarts. A range is claimed
host-wide by creating ``/tmp/kubeml-service-ranges/<range>`` exclusively, holding the
state dir that owns it; a claim whose state dir no longer records that range (deleted,
or moved on) is taken over.

Pod IPs come from ``127.1.0.0/16`` (see agent/ipam.py), outside ``127.96.0.0/12``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import time
from pathlib import Path

SUPERNET = ipaddress.IPv4Network("127.96.0.0/12")
PREFIX = 20
CLAIMS_DIR = Path("/tmp/kubeml-service-ranges")
CLUSTER_JSON = "cluster.json"
# Between claiming a range and writing cluster.json, `up` takes well under this.
FRESH_CLAIM_S = 60.0


# What every cluster used before ranges were chosen. The apiserver cannot move a cluster's
# range once etcd holds Services from it, so such a cluster keeps it (and may collide).
LEGACY = "127.96.0.0/16"


class NoFreeRange(RuntimeError):
    pass


def candidates(state_dir: Path) -> list[ipaddress.IPv4Network]:
    """Every /20, starting at one derived from the state dir: concurrent `up`s of
    different clusters rarely try the same range first."""
    legacy = ipaddress.IPv4Network(LEGACY)
    # Not inside the legacy range: clusters still on it never collide with new ones.
    ranges = [r for r in SUPERNET.subnets(new_prefix=PREFIX) if not r.subnet_of(legacy)]
    start = int(hashlib.sha256(str(state_dir).encode()).hexdigest(), 16) % len(ranges)
    return ranges[start:] + ranges[:start]


def first_address(cidr: str) -> str:
    """The apiserver gives it to the `kubernetes` Service."""
    return str(ipaddress.IPv4Network(cidr).network_address + 1)


def _claim_path(claims: Path, net: ipaddress.IPv4Network) -> Path:
    return claims / str(net).replace("/", "-")


def _holder_keeps(holder: str, cidr: str) -> bool:
    """Whether the state dir named in a claim still records that range."""
    try:
        recorded = json.loads((Path(holder) / CLUSTER_JSON).read_text()).get("service_cidr")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(recorded == cidr)


def _young(path: Path) -> bool:
    """A fresh claim's cluster.json may not be written yet: it counts as held."""
    try:
        return time.time() - path.stat().st_mtime < FRESH_CLAIM_S
    except OSError:
        return False


def _claim(claims: Path, net: ipaddress.IPv4Network, state_dir: Path) -> bool:
    path = _claim_path(claims, net)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = path.read_text().strip()
            except OSError:
                holder = ""
            if holder == str(state_dir):
                return True
            if holder and (_young(path) or _holder_keeps(holder, str(net))):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # an abandoned claim
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(state_dir))
        return True
    return False


def for_cluster(state_dir: Path, previous: str | None, legacy_data: bool) -> str:
    """``legacy_data``: the cluster ran before ranges were chosen and has an etcd store."""
    return LEGACY if previous is None and legacy_data else choose(state_dir, previous)


def choose(state_dir: Path, previous: str | None, claims: Path = CLAIMS_DIR) -> str:
    """The cluster's range: its previous one when still free for it, else a free one."""
    state_dir = state_dir.resolve()
    claims.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if claims.stat().st_uid == os.geteuid():
            claims.chmod(0o1777)  # shared by clusters of any user, like /tmp
    order = candidates(state_dir)
    if previous:
        with contextlib.suppress(ValueError):
            net = ipaddress.IPv4Network(previous)
            if net in order:
                order.remove(net)
                order.insert(0, net)
    for net in order:
        if _claim(claims, net, state_dir):
            return str(net)
    raise NoFreeRange(
        f"every /{PREFIX} of {SUPERNET} is claimed by another local cluster "
        f"(claims in {claims}); remove the state dirs of clusters no longer needed"
    )

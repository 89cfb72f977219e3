"""Pure decisions of the kubelet API the node agent serves (see kubelet.py for the I/O).

The apiserver turns ``kubectl logs`` into ``GET /containerLogs/{namespace}/{pod}/{container}``
on the node, passing the PodLogOptions it validated as query parameters: ``follow``,
``previous``, ``tailLines``, ``limitBytes``, ``sinceSeconds`` or ``sinceTime``, and
``timestamps``. Container output goes straight from the process to a file here, so lines
carry no times: ``timestamps`` is refused with a clear message, and ``since`` is honoured
when the answer does not depend on per-line times (the whole run is newer, or the file was
last written before it), and refused otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote

from kubeml_local.pki import KUBELET_CLIENT_GROUP, KUBELET_CLIENT_USER

# Segments are validated names (DNS labels/subdomains), never slashes.
_LOGS_PATH = re.compile(r"^/containerLogs/([^/]+)/([^/]+)/([^/]+)/?$")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_TAIL_BLOCK = 8192


class QueryError(ValueError):
    """A request the kubelet answers with 400 Bad Request."""


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: dt.datetime | None = None
    timestamps: bool = False


def parse_path(path: str) -> tuple[str, str, str] | None:
    """``(namespace, pod, container)`` of a containerLogs path, else None."""
    match = _LOGS_PATH.match(path)
    if match is None:
        return None
    parts = tuple(unquote(p) for p in match.groups())
    if any(not p or "/" in p or p in (".", "..") for p in parts):
        return None
    return parts[0], parts[1], parts[2]


def _bool(query: Mapping[str, str], key: str) -> bool:
    value = query.get(key)
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise QueryError(f"{key}: invalid boolean {value!r}")


def _int(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"{key}: invalid integer {value!r}") from None
    if number < minimum:
        raise QueryError(f"{key}: must be at least {minimum}, got {number}")
    return number


def _time(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"sinceTime: invalid RFC 3339 time {value!r}") from None
    if when.tzinfo is None:
        raise QueryError(f"sinceTime: {value!r} has no time zone")
    return when


def parse_query(query: Mapping[str, str], now: dt.datetime) -> LogOptions:
    """The options of one request; raises QueryError for what the kubelet would refuse."""
    since_seconds = _int(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise QueryError("at most one of sinceTime or sinceSeconds may be specified")
    since = None
    if since_seconds is not None:
        since = now - dt.timedelta(seconds=since_seconds)
    elif since_time is not None:
        since = _time(since_time)
    options = LogOptions(
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        tail_lines=_int(query, "tailLines", 0),
        limit_bytes=_int(query, "limitBytes", 1),
        since=since,
        timestamps=_bool(query, "timestamps"),
    )
    if options.timestamps:
        raise QueryError(
            "timestamps are not available on the kubeml local node: container output is "
            "written straight to a file without times"
        )
    return options


SinceVerdict = Literal["all", "none"]


def since_verdict(
    since: dt.datetime, run_started: dt.datetime | None, last_write: dt.datetime
) -> SinceVerdict:
    """Which part of a log written by one run is newer than ``since``: all of it (the run
    started after), none (nothing was written since); anything else needs per-line times,
    which the file does not have (QueryError)."""
    if run_started is not None and run_started >= since:
        return "all"
    if last_write < since:
        return "none"
    raise QueryError(
        "sinceSeconds/sinceTime: this log has lines from both before and after "
        f"{since.isoformat()} and the kubeml local node does not record per-line times; "
        "use tailLines instead"
    )


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Offset of the start of the last ``lines`` lines of a file (a final line without a
    newline counts as a line), reading backwards in blocks."""
    end = f.seek(0, 2)
    if lines == 0:
        return end
    pos = end
    wanted = lines
    # A trailing newline ends the last line; it does not start another one.
    f.seek(max(end - 1, 0))
    if end and f.read(1) == b"\n":
        pos = end - 1
    while pos > 0:
        start = max(pos - _TAIL_BLOCK, 0)
        f.seek(start)
        block = f.read(pos - start)
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            wanted -= 1
            if wanted == 0:
                return start + idx + 1
        pos = start
    return 0


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 when allowed
    reason: str
    user: str = ""


def _attr(cert: Mapping[str, Any], key: str) -> list[str]:
    """Values of ``key`` in the subject of a certificate as ssl.getpeercert() gives it."""
    return [value for rdn in cert.get("subject", ()) for k, value in rdn if k == key]


def authorize(peer_cert: Mapping[str, Any] | None) -> Verdict:
    """Only the apiserver's kubelet client certificate may read logs. ``peer_cert`` is
    what TLS verified against the cluster CA (ssl.getpeercert()); None or empty when the
    client sent none."""
    if not peer_cert:
        return Verdict(401, "Unauthorized: a client certificate of the cluster CA is required")
    names = _attr(peer_cert, "commonName")
    user = names[0] if len(names) == 1 else ""
    if user == KUBELET_CLIENT_USER and KUBELET_CLIENT_GROUP in _attr(peer_cert, "organizationName"):
        return Verdict(200, "", user)
    return Verdict(
        403,
        f"Forbidden (user={user or '?'}, verb=get, resource=nodes, subresource=log): "
        "only the apiserver's kubelet client may call the node",
        user,
    )

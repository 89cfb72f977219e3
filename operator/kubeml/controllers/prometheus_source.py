"""Reading a rollout step's metrics from Prometheus' HTTP API (/api/v1/query).

Bounded: every query shares one deadline, and the first failure stops the reading.
A Prometheus that is down, slow or answers nonsense makes the judgement
inconclusive with a message naming it — never a crash, never a rollback.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..reconcile import analysis, prometheus

# Prometheus is the operator's own setting (never a tenant's), reached directly: an
# HTTP proxy from the environment is not asked to carry in-cluster queries.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MAX_ANSWER_BYTES = 8 << 20


class QueryError(Exception):
    pass


def _query(url: str, promql: str, timeout: float) -> prometheus.Vector:
    target = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with _DIRECT.open(target, timeout=timeout) as resp:
            raw = resp.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as err:
        detail = err.read(2000).decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):  # Prometheus' JSON error
            detail = str(json.loads(detail).get("error") or detail)
        raise QueryError(f"HTTP {err.code}: {detail[:300]}") from err
    except (OSError, ValueError) as err:  # refused, timed out, bad URL
        raise QueryError(str(getattr(err, "reason", None) or err)) from err
    if len(raw) > MAX_ANSWER_BYTES:
        raise QueryError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        doc: Any = json.loads(raw)
    except ValueError as err:
        raise QueryError(f"answer is not JSON: {err}") from err
    data = doc.get("data") if isinstance(doc, dict) else None
    if doc.get("status") != "success" or not isinstance(data, dict):
        raise QueryError(f"query failed: {doc.get('error') or doc}"[:300])
    if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise QueryError(f"expected a vector, got {data.get('resultType')}")
    result: prometheus.Vector = data["result"]
    return result


def read(url: str, timeout: float, sel: prometheus.Selection) -> analysis.Sample:
    deadline = time.monotonic() + timeout
    results: dict[str, prometheus.Vector] = {}
    for name, promql in prometheus.queries(sel).items():
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise QueryError(f"no answer within {timeout:g} s")
            results[name] = _query(url, promql, left)
        except QueryError as err:
            return analysis.Sample(
                0, 0, source="prometheus", error=f"Prometheus at {url}: {name} query: {err}"
            )
    return prometheus.sample_from_results(sel, results, url)

"""The operator's own Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "kubeml_operator_reconciles_total",
    "Reconciliations by kind and result.",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "kubeml_operator_reconcile_duration_seconds",
    "Time spent in one reconciliation.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "kubeml_operator_errors_total",
    "Reconciliations that raised, by kind and error class.",
    ["kind", "error"],
)


@contextmanager
def measured(kind: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except Exception as err:
        RECONCILES.labels(kind, "error").inc()
        ERRORS.labels(kind, type(err).__name__).inc()
        raise
    else:
        RECONCILES.labels(kind, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)

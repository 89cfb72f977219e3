"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kubeml_operator_reconciles_total",
    "Reconciliations by kind and result (ok, error, conflict).",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "kubeml_operator_reconcile_duration_seconds",
    "Time spent in one reconciliation, reads and writes included.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "kubeml_operator_errors_total",
    "Reconciliations that raised, by kind and error class.",
    ["kind", "error"],
)
QUEUE_DEPTH = Gauge(
    "kubeml_operator_queue_depth",
    "Objects whose reconcile is due and waiting for a worker.",
)
QUEUE_SCHEDULED = Gauge(
    "kubeml_operator_queue_scheduled",
    "Objects asked to be reconciled again later (schedules, cooldowns, re-checks, backoff).",
)
RECONCILING = Gauge("kubeml_operator_reconciles_active", "Reconciliations running now.")
API_REQUESTS = Counter(
    "kubeml_operator_api_requests_total",
    "Requests the operator's reconciles made to the Kubernetes API (watches excluded).",
    ["verb", "resource", "code"],
)
S3_REQUESTS = Counter(
    "kubeml_operator_s3_requests_total",
    "Requests the operator made to the artifact store, by operation.",
    ["operation"],
)
WRITES_SKIPPED = Counter(
    "kubeml_operator_writes_skipped_total",
    "Writes a decision asked for that were skipped because nothing would change.",
    ["what"],
)
CACHED_OBJECTS = Gauge(
    "kubeml_operator_cached_objects",
    "Objects held in the operator's watch-fed cache, by kind.",
    ["kind"],
)
LEADER = Gauge(
    "kubeml_operator_leader",
    "1 on the replica that leads (reconciles), 0 on a standby; by replica identity.",
    ["identity"],
)

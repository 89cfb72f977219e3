"""The operator's own Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from .reconcile.outcome import Finished
from .reconcile.stages import STAGES

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

# -- pipelines (Dataset preparations and TrainingRuns) --------------------------------
# From seconds (a cached builtin data set) to hours (a large search).
PIPELINE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
PIPELINE_RUNS = Counter(
    "kubeml_pipeline_runs_total",
    "Dataset preparations and TrainingRuns that reached their outcome, by kind and result "
    "(succeeded, failed).",
    ["kind", "result"],
)
PIPELINE_SECONDS = Histogram(
    "kubeml_pipeline_duration_seconds",
    "From a pipeline Job's creation to its recorded outcome, by kind and result.",
    ["kind", "result"],
    buckets=PIPELINE_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "kubeml_pipeline_stage_duration_seconds",
    "Seconds one stage of a pipeline Job took (pod: from the Job's creation to its pod's "
    "start; then fetch, validate, write, search, fit, evaluate, upload), by kind and stage.",
    ["kind", "stage"],
    buckets=PIPELINE_BUCKETS,
)
RESULTS = ("succeeded", "failed")


def pipeline_finished(done: Finished) -> None:
    result = RESULTS[0] if done.succeeded else RESULTS[1]
    PIPELINE_RUNS.labels(done.kind, result).inc()
    if done.seconds is not None:
        PIPELINE_SECONDS.labels(done.kind, result).observe(done.seconds)
    for stage, seconds in done.stages:
        STAGE_SECONDS.labels(done.kind, stage).observe(seconds)


def start_series(kinds: Iterable[str]) -> None:
    """Every bounded series at zero from the start, so that rate() and increase() see
    the first reconcile error or finished run as an increase, and a dashboard panel of
    failures shows 0 rather than nothing."""
    for kind in kinds:
        for result in ("ok", "error", "conflict"):
            RECONCILES.labels(kind, result)
        RECONCILE_SECONDS.labels(kind)
    for kind, names in STAGES.items():
        for result in RESULTS:
            PIPELINE_RUNS.labels(kind, result)
            PIPELINE_SECONDS.labels(kind, result)
        for stage in names:
            STAGE_SECONDS.labels(kind, stage)

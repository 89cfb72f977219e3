"""Prometheus metrics of one served model version (labels ``model`` and ``version``).

Each server has its own registry, so tests can run several in one process. Label
children are resolved once and cached: ``.labels()`` hashes its arguments on every
call, and the request path should not pay that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .drift import DriftWindow

# From well under a millisecond (a cached small model) to seconds (a large batch).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
    0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DriftCollector(Collector):
    """PSI per feature, computed from the window's bin counts at scrape time."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self.window: DriftWindow | None = None

    def collect(self) -> Iterable[Metric]:
        psi = GaugeMetricFamily(
            "kubeml_feature_drift_psi",
            "Population stability index of recent inputs against the training profile",
            labels=["model", "version", "feature"],
        )
        rows = GaugeMetricFamily(
            "kubeml_drift_window_rows",
            "Rows in the sliding window the drift gauges are computed over",
            labels=["model", "version"],
        )
        if self.window is not None:
            for feature, value in sorted(self.window.psi_by_feature().items()):
                psi.add_metric([self.model, self.version, feature], value)
            rows.add_metric([self.model, self.version], float(self.window.rows))
        yield psi
        yield rows


class WriteMetrics:
    """Records a writer sends to S3 (captured requests, feedback): written, bytes if
    counted, and dropped by reason (buffer_full, write_failed). Called from the loop
    thread (buffer full) and the thread reading what the writer process reports."""

    def __init__(
        self,
        model: str,
        version: str,
        r: CollectorRegistry,
        *,
        written: tuple[str, str],
        dropped: tuple[str, str],
        nbytes: tuple[str, str] | None = None,
    ) -> None:
        base = ["model", "version"]
        self._written = Counter(*written, base, registry=r).labels(model, version)
        self._bytes = Counter(*nbytes, base, registry=r).labels(model, version) if nbytes else None
        counter = Counter(*dropped, [*base, "reason"], registry=r)
        self._dropped = {
            reason: counter.labels(model, version, reason)
            for reason in ("buffer_full", "write_failed")
        }

    def captured(self, written: int, nbytes: int) -> None:
        self._written.inc(written)
        if self._bytes is not None:
            self._bytes.inc(nbytes)

    def dropped(self, reason: str, n: int) -> None:
        self._dropped[reason].inc(n)


class TargetOutcomes:
    """Requests this server sent to another version (target_version), counted by outcome
    and timed; an outcome that sent nothing (`unsent`) is counted, never timed."""

    def __init__(
        self,
        model: str,
        version: str,
        r: CollectorRegistry,
        *,
        requests: tuple[str, str],
        duration: tuple[str, str],
        unsent: str,
    ) -> None:
        self.model, self.version, self.unsent = model, version, unsent
        base = ["model", "version", "target_version"]
        self._requests = Counter(*requests, [*base, "outcome"], registry=r)
        self._duration = Histogram(*duration, base, buckets=LATENCY_BUCKETS, registry=r)
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def record(self, target: str, outcome: str, seconds: float) -> None:
        key = (target, outcome)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self._requests.labels(self.model, self.version, target, outcome),
                self._duration.labels(self.model, self.version, target),
            )
            self._children[key] = pair
        pair[0].inc()
        if outcome != self.unsent:
            pair[1].observe(seconds)


class LiveCollector(Collector):
    """Live quality from ground-truth feedback, computed at scrape time. Absent
    before the first labelled row: no alert fires on a model nobody has labelled."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self.live: Any = None  # feedback.LiveQuality, once feedback is on

    def collect(self) -> Iterable[Metric]:
        snap: dict[str, float] = self.live.snapshot() if self.live is not None else {}
        names = {
            "rows": ("kubeml_live_labelled_rows", "Labelled rows in the live quality window"),
            "accuracy": ("kubeml_live_accuracy", "Accuracy on labelled recent requests"),
            "mae": ("kubeml_live_mae", "Mean absolute error on labelled recent requests"),
            "rmse": ("kubeml_live_rmse", "Root mean squared error on labelled recent requests"),
        }
        for key, value in snap.items():
            name, doc = names[key]
            fam = GaugeMetricFamily(name, doc, labels=["model", "version"])
            fam.add_metric([self.model, self.version], value)
            yield fam


class ServerMetrics:
    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        self.model = model
        self.version = version
        base = ["model", "version"]
        r = self.registry
        self._requests = Counter(
            "kubeml_requests",
            "Inference requests answered, by protocol and HTTP status code",
            [*base, "protocol", "code"],
            registry=r,
        )
        self._duration = Histogram(
            "kubeml_request_duration_seconds",
            "Time from a complete inference request to its response being written",
            [*base, "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._inflight = Gauge(
            "kubeml_inflight_requests", "Inference requests being served now", base, registry=r
        )
        self._rows = Counter("kubeml_predicted_rows", "Rows predicted", base, registry=r).labels(
            model, version
        )
        self._batch = Histogram(
            "kubeml_batch_rows",
            "Rows per predict call (requests batched together)",
            base,
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(model, version)
        self._predictions = Counter(
            "kubeml_predictions",
            "Predicted classes of a classifier",
            [*base, "class"],
            registry=r,
        )
        self._info = Gauge(
            "kubeml_model_info",
            "The served model version; always 1",
            [*base, "sha256"],
            registry=r,
        )
        self._ready = Gauge(
            "kubeml_model_ready",
            "1 when the model is loaded, verified and serving",
            base,
            registry=r,
        ).labels(model, version)
        self._status = Gauge(
            "kubeml_model_status",
            "1 for the current load state (reason Loaded, Loading, ArtifactMismatch, ...)",
            [*base, "reason"],
            registry=r,
        )
        self._status_reason: str | None = None
        self._forwarded = TargetOutcomes(
            model,
            version,
            r,
            requests=(
                "kubeml_forwarded_requests",
                "Inference requests this server sent to the canary version (target_version), "
                "by outcome: answered (relayed), error or unreachable (answered here instead), "
                "saturated (forwarding at its connection bound: answered here)",
            ),
            duration=(
                "kubeml_forwarded_request_duration_seconds",
                "Time from a complete request to the canary's answer (or the fallback decision)",
            ),
            unsent="saturated",
        )
        self._shadow = TargetOutcomes(
            model,
            version,
            r,
            requests=(
                "kubeml_shadow_requests",
                "Inference requests this server mirrored to the shadow version (target_version), "
                "whose answers are discarded, by outcome: answered, error (not 2xx or "
                "unreadable), unreachable, skipped (mirroring at its connection bound)",
            ),
            duration=(
                "kubeml_shadow_request_duration_seconds",
                "Time from mirroring a request to the shadow's answer (or its failure)",
            ),
            unsent="skipped",
        )
        self._shadow_compared = Counter(
            "kubeml_shadow_rows_compared",
            "Rows of mirrored requests whose shadow prediction was compared with this server's own",
            [*base, "target_version"],
            registry=r,
        )
        self._shadow_agreed = Counter(
            "kubeml_shadow_rows_agreed",
            "Compared rows on which the shadow agreed with this server (equal labels; a "
            "regressor within the tolerance): agreement = agreed / compared",
            [*base, "target_version"],
            registry=r,
        )
        self.drift = DriftCollector(model, version)
        r.register(self.drift)
        self.capture = WriteMetrics(
            model,
            version,
            r,
            written=("kubeml_capture_records", "Captured requests written to S3"),
            nbytes=("kubeml_capture_bytes", "Bytes of Parquet written to S3 by request capture"),
            dropped=(
                "kubeml_capture_dropped_records",
                "Sampled requests not captured: buffer_full (S3 slower than traffic) or "
                "write_failed (S3 refused or unreachable)",
            ),
        )
        self.feedback_writer = WriteMetrics(
            model,
            version,
            r,
            written=("kubeml_feedback_written_records", "Feedback records written to S3"),
            dropped=(
                "kubeml_feedback_dropped_records",
                "Feedback records accepted but not written: buffer_full or write_failed",
            ),
        )
        self.live = LiveCollector(model, version)
        r.register(self.live)
        self._feedback = Counter(
            "kubeml_feedback_records",
            "Feedback entries received: scored (this server remembered the request) or "
            "unknown (another replica's, expired, or already labelled)",
            [*base, "result"],
            registry=r,
        )
        self._feedback_children = {
            k: self._feedback.labels(model, version, k) for k in ("scored", "unknown")
        }
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._class_children: dict[str, Counter] = {}

    # -- request path ------------------------------------------------------------

    def request(self, protocol: str, code: int, seconds: float) -> None:
        key = (protocol, code)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self._requests.labels(self.model, self.version, protocol, str(code)),
                self._duration.labels(self.model, self.version, protocol),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def forwarded(self, target: str, outcome: str, seconds: float) -> None:
        self._forwarded.record(target, outcome, seconds)

    def shadow(self, target: str, outcome: str, seconds: float) -> None:
        self._shadow.record(target, outcome, seconds)

    def shadow_rows(self, target: str, compared: int, agreed: int) -> None:
        self._shadow_compared.labels(self.model, self.version, target).inc(compared)
        self._shadow_agreed.labels(self.model, self.version, target).inc(agreed)

    def known_shadow(self, target: str) -> None:
        """Create the row counters at 0, so agreement reads 0/0 (not absent) at first."""
        self.shadow_rows(target, 0, 0)

    def track_inflight(self, read: Callable[[], float]) -> None:
        self._inflight.labels(self.model, self.version).set_function(read)

    # -- worker path -------------------------------------------------------------

    def predicted(self, rows: int, labels: np.ndarray | None) -> None:
        self._rows.inc(rows)
        self._batch.observe(rows)
        if labels is None or labels.size == 0:
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self._class(str(value)).inc(count)

    def _class(self, label: str) -> Counter:
        child = self._class_children.get(label)
        if child is None:
            child = self._predictions.labels(self.model, self.version, label)
            self._class_children[label] = child
        return child

    def known_classes(self, labels: Sequence[str]) -> None:
        """Create the class series at 0 so rate() works from the first prediction."""
        for label in labels:
            self._class(label)

    def feedback(self, scored: int, unknown: int) -> None:
        self._feedback_children["scored"].inc(scored)
        self._feedback_children["unknown"].inc(unknown)

    # -- state -------------------------------------------------------------------

    def model_info(self, sha256: str) -> None:
        self._info.labels(self.model, self.version, sha256).set(1)

    def state(self, ready: bool, reason: str) -> None:
        self._ready.set(1 if ready else 0)
        if self._status_reason is not None and self._status_reason != reason:
            self._status.remove(self.model, self.version, self._status_reason)
        self._status.labels(self.model, self.version, reason).set(1)
        self._status_reason = reason

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

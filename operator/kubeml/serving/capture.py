"""Request capture: a sampled share of requests and their responses, written to S3
as Parquet in batches, partitioned by model, version and hour.

Capture must never slow or fail a request. The loop thread only appends a
reference to arrays the request already produced (no copy, no encoding) to a
buffer bounded by rows; a writer thread turns batches into Parquet and PUTs them.
When S3 is slow or down the writer falls behind, the buffer fills, and further
records are dropped and counted (``kubeml_capture_dropped_records_total``), never
queued without bound. A batch whose PUT fails is dropped and counted too: retrying
it would keep its memory while newer records wait. ``close`` flushes what is held
(SIGTERM), so a record whose response was sent is in S3 unless S3 failed.

Layout (under the Deployment's capture prefix, inside its namespace's space):

    <prefix>model=<model>/version=<n>/hour=<YYYY-MM-DDTHH>/<pod>-<start>-<seq>.parquet

One row per request: id, time, modelversion, protocol, rows, inputs (one list per
kept feature), outputs (predict, and predict_proba when it was asked for).
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

log = logging.getLogger("kubeml.serve.capture")
T = TypeVar("T")

HIVE_HOUR = "%Y-%m-%dT%H"
# Values are counted, not bytes: a row of F features holds F values in memory.
DEFAULT_MAX_BUFFER_VALUES = 2_000_000  # about 16 MB of float64
DEFAULT_FLUSH_SECONDS = 5.0
DEFAULT_BATCH_RECORDS = 20_000


class CaptureConfigError(ValueError):
    """The capture settings are unusable (the server cannot start)."""


@dataclass(frozen=True)
class CaptureConfig:
    prefix_uri: str  # s3://bucket/namespaces/<ns>/captures/<deployment>/
    sample_percent: float = 100.0
    keep: tuple[str, ...] | None = None  # features written (None: all)
    drop: tuple[str, ...] = ()  # features never written
    max_buffer_values: int = DEFAULT_MAX_BUFFER_VALUES
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    batch_records: int = DEFAULT_BATCH_RECORDS
    writer_id: str = "server"

    @property
    def bucket(self) -> str:
        return split_prefix(self.prefix_uri)[0]

    @property
    def prefix(self) -> str:
        return split_prefix(self.prefix_uri)[1]

    def features(self, all_features: Sequence[str]) -> list[str]:
        """The features written, in signature order (drop applied after keep)."""
        kept = all_features if self.keep is None else [f for f in all_features if f in self.keep]
        return [f for f in kept if f not in self.drop]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CaptureConfig | None:
        uri = env.get("KUBEML_CAPTURE_URI", "").strip()
        if not uri:
            return None
        split_prefix(uri)

        def num(name: str, default: float, lo: float, hi: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise CaptureConfigError(f"${name}={raw!r} is not a number") from None
            if not lo <= value <= hi:
                raise CaptureConfigError(f"${name}={raw} is outside [{lo:g}, {hi:g}]")
            return value

        def names(name: str) -> tuple[str, ...] | None:
            raw = env.get(name, "").strip()
            return tuple(x.strip() for x in raw.split(",") if x.strip()) if raw else None

        pod = env.get("KUBEML_POD_NAME", "").strip() or "server"
        return cls(
            prefix_uri=uri if uri.endswith("/") else uri + "/",
            sample_percent=num("KUBEML_CAPTURE_SAMPLE_PERCENT", 100.0, 0.0, 100.0),
            keep=names("KUBEML_CAPTURE_KEEP"),
            drop=names("KUBEML_CAPTURE_DROP") or (),
            max_buffer_values=int(
                num("KUBEML_CAPTURE_MAX_BUFFER_VALUES", DEFAULT_MAX_BUFFER_VALUES, 1, 1e9)
            ),
            flush_seconds=num("KUBEML_CAPTURE_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS, 0.05, 3600),
            batch_records=int(
                num("KUBEML_CAPTURE_BATCH_RECORDS", DEFAULT_BATCH_RECORDS, 1, 1_000_000)
            ),
            # Several replicas write the same hour: the pod name keeps their keys apart.
            writer_id=pod,
        )


def split_prefix(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise CaptureConfigError(f"capture URI {uri!r} is not s3://bucket/prefix/")
    return bucket, key if key.endswith("/") else key + "/"


class Record(NamedTuple):
    """What one captured request holds until it is written: references only."""

    id: str
    time_ns: int
    protocol: str
    rows: Any  # float64 (n, F) matrix, or one array per feature
    n: int
    pred: np.ndarray
    proba: np.ndarray | None


class Sink(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def connect(self) -> None: ...


class CaptureStats(Protocol):
    def captured(self, written: int, nbytes: int) -> None: ...
    def dropped(self, reason: str, n: int) -> None: ...


class BatchWriter(Generic[T]):
    """A bounded buffer drained by a writer thread into Parquet objects, one per hour
    of records per flush. Shared by captures and feedback."""

    def __init__(
        self,
        *,
        name: str,
        bucket: str,
        key_prefix: str,  # ends with "/"; hour=<h>/ and the file name follow
        writer_id: str,
        max_values: int,
        flush_seconds: float,
        batch_records: int,
        encode: Callable[[Sequence[T]], bytes],
        time_ns: Callable[[T], int],
        sink: Sink,
        stats: CaptureStats,
    ) -> None:
        self.name = name
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.writer_id = writer_id
        self.max_values = max_values
        self.flush_seconds = flush_seconds
        self.batch_records = batch_records
        self.encode = encode
        self.time_ns = time_ns
        self.sink = sink
        self.stats = stats
        self._lock = threading.Lock()
        self._pending: list[tuple[T, int]] = []
        self._values = 0  # values held by _pending and the batch being written
        self._writing = 0
        self._wake = threading.Event()
        self._closing = False
        self._seq = 0
        self._start = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._thread = threading.Thread(target=self._run, name=f"kubeml-{name}", daemon=True)
        self._thread.start()

    def offer(self, item: T, cost: int) -> bool:
        """Hold an item for the writer; False (and counted) when the buffer is full."""
        with self._lock:
            if self._closing or self._values + cost > self.max_values:
                full = True
            else:
                full = False
                self._pending.append((item, cost))
                self._values += cost
                many = len(self._pending) >= self.batch_records
        if full:
            self.stats.dropped("buffer_full", 1)
            return False
        if many:
            self._wake.set()
        return True

    @property
    def buffered(self) -> int:
        return len(self._pending) + self._writing

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing
            self.flush()
            if closing:
                return

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._writing = len(batch)
        if batch:
            self._write([item for item, _ in batch])
        with self._lock:
            self._values -= sum(cost for _, cost in batch)
            self._writing = 0

    def _write(self, batch: list[T]) -> None:
        by_hour: dict[str, list[T]] = {}
        for item in batch:
            hour = datetime.fromtimestamp(self.time_ns(item) / 1e9, UTC).strftime(HIVE_HOUR)
            by_hour.setdefault(hour, []).append(item)
        for hour, items in by_hour.items():
            self._seq += 1
            key = (
                f"{self.key_prefix}hour={hour}/"
                f"{self.writer_id}-{self._start}-{self._seq:06d}.parquet"
            )
            try:
                data = self.encode(items)
                self.sink.put(key, data)
            except Exception as err:  # S3 down, slow, refusing: drop, count, go on
                log.warning(
                    "%s: %d records not written to s3://%s/%s: %s",
                    self.name, len(items), self.bucket, key, err,
                )  # fmt: skip
                self.stats.dropped("write_failed", len(items))
                continue
            self.stats.captured(len(items), len(data))

    def close(self, timeout: float) -> bool:
        """Flush what is held and stop; True when everything was handed to S3."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        if not done:
            log.warning("%s: %d records still unwritten at exit", self.name, self.buffered)
        return done


class Capture:
    """The sampling decision and what a captured request becomes in Parquet."""

    def __init__(
        self,
        cfg: CaptureConfig,
        *,
        model: str,
        version: int,
        modelversion: str,
        features: Sequence[str],
        dtypes: Sequence[str],
        classes: Sequence[str] | None,
        sink: Sink,
        stats: CaptureStats,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.version = version
        self.modelversion = modelversion
        self.all_features = list(features)
        self.kept = cfg.features(features)
        self.kept_idx = [self.all_features.index(f) for f in self.kept]
        self.dtypes = dict(zip(features, dtypes, strict=True))
        # Requests of an all-numeric signature arrive as one float64 matrix each.
        self.numeric = all(d in ("number", "integer") for d in dtypes)
        self.classes = list(classes) if classes is not None else None
        self._rate = cfg.sample_percent / 100.0
        self._width = max(1, len(self.all_features))
        self.writer: BatchWriter[Record] = BatchWriter(
            name="capture",
            bucket=cfg.bucket,
            key_prefix=f"{cfg.prefix}{partition(model, version)}",
            writer_id=cfg.writer_id,
            max_values=cfg.max_buffer_values,
            flush_seconds=cfg.flush_seconds,
            batch_records=cfg.batch_records,
            encode=lambda recs: encode(recs, self),
            time_ns=lambda rec: rec.time_ns,
            sink=sink,
            stats=stats,
        )

    def sampled(self) -> bool:
        return self._rate >= 1.0 or (self._rate > 0.0 and random.random() < self._rate)

    def offer(self, rec: Record) -> bool:
        return self.writer.offer(rec, rec.n * self._width)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, timeout: float) -> bool:
        return self.writer.close(timeout)

    def warm(self) -> None:
        """Import pyarrow's Parquet writer, encode once and make the S3 client, while
        the model loads: done lazily by the writer on its first flush, this holds the
        GIL for about a second (measured) and shows in the serving p99."""
        rows = np.zeros((1, len(self.all_features)))
        encode([Record("warm-up", 0, "v2", rows, 1, np.zeros(1), None)], self)
        try:
            self.writer.sink.connect()
        except Exception as err:  # missing credentials: every write will fail and count
            log.error("capture: cannot make an S3 client for %s: %s", self.cfg.bucket, err)


def partition(model: str, version: int) -> str:
    return f"model={model}/version={version}/"


def encode(recs: Sequence[Record], cap: Capture) -> bytes:
    """One Parquet file of whole records (built column-wise from the held arrays)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Columns by transposing the tuples (C-level): per-record Python loops here hold
    # the GIL the event loop needs, and showed in the serving p99.
    ids, times, protocols, rows, ns_, preds, probas = zip(*recs, strict=True)
    ns = np.array(times, dtype=np.int64)
    counts = np.array(ns_, dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))

    def listed(values: np.ndarray, dtype: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, pa.array(values, type=dtype, from_pandas=True))

    inputs = []
    matrix = np.concatenate(rows) if cap.numeric else None
    for j, name in zip(cap.kept_idx, cap.kept, strict=True):
        col = matrix[:, j] if matrix is not None else np.concatenate([_col(r, j) for r in rows])
        inputs.append((name, listed(col, _arrow_type(cap.dtypes[name]))))
    outputs: list[tuple[str, Any]] = [
        ("predict", listed(_flat_labels(np.concatenate(preds)), None))
    ]
    if any(p is not None for p in probas):
        outputs.append(("predict_proba", _proba(recs)))
    cols: dict[str, Any] = {
        "id": pa.array(ids, type=pa.string()),
        "time": pa.array(ns, type=pa.timestamp("ns", tz="UTC")),
        "modelversion": pa.array([cap.modelversion] * len(recs), type=pa.string()),
        "protocol": pa.array(protocols, type=pa.string()),
        "rows": pa.array(counts, type=pa.int32()),
    }
    if inputs:
        cols["inputs"] = pa.StructArray.from_arrays([a for _, a in inputs], [n for n, _ in inputs])
    cols["outputs"] = pa.StructArray.from_arrays([a for _, a in outputs], [n for n, _ in outputs])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()


def _col(rows: Any, j: int) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows[:, j]
    return np.asarray(rows[j])


def _arrow_type(dtype: str) -> Any:
    import pyarrow as pa

    if dtype in ("number", "integer"):
        return pa.float64()  # what the model saw: requests become float64
    if dtype == "boolean":
        return pa.bool_()
    return pa.string()


def _flat_labels(pred: np.ndarray) -> np.ndarray:
    # Classifier labels may be numpy strings/objects; numbers stay numbers.
    return pred if pred.dtype.kind in "biuf" else pred.astype(str)


def _proba(recs: Sequence[Record]) -> Any:
    """list<list<double>> per record; null for records that did not ask for it."""
    import pyarrow as pa

    out = []
    for r in recs:
        out.append(None if r.proba is None else [row.tolist() for row in r.proba])
    return pa.array(out, type=pa.list_(pa.list_(pa.float64())))


class S3Sink:
    """PUTs through a boto3 client made on first use (in the writer thread): boto3
    enters the server's memory only when capture is on. Few, short attempts: a
    writer stuck on a dead endpoint is a writer not draining the buffer."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._client: Any = None

    def connect(self) -> None:
        if self._client is None:
            from dataclasses import replace

            from ..storage import S3Settings
            from ..storage.store import make_client

            settings = replace(
                S3Settings.from_env(os.environ),
                bucket=self.bucket,
                max_attempts=2,
                connect_timeout=2.0,
                read_timeout=10.0,
            )
            self._client = make_client(settings, pool=2)

    def put(self, key: str, data: bytes) -> None:
        self.connect()
        self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType="application/vnd.apache.parquet"
        )

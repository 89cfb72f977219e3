"""Request capture: a sampled share of requests and their responses, written to S3
as Parquet in batches, partitioned by model, version and hour.

Capture must never slow or fail a request. The loop thread turns a sampled request
into one short JSON line (kept fields only: dropped fields never leave the server)
and appends it to a bounded buffer; everything else (Arrow columns, Parquet, the
PUT) happens in the writer process (serving/writer.py), where it cannot hold the
server's GIL. When S3 is slow or down the writer falls behind, its buffer fills,
and further records are dropped and counted (``kubeml_capture_dropped_records_total``),
never queued without bound. A batch whose PUT fails is dropped and counted too:
retrying it would keep its memory while newer records wait. ``close`` flushes what
is held (SIGTERM), so a record whose response was sent is in S3 unless S3 failed.

Layout (under the Deployment's capture prefix, inside its namespace's space):

    <prefix>model=<model>/version=<n>/hour=<YYYY-MM-DDTHH>/<pod>-<start>-<seq>.parquet

One row per request: id, time, modelversion, protocol, rows, inputs (one list per
kept feature), outputs (predict, and predict_proba when it was asked for).
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from .writer import (
    BatchWriter,
    LocalChannel,
    PipeChannel,
    Sink,
    Spec,
    Stats,
    WriterProcess,
    batch_writer,
)

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
    """One captured request as the server holds it for the moment it takes to encode."""

    id: str
    time_ns: int
    protocol: str
    rows: Any  # float64 (n, F) matrix, or one array per feature
    n: int
    pred: np.ndarray
    proba: np.ndarray | None


class Capture:
    """The sampling decision and what a captured request becomes on the wire to the
    writer (kept fields only)."""

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
        stats: Stats,
        sink: Sink | None = None,
        process: WriterProcess | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.version = version
        self.modelversion = modelversion
        self.all_features = list(features)
        self.kept = cfg.features(features)
        self.kept_idx = [self.all_features.index(f) for f in self.kept]
        self._all_kept = self.kept_idx == list(range(len(self.all_features)))
        by_name = dict(zip(features, dtypes, strict=True))
        # Requests of an all-numeric signature arrive as one float64 matrix each.
        self.numeric = all(d in ("number", "integer") for d in dtypes)
        self.classes = list(classes) if classes is not None else None
        self._rate = cfg.sample_percent / 100.0
        self.spec: dict[str, Any] = {
            "bucket": cfg.bucket,
            "key_prefix": f"{cfg.prefix}{partition(model, version)}",
            "writer_id": cfg.writer_id,
            "max_values": cfg.max_buffer_values,
            "flush_seconds": cfg.flush_seconds,
            "batch_records": cfg.batch_records,
            "modelversion": modelversion,
            "numeric": self.numeric,
            "kept": self.kept,
            "types": [by_name[f] for f in self.kept],
            # A buffered request costs the values it held when it arrived.
            "width": max(1, len(self.all_features)),
        }
        self.channel: LocalChannel | PipeChannel
        if process is not None:
            self.channel = process.channel(b"c", self.spec, stats)
        else:
            if sink is None:
                raise ValueError("capture needs a sink or a writer process")
            self.channel = LocalChannel(b"c", self.spec, sink, stats)

    def sampled(self) -> bool:
        return self._rate >= 1.0 or (self._rate > 0.0 and random.random() < self._rate)

    def offer(self, rec: Record) -> bool:
        """On the loop thread: one small JSON encoding (numpy arrays are serialized
        by orjson in C) and one append."""
        rows = rec.rows
        if self.numeric:
            inputs = rows if self._all_kept else rows[:, self.kept_idx]
        else:
            inputs = [rows[j] for j in self.kept_idx]
        doc = {
            "id": rec.id,
            "t": rec.time_ns,
            "p": rec.protocol,
            "n": rec.n,
            "x": inputs,
            "y": rec.pred,
            "pp": rec.proba,
        }
        return self.channel.send(orjson.dumps(doc, default=_plain, option=_NUMPY))

    def flush(self) -> None:
        self.channel.flush()

    def close(self, timeout: float) -> bool:
        return self.channel.close(timeout)

    def warm(self) -> None:
        """Before the model is ready: the writer's first-use costs stay off requests."""
        self.channel.warm()


_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _plain(value: Any) -> Any:
    """What orjson does not serialize natively: arrays of strings or objects,
    non-contiguous arrays, numpy scalars."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot capture a {type(value).__name__}")


def partition(model: str, version: int) -> str:
    return f"model={model}/version={version}/"


# -- in the writer process ------------------------------------------------------------------


class _CaptureKind:
    def writer(self, spec: Spec, sink: Sink, stats: Stats) -> BatchWriter[Any]:
        return batch_writer("capture", spec, sink, stats, lambda recs: encode(recs, spec))

    def cost(self, spec: Spec, record: Any) -> int:
        return int(record["n"]) * int(spec["width"])

    def warm(self, spec: Spec) -> None:
        """Import pyarrow's Parquet writer and encode once."""
        width = len(spec["kept"])
        x: Any = [[0.0] * width] if spec["numeric"] else [[None] for _ in range(width)]
        encode([{"id": "warm-up", "t": 0, "p": "v2", "n": 1, "x": x, "y": [0], "pp": None}], spec)


CAPTURE = _CaptureKind()


def encode(recs: Sequence[Mapping[str, Any]], spec: Spec) -> bytes:
    """One Parquet file of whole records, from records as the server sent them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = np.array([r["n"] for r in recs], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))

    def listed(values: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, values)

    inputs = []
    kept, types = spec["kept"], spec["types"]
    if spec["numeric"]:
        # NaN and infinities travel as null (JSON has neither): stored as null, as
        # NaN always was.
        flat = [v for r in recs for row in r["x"] for v in row]
        matrix = np.array(flat, dtype=np.float64).reshape(-1, len(kept) or 1)
        for j, name in enumerate(kept):
            values = pa.array(matrix[:, j], type=pa.float64(), from_pandas=True)
            inputs.append((name, listed(values)))
    else:
        for j, (name, dtype) in enumerate(zip(kept, types, strict=True)):
            column = [v for r in recs for v in r["x"][j]]
            inputs.append((name, listed(pa.array(column, type=_arrow_type(dtype)))))
    preds = [v for r in recs for v in r["y"]]
    outputs: list[tuple[str, Any]] = [("predict", listed(_labels(preds)))]
    if any(r["pp"] is not None for r in recs):
        outputs.append(
            ("predict_proba", pa.array([r["pp"] for r in recs], pa.list_(pa.list_(pa.float64()))))
        )
    cols: dict[str, Any] = {
        "id": pa.array([r["id"] for r in recs], type=pa.string()),
        "time": pa.array(
            np.array([r["t"] for r in recs], dtype=np.int64), type=pa.timestamp("ns", tz="UTC")
        ),
        "modelversion": pa.array([spec["modelversion"]] * len(recs), type=pa.string()),
        "protocol": pa.array([r["p"] for r in recs], type=pa.string()),
        "rows": pa.array(counts, type=pa.int32()),
    }
    if inputs:
        cols["inputs"] = pa.StructArray.from_arrays([a for _, a in inputs], [n for n, _ in inputs])
    cols["outputs"] = pa.StructArray.from_arrays([a for _, a in outputs], [n for n, _ in outputs])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()


def _arrow_type(dtype: str) -> Any:
    import pyarrow as pa

    if dtype in ("number", "integer"):
        return pa.float64()  # what the model saw: requests become float64
    if dtype == "boolean":
        return pa.bool_()
    return pa.string()


def _labels(preds: list[Any]) -> Any:
    """Numbers stay numbers; classifier labels of any other kind become strings."""
    import pyarrow as pa

    try:
        arr = pa.array(preds)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed kinds
        return pa.array([str(p) for p in preds], type=pa.string())
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return arr
    return pa.array([str(p) for p in preds], type=pa.string())

"""Request capture: a sampled share of requests and their responses, written to S3
as Parquet in batches, partitioned by model, version and hour.

Capture must never slow or fail a request. The predict worker holds the sampled
requests of one predict call as they are (kept fields only: dropped fields never
leave the server) in a bounded buffer, before any of their answers is sent; each
feed of the writer's pipe makes one line of all that is held (the matrices as raw
bytes, no number printed); everything else (Arrow columns, Parquet, the PUT) happens
in the writer process (serving/writer.py), where it cannot hold the server's GIL.
When S3 is slow or down the writer falls behind, its buffer fills, and further
records are dropped and counted (``kubeml_capture_dropped_records_total``), never
queued without bound. A batch whose PUT fails is dropped and counted too:
retrying it would keep its memory while newer records wait. ``close`` flushes what
is held (SIGTERM), so a record whose response was sent is in S3 unless S3 failed.

Layout (under the Deployment's capture prefix, inside its namespace's space):

    <prefix>model=<model>/version=<n>/hour=<YYYY-MM-DDTHH>/<pod>-<start>-<seq>.parquet

One row per request: id, time, modelversion, protocol, rows, inputs (one list per
kept feature), outputs (predict, and predict_proba when it was asked for).
"""

from __future__ import annotations

import base64
import io
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson

from .writer import (
    NS_PER_HOUR,
    BatchWriter,
    LocalChannel,
    PipeChannel,
    Sink,
    Spec,
    Stats,
    WriterProcess,
    batch_writer,
    offer_records,
)

log = logging.getLogger("kubeml.serve.capture")

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


class Batch(NamedTuple):
    """The captured requests of one predict call, in order, as the worker thread has
    them before any of their answers is sent."""

    ids: Sequence[str]
    protocols: Sequence[str]
    ns: Sequence[int]  # rows per request
    want_proba: Sequence[bool]  # probabilities are kept for the requests that asked
    rows: Any  # all their rows: a float64 (R, F) matrix, or one array per feature
    pred: np.ndarray
    proba: np.ndarray | None  # None when no request of the predict call asked
    time_ns: int


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

    def offer(self, batch: Batch) -> int:
        """One predict call's records, in a short encoding (numpy arrays are serialized
        by orjson in C): the records that were accepted (the rest were dropped and
        counted)."""
        if self.numeric:
            # Held as it is (kept inputs only) until the next feed of the writer's pipe,
            # where the batches held become one line (``held_line``).
            x = batch.rows if self._all_kept else batch.rows[:, self.kept_idx]
            n = len(batch.ids)
            size = x.nbytes + batch.pred.nbytes + (0 if batch.proba is None else batch.proba.nbytes)
            item = batch if self._all_kept else batch._replace(rows=x)
            held = self.channel.hold(item, n, size * 4 // 3 + 48 * n, held_line)
            return n if held else 0
        taken = start = 0
        for rid, protocol, n, wants in zip(
            batch.ids, batch.protocols, batch.ns, batch.want_proba, strict=True
        ):
            end = start + n
            rec = {
                "id": rid,
                "t": batch.time_ns,
                "p": protocol,
                "n": n,
                "x": [batch.rows[j][start:end] for j in self.kept_idx],
                "y": batch.pred[start:end],
                "pp": batch.proba[start:end] if wants and batch.proba is not None else None,
            }
            taken += self.channel.send(orjson.dumps(rec, default=_plain, option=_NUMPY), 1)
            start = end
        return taken

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


def _b64(values: np.ndarray, dtype: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).data).decode("ascii")


def held_line(batches: Sequence[Batch]) -> bytes:
    """The batches held since the last feed (kept inputs only) as one batch line:
    their requests in order, each with its batch's time. Probabilities of batches
    that computed none are zeros, never read: none of their requests asked."""
    x = np.concatenate([np.asarray(b.rows, dtype=np.float64) for b in batches])
    try:
        pred = np.concatenate([b.pred for b in batches])
    except (TypeError, ValueError):  # predictions of different kinds: as labels
        pred = np.array([v for b in batches for v in b.pred.tolist()], dtype=object)
    proba = None
    widths = {b.proba.shape[1] for b in batches if b.proba is not None}
    if len(widths) > 1:
        raise ValueError(f"batches with {sorted(widths)} probabilities per row")
    if widths:
        c = widths.pop()
        proba = np.concatenate(
            [b.proba if b.proba is not None else np.zeros((len(b.pred), c)) for b in batches]
        )
    flat = chain.from_iterable
    return batch_line(
        list(flat(b.ids for b in batches)),
        # Serialized by orjson from the array, in C.
        np.repeat(np.array([b.time_ns for b in batches], np.int64), [len(b.ids) for b in batches]),
        list(flat(b.protocols for b in batches)),
        list(flat(b.ns for b in batches)),
        list(flat(b.want_proba for b in batches)),
        x,
        pred,
        proba,
    )


def batch_line(
    ids: Sequence[str],
    time_ns: int | Sequence[int] | np.ndarray,  # one for all, or one per request
    protocols: Sequence[str],
    ns: Sequence[int],
    want_proba: Sequence[bool],
    x: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
) -> bytes:
    """Captured requests of a numeric signature as one line: the
    per-request fields as JSON, the matrices as their raw bytes in base64 (the writer
    reads them with numpy: no number is printed here or parsed there). Predictions
    that are not numbers or booleans (class labels) travel as a JSON list."""
    doc: dict[str, Any] = {"id": ids, "t": time_ns, "p": protocols, "n": ns, "wp": want_proba}
    doc["x"] = _b64(x, np.float64)
    doc["f"] = int(x.shape[1])
    if pred.dtype.kind in "biuf":
        little = pred.dtype.newbyteorder("<")
        doc["y"], doc["yd"] = _b64(pred, little), little.str
    else:
        doc["y"] = pred
    if proba is not None:
        doc["pp"], doc["c"] = _b64(proba, np.float64), int(proba.shape[1])
    return orjson.dumps(doc, default=_plain, option=_NUMPY)


def partition(model: str, version: int) -> str:
    return f"model={model}/version={version}/"


# -- in the writer process ------------------------------------------------------------------


class _CaptureKind:
    def writer(self, spec: Spec, sink: Sink, stats: Stats) -> BatchWriter[Any]:
        if spec["numeric"]:
            return BatchWriter(
                name="capture",
                bucket=spec["bucket"],
                key_prefix=spec["key_prefix"],
                writer_id=spec["writer_id"],
                max_values=spec["max_values"],
                flush_seconds=spec["flush_seconds"],
                batch_records=spec["batch_records"],
                encode=lambda table: encode_block(table, spec),
                group=block_hours,
                sink=sink,
                stats=stats,
            )
        return batch_writer("capture", spec, sink, stats, lambda recs: encode(recs, spec))

    def take(self, writer: BatchWriter[Any], spec: Spec, lines: bytes) -> int:
        width = int(spec["width"])
        if not spec["numeric"]:
            return offer_records(writer, lines, lambda rec: int(rec["n"]) * width)
        block = parse_block(lines)
        if block.num_rows == 0:
            return 0
        # A buffered request costs the values it held when it arrived.
        costs = (block.column("n").to_numpy() * width).tolist()
        return writer.offer_block(block, costs, lambda b, mask: b.filter(mask))

    def warm(self, spec: Spec) -> None:
        """Import pyarrow and its Parquet writer, and encode once."""
        width = len(spec["kept"])
        if spec["numeric"]:
            x, y = np.zeros((1, width)), np.zeros(1, dtype=np.int64)
            line = batch_line(["warm-up"], 0, ["v2"], [1], [False], x, y, None)
            encode_block(parse_block(line + b"\n"), spec)
        else:
            rec = {"id": "warm-up", "t": 0, "p": "v2", "n": 1, "y": [0], "pp": None}
            encode([{**rec, "x": [[None] for _ in range(width)]}], spec)


CAPTURE = _CaptureKind()


def parse_block(lines: bytes) -> Any:
    """An Arrow table of the records (one row per request) in the batch lines of a
    numeric signature (``batch_line``): a JSON decode per line, the matrices read
    with numpy, the split into requests done in Arrow (no Python object per record).
    A line that cannot be read is skipped and logged."""
    import pyarrow as pa

    ids: list[str] = []
    protocols: list[str] = []
    ns: list[int] = []
    wants: list[bool] = []
    times: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    ys: list[Any] = []
    pps: list[np.ndarray] = []
    has_pp: list[bool] = []
    width, classes = None, None
    for line in lines.splitlines():
        try:
            doc = orjson.loads(line)
            k = len(doc["id"])
            t = doc["t"]  # one time for the line, or one per request
            ts = np.full(k, t, dtype=np.int64) if type(t) is int else np.asarray(t, np.int64)
            rows = sum(doc["n"])
            if ts.shape != (k,) or not len(doc["p"]) == len(doc["n"]) == len(doc["wp"]) == k:
                raise ValueError("its per-request fields differ in length")
            if not all(type(v) is str for v in doc["id"] + doc["p"]):
                raise ValueError("an id or protocol is not a string")
            x = np.frombuffer(base64.b64decode(doc["x"]), dtype="<f8")
            f = int(doc["f"])
            if width is not None and f != width:
                raise ValueError(f"{f} inputs per row where earlier lines have {width}")
            x = x.reshape(rows, f)
            if "yd" in doc:
                y: Any = np.frombuffer(base64.b64decode(doc["y"]), dtype=np.dtype(doc["yd"]))
            else:
                y = list(doc["y"])
            if len(y) != rows:
                raise ValueError(f"{len(y)} predictions for {rows} rows")
            pp = None
            if doc.get("pp") is not None:
                c = int(doc["c"])
                if classes is not None and c != classes:
                    raise ValueError(
                        f"{c} probabilities per row where earlier lines have {classes}"
                    )
                pp = np.frombuffer(base64.b64decode(doc["pp"]), dtype="<f8").reshape(rows, c)
                classes = c
        except (
            orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OverflowError
        ) as err:  # fmt: skip
            log.warning("capture writer: a malformed batch line was skipped (%s)", err)
            continue
        width = f
        ids += doc["id"]
        protocols += doc["p"]
        ns += doc["n"]
        wants += doc["wp"]
        times.append(ts)
        xs.append(x)
        ys.append(y)
        if pp is not None:
            pps.append(pp)
        has_pp += [pp is not None] * len(doc["id"])
    counts = np.asarray(ns, dtype=np.int64)
    offsets = _offsets(counts)
    f = width or 0
    x = np.concatenate(xs) if xs else np.zeros((0, f))
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(len(x) + 1, dtype=np.int32) * f), pa.array(x.ravel(), pa.float64())
    )
    pp_type = pa.list_(pa.list_(pa.float64()))
    if pps:
        # Rows of lines without probabilities take no room; a request that did not
        # ask for them (or whose line has none) gets null.
        c = classes or 0
        pp_flat = np.concatenate(pps)
        pp_rows = pa.ListArray.from_arrays(
            pa.array(np.arange(len(pp_flat) + 1, dtype=np.int32) * c),
            pa.array(pp_flat.ravel(), pa.float64()),
        )
        room = np.where(has_pp, counts, 0)
        pp_offsets = _offsets(room)
        keep = np.asarray(wants, dtype=bool) & np.asarray(has_pp, dtype=bool)
        proba = pa.ListArray.from_arrays(pp_offsets, pp_rows, mask=pa.array(~keep))
    else:
        proba = pa.nulls(len(ids), pp_type)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "t": pa.array(np.concatenate(times) if times else np.zeros(0, np.int64), pa.int64()),
            "p": pa.array(protocols, pa.string()),
            "n": pa.array(counts, pa.int64()),
            "x": pa.ListArray.from_arrays(offsets, inner),
            "pp": proba,
            "y": pa.ListArray.from_arrays(offsets, _predictions(ys)),
        }
    )


def _offsets(counts: Any) -> Any:
    """Arrow list offsets of lists ``counts`` long."""
    import pyarrow as pa

    return pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))


def _predictions(parts: list[Any]) -> Any:
    """The lines' predictions as one Arrow array: numbers or booleans as they are
    when every line has the same kind, else labels (strings)."""
    import pyarrow as pa

    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    if len(arrays) == len(parts) and len({a.dtype for a in arrays}) <= 1:
        if not arrays:
            return pa.array([], pa.int64())
        return pa.array(np.concatenate(arrays))
    return _labels([v for p in parts for v in (p.tolist() if isinstance(p, np.ndarray) else p)])


def block_hours(blocks: list[Any]) -> dict[int, Any]:
    """The records of a flush's blocks, one table per hour (in order of first
    appearance), each in arrival order."""
    import pyarrow as pa

    try:
        table = pa.concat_tables(blocks, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Predictions of one kind in some blocks, of another in others: as strings.
        blocks = [
            b.set_column(b.schema.get_field_index("y"), "y", _str_list(b["y"])) for b in blocks
        ]
        table = pa.concat_tables(blocks, promote_options="permissive")
    hours = table.column("t").to_numpy() // NS_PER_HOUR
    if hours.min() == hours.max():  # the common case: a flush within one hour
        return {int(hours[0]): table}
    found, first = np.unique(hours, return_index=True)
    return {int(h): table.filter(pa.array(hours == h)) for h in found[np.argsort(first)]}


def _str_list(column: Any) -> Any:
    import pyarrow as pa

    return column.cast(pa.list_(pa.string()))


def encode_block(table: Any, spec: Spec) -> bytes:
    """One Parquet file of whole records from a parsed block: the same columns, types
    and values as ``encode`` writes from the records one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.combine_chunks()
    counts = table.column("n").to_numpy().astype(np.int32)
    offsets = _offsets(counts)

    def listed(values: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, values)

    kept = spec["kept"]
    inputs = []
    if kept:
        flat = pc.list_flatten(pc.list_flatten(table.column("x"))).to_numpy(zero_copy_only=False)
        # NaN (a missing value) is stored as null; infinities never pass validation.
        matrix = np.asarray(flat, dtype=np.float64).reshape(-1, len(kept))
        if matrix.shape[0] != int(counts.sum()):
            raise ValueError("captured inputs do not match their row counts")
        for j, name in enumerate(kept):
            values = pa.array(matrix[:, j], type=pa.float64(), from_pandas=True)
            inputs.append((name, listed(values)))
    preds = pc.list_flatten(table.column("y")).combine_chunks()
    t = preds.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        preds = preds.cast(pa.string())
    outputs: list[tuple[str, Any]] = [("predict", listed(preds))]
    pp = table.column("pp")
    if pp.null_count < len(pp):
        outputs.append(("predict_proba", pp.combine_chunks()))
    n = table.num_rows
    cols: dict[str, Any] = {
        "id": table.column("id").combine_chunks(),
        "time": table.column("t").combine_chunks().cast(pa.timestamp("ns", tz="UTC")),
        "modelversion": pa.array([spec["modelversion"]] * n, type=pa.string()),
        "protocol": table.column("p").combine_chunks(),
        "rows": pa.array(counts, type=pa.int32()),
    }
    return _parquet(cols, inputs, outputs)


def encode(recs: Sequence[Mapping[str, Any]], spec: Spec) -> bytes:
    """One Parquet file of whole records, from records as the server sent them (the
    path of signatures with non-numeric inputs)."""
    import pyarrow as pa

    counts = np.array([r["n"] for r in recs], dtype=np.int32)
    offsets = _offsets(counts)

    def listed(values: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, values)

    inputs = []
    kept, types = spec["kept"], spec["types"]
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
    return _parquet(cols, inputs, outputs)


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


def _parquet(cols: dict[str, Any], inputs: list[Any], outputs: list[Any]) -> bytes:
    """Both encoders' last step: inputs and outputs as struct columns, zstd Parquet."""
    import pyarrow as pa  # in the writer child only, like the encoders' own imports
    import pyarrow.parquet as pq

    if inputs:
        cols["inputs"] = pa.StructArray.from_arrays([a for _, a in inputs], [n for n, _ in inputs])
    cols["outputs"] = pa.StructArray.from_arrays([a for _, a in outputs], [n for n, _ in outputs])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()

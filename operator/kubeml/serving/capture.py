"""Request capture: a sampled share of requests and their responses, written to S3
as Parquet in batches, partitioned by model, version and hour.

Capture must never slow or fail a request. The predict worker holds the sampled
requests of one predict call as they are (kept fields only: dropped fields never
leave the server) in a bounded buffer, before any of their answers is sent; each
feed of the writer's pipe makes one frame of all that is held (the matrices as raw
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
            # where the batches held become one frame (``held_frame``): the matrices'
            # bytes, the ids and about 64 bytes of header per request.
            x = batch.rows if self._all_kept else batch.rows[:, self.kept_idx]
            n = len(batch.ids)
            size = x.nbytes + batch.pred.nbytes + (0 if batch.proba is None else batch.proba.nbytes)
            item = batch if self._all_kept else batch._replace(rows=x)
            size += 64 * n + sum(map(len, batch.ids))
            held = self.channel.hold(item, n, size, held_frame)
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


def held_frame(batches: Sequence[Batch]) -> bytes:
    """The batches held since the last feed (kept inputs only) as one frame for the
    writer: a JSON header with the per-request fields as one list per batch (ids,
    protocols, rows, whether probabilities were asked for; one time per batch), then
    the matrices' raw bytes one after another (inputs, then predictions, then the
    probabilities of the batches that computed them), as numpy holds them.

    Why not one JSON document: the feed runs on the predict worker while a batch's
    clients wait for it, and every microsecond it takes is in their latency. With
    one JSON line per feed (flattened lists, concatenated matrices in base64) a feed
    of about 240 records took 237-262 µs in the server at 32 connections; with this
    frame, 147-152 µs (encoding warm: 49 against 17 µs; a quarter fewer bytes;
    bench/README.md). Class labels (predictions that are not numbers or booleans)
    travel in the header, as JSON lists."""
    xs = [np.ascontiguousarray(b.rows, dtype=np.float64) for b in batches]
    widths = {x.shape[1] for x in xs}
    if len(widths) != 1:
        raise ValueError(f"batches with {sorted(widths)} inputs per row")
    head: dict[str, Any] = {
        "id": [b.ids for b in batches],
        "p": [b.protocols for b in batches],
        "n": [b.ns for b in batches],
        "wp": [b.want_proba for b in batches],
        "t": [b.time_ns for b in batches],
        "f": widths.pop(),
    }
    parts: list[Any] = xs
    preds = [b.pred for b in batches]
    kinds = {p.dtype for p in preds}
    wire = _wire_dtype(preds[0].dtype) if len(kinds) == 1 else None
    if wire is not None:
        head["yd"] = wire.str
        parts += [np.ascontiguousarray(p, dtype=wire) for p in preds]
    else:  # labels, or numbers in some batches and labels in others: as labels
        head["y"] = preds
    widths = {b.proba.shape[1] for b in batches if b.proba is not None}
    if len(widths) > 1:
        raise ValueError(f"batches with {sorted(widths)} probabilities per row")
    if widths:
        head["c"] = widths.pop()
        head["pb"] = [b.proba is not None for b in batches]
        parts += [np.ascontiguousarray(b.proba, np.float64) for b in batches if b.proba is not None]
    encoded = orjson.dumps(head, default=_plain, option=_NUMPY)
    return b"".join([len(encoded).to_bytes(4, "little"), encoded, *parts])


# What predictions travel as raw bytes: the types Arrow reads from numpy as they are.
_RAW_PREDICTIONS = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
)


def _wire_dtype(dtype: np.dtype[Any]) -> np.dtype[Any] | None:
    """The little-endian type predictions of ``dtype`` travel as, raw; None for labels
    (other floats, such as float16 or longdouble, travel as float64)."""
    if dtype.kind not in "biuf":
        return None
    little = dtype.newbyteorder("<")
    if little.str in _RAW_PREDICTIONS:
        return little
    return np.dtype("<f8") if dtype.kind == "f" else None


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

    def take(self, writer: BatchWriter[Any], spec: Spec, payloads: Sequence[bytes]) -> int:
        width = int(spec["width"])
        if not spec["numeric"]:
            return offer_records(writer, payloads, lambda rec: int(rec["n"]) * width)
        block = parse_frames(payloads, len(spec["kept"]))
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
            frame = held_frame([Batch(["warm-up"], ["v2"], [1], [False], x, y, None, 0)])
            encode_block(parse_frames([frame]), spec)
        else:
            rec = {"id": "warm-up", "t": 0, "p": "v2", "n": 1, "y": [0], "pp": None}
            encode([{**rec, "x": [[None] for _ in range(width)]}], spec)


CAPTURE = _CaptureKind()


class _Frame(NamedTuple):
    """One frame's records, read and checked."""

    ids: list[str]
    protocols: list[str]
    ns: list[int]
    wants: list[bool]
    times: np.ndarray
    x: np.ndarray
    y: Any  # an array of numbers or booleans, or a list of labels
    pp: np.ndarray | None
    has_pp: np.ndarray  # per request


def _read_frame(frame: bytes, width: int | None, classes: int | None) -> _Frame:
    """A ``held_frame``, checked: every length agrees with every other and with the
    frame's size (ValueError and friends otherwise)."""
    size = int.from_bytes(frame[:4], "little")
    head = orjson.loads(frame[4 : 4 + size])
    pos = 4 + size
    ids_b, prot_b, ns_b, wp_b, t_b = (head[k] for k in ("id", "p", "n", "wp", "t"))
    per_batch = [len(i) for i in ids_b]
    batches = len(per_batch)
    if not len(prot_b) == len(ns_b) == len(wp_b) == len(t_b) == batches:
        raise ValueError("its per-batch fields differ in length")
    for fields in (prot_b, ns_b, wp_b):
        if [len(v) for v in fields] != per_batch:
            raise ValueError("its per-request fields differ in length")
    ids, protocols = list(chain.from_iterable(ids_b)), list(chain.from_iterable(prot_b))
    ns, wants = list(chain.from_iterable(ns_b)), list(chain.from_iterable(wp_b))
    if not all(type(v) is str for v in chain(ids, protocols)):
        raise ValueError("an id or protocol is not a string")
    if not all(type(v) is int and v >= 0 for v in chain(ns, t_b)):
        raise ValueError("a row count or time is not a whole number")
    if not all(type(v) is bool for v in wants):
        raise ValueError("a want-probabilities flag is not a boolean")
    batch_rows = [sum(n) for n in ns_b]
    rows = sum(batch_rows)
    f = head["f"]
    if type(f) is not int or f < 0:
        raise ValueError(f"{f!r} inputs per row")
    if width is not None and f != width:
        raise ValueError(f"{f} inputs per row where earlier frames have {width}")
    x = np.frombuffer(frame, "<f8", rows * f, pos).reshape(rows, f)
    pos += x.nbytes
    y: Any
    if "yd" in head:
        if head["yd"] not in _RAW_PREDICTIONS:
            raise ValueError(f"predictions of type {head['yd']!r}")
        dtype = np.dtype(head["yd"])
        y = np.frombuffer(frame, dtype, rows, pos)
        pos += y.nbytes
    else:
        y = list(chain.from_iterable(head["y"]))
        if len(y) != rows:
            raise ValueError(f"{len(y)} predictions for {rows} rows")
    pp = None
    pb = [False] * batches
    if "c" in head:
        c, pb = head["c"], head["pb"]
        if type(c) is not int or c < 0:
            raise ValueError(f"{c!r} probabilities per row")
        if classes is not None and c != classes:
            raise ValueError(f"{c} probabilities per row where earlier frames have {classes}")
        if len(pb) != batches or not all(type(v) is bool for v in pb):
            raise ValueError("its per-batch probability flags do not match its batches")
        pp_rows = sum(r for r, has in zip(batch_rows, pb, strict=True) if has)
        pp = np.frombuffer(frame, "<f8", pp_rows * c, pos).reshape(pp_rows, c)
        pos += pp.nbytes
    if pos != len(frame):
        raise ValueError(f"it is {len(frame)} bytes where its header describes {pos}")
    return _Frame(
        ids=ids,
        protocols=protocols,
        ns=ns,
        wants=wants,
        times=np.repeat(np.asarray(t_b, np.int64), per_batch),
        x=x,
        y=y,
        pp=pp,
        has_pp=np.repeat(np.asarray(pb, dtype=bool), per_batch),
    )


def parse_frames(frames: Sequence[bytes], width: int | None = None) -> Any:
    """An Arrow table of the records (one row per request) in the frames of a numeric
    signature (``held_frame``): a JSON decode of each header, the matrices read with
    numpy in place, the split into requests done in Arrow (no Python object per
    record). ``width``: the inputs per row (the kept features); None takes the first
    frame's. A frame that cannot be read is skipped and logged."""
    import pyarrow as pa

    read: list[_Frame] = []
    classes = None
    for frame in frames:
        try:
            got = _read_frame(frame, width, classes)
        except (
            orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OverflowError
        ) as err:  # fmt: skip
            log.warning("capture writer: a malformed frame was skipped (%s)", err)
            continue
        read.append(got)
        width = got.x.shape[1]
        if got.pp is not None:
            classes = got.pp.shape[1]
    ids = list(chain.from_iterable(r.ids for r in read))
    counts = np.fromiter(chain.from_iterable(r.ns for r in read), dtype=np.int64)
    offsets = _offsets(counts)
    f = width or 0
    x = np.concatenate([r.x for r in read]) if read else np.zeros((0, f))
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(len(x) + 1, dtype=np.int32) * f), pa.array(x.ravel(), pa.float64())
    )
    pp_type = pa.list_(pa.list_(pa.float64()))
    pps = [r.pp for r in read if r.pp is not None]
    if pps:
        # Rows of batches without probabilities take no room; a request that did not
        # ask for them (or whose batch has none) gets null.
        c = classes or 0
        pp_flat = np.concatenate(pps)
        pp_rows = pa.ListArray.from_arrays(
            pa.array(np.arange(len(pp_flat) + 1, dtype=np.int32) * c),
            pa.array(pp_flat.ravel(), pa.float64()),
        )
        has_pp = np.concatenate([r.has_pp for r in read])
        pp_offsets = _offsets(np.where(has_pp, counts, 0))
        wants = np.fromiter(chain.from_iterable(r.wants for r in read), dtype=bool)
        proba = pa.ListArray.from_arrays(pp_offsets, pp_rows, mask=pa.array(~(wants & has_pp)))
    else:
        proba = pa.nulls(len(ids), pp_type)
    times = np.concatenate([r.times for r in read]) if read else np.zeros(0, np.int64)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "t": pa.array(times, pa.int64()),
            "p": pa.array(list(chain.from_iterable(r.protocols for r in read)), pa.string()),
            "n": pa.array(counts, pa.int64()),
            "x": pa.ListArray.from_arrays(offsets, inner),
            "pp": proba,
            "y": pa.ListArray.from_arrays(offsets, _predictions([r.y for r in read])),
        }
    )


def _offsets(counts: Any) -> Any:
    """Arrow list offsets of lists ``counts`` long."""
    import pyarrow as pa

    return pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))


def _predictions(parts: list[Any]) -> Any:
    """The frames' predictions as one Arrow array: numbers or booleans as they are
    when every frame has the same type, else labels (strings)."""
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

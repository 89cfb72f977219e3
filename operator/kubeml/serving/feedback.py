"""Ground truth for earlier requests, and the live quality it measures.

``POST /v2/models/<model>/feedback`` (a KubeML extension beside the v2 paths) takes
``{"id": "...", "truth": <value or one value per row>}`` or ``{"feedback": [ ... ]}``.
Truth is validated against the signature (a class label of a classifier, a finite
number for a regressor) and its length against the request's rows. Ids this server
still remembers are scored into the live window; unknown ones (predicted by another
replica, expired from memory, or already labelled) are reported in the answer. Every
accepted entry is written to S3 beside the captures, scored or not: the Dataset join
does not need the server's memory.

Live quality is over the last ``window`` labelled rows (accuracy for a classifier,
MAE and RMSE for a regressor), exported per model and version.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

import numpy as np
import orjson

from .errors import RequestError, bad_request

MAX_ENTRIES = 10_000
MAX_UNKNOWN_SHOWN = 1000
DEFAULT_WINDOW = 1000
DEFAULT_REMEMBER_ROWS = 200_000


@dataclass(frozen=True)
class FeedbackConfig:
    prefix_uri: str  # s3://bucket/namespaces/<ns>/feedback/<deployment>/
    window: int = DEFAULT_WINDOW
    remember_rows: int = DEFAULT_REMEMBER_ROWS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedbackConfig | None:
        uri = env.get("KUBEML_FEEDBACK_URI", "").strip()
        if not uri:
            return None

        def count(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 1 <= int(raw) <= 10_000_000:
                raise ValueError(f"${name}={raw!r} is not an integer in [1, 10000000]")
            return int(raw)

        return cls(
            prefix_uri=uri if uri.endswith("/") else uri + "/",
            window=count("KUBEML_LIVE_WINDOW", DEFAULT_WINDOW),
            remember_rows=count("KUBEML_FEEDBACK_REMEMBER_ROWS", DEFAULT_REMEMBER_ROWS),
        )


class Entry(NamedTuple):
    id: str
    truth: list[Any]  # str labels or float targets


def parse(body: bytes, task: str, classes: Sequence[str] | None, max_values: int) -> list[Entry]:
    """The entries of a feedback body, all valid, or a 400 naming the first bad one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"malformed JSON: {err}") from err
    if not isinstance(doc, dict):
        raise bad_request("feedback must be a JSON object: {id, truth} or {feedback: [...]}")
    if "feedback" in doc:
        items = doc["feedback"]
        if not isinstance(items, list) or not items:
            raise bad_request("feedback must be a non-empty list of {id, truth}")
        if len(items) > MAX_ENTRIES:
            raise RequestError(413, f"more than {MAX_ENTRIES} feedback entries in one request")
    else:
        items = [doc]
    labels = frozenset(classes) if classes is not None else None
    out: list[Entry] = []
    seen: set[str] = set()
    values = 0
    for i, item in enumerate(items):
        where = f"feedback[{i}]" if "feedback" in doc else "feedback"
        if not isinstance(item, dict) or set(item) - {"id", "truth"}:
            raise bad_request(f"{where}: expected an object with id and truth only")
        rid = item.get("id")
        if not isinstance(rid, str) or not rid or len(rid) > 256:
            raise bad_request(f"{where}: id must be a request id (1 to 256 characters)")
        if rid in seen:
            raise bad_request(f"{where}: id {rid!r} appears more than once")
        seen.add(rid)
        if "truth" not in item:
            raise bad_request(f"{where}: no truth")
        raw = item["truth"]
        truth = raw if isinstance(raw, list) else [raw]
        if not truth:
            raise bad_request(f"{where}: truth is empty")
        values += len(truth)
        if values > max_values:
            raise RequestError(413, f"more than {max_values} truth values in one request")
        out.append(Entry(rid, [_value(v, task, labels, f"{where}.truth") for v in truth]))
    return out


def _value(v: Any, task: str, labels: frozenset[str] | None, where: str) -> Any:
    if task == "classification":
        # Labels travel as strings (as the signature's classes do); 1 and "1" agree.
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise bad_request(f"{where}: a class label must be a string or an integer")
        label = str(v)
        if labels is not None and label not in labels:
            shown = ", ".join(sorted(labels)[:20])
            raise bad_request(f"{where}: {label!r} is not one of the model's classes ({shown})")
        return label
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise bad_request(f"{where}: a regression target must be a finite number")
    return float(v)


class Recent:
    """Predictions of recent requests by id, bounded by rows (the oldest predict calls
    forgotten first).

    The predict worker remembers a predict call's requests together, before their
    answers leave (feedback sent the moment an answer arrives finds it); the loop
    looks them up and forgets them, hence the lock. Remembered one by one on the loop
    (an ordered-dict move and a view of its predictions each), requests cost about
    2 µs of the loop's time apiece, the largest part of the server's own capture cost
    at 32 connections.

    Out of the garbage collector's sight: at the default bound this holds 200,000
    requests, and a dict of tuples (or calls holding lists) is walked, entry by entry,
    by every full collection, which then held the GIL for up to 12 ms at 32
    connections, and made collections twice as frequent. An id maps to an int (its
    call's number and its place in the call), which the collector never tracks, and a
    call is a tuple of untracked things (ids as a tuple of strings, numpy arrays),
    which the collector stops tracking at its first pass."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        # Rows of the predict calls held (their memory): a labelled request's rows go
        # with its call. The newest call is always held, even when larger.
        self.rows = 0
        self._lock = threading.Lock()
        # id -> call number << 32 | the request's place in its call
        self._where: dict[str, int] = {}
        # (ids, predictions, row bounds: request i is rows bounds[i]:bounds[i + 1]);
        # _calls[k] is call number _first + k
        self._calls: deque[tuple[tuple[str, ...], np.ndarray, tuple[int, ...]]] = deque()
        self._first = 0

    def remember(self, ids: Sequence[str], ns: Sequence[int], pred: np.ndarray) -> None:
        """One predict call's requests: ``ids[i]`` was answered the next ``ns[i]`` rows
        of ``pred``. A client reusing its id: the latest prediction counts."""
        ids = tuple(ids)
        bounds = tuple(accumulate(ns, initial=0))
        if len(bounds) != len(ids) + 1:
            raise ValueError(f"{len(ids)} ids for {len(bounds) - 1} row counts")
        with self._lock:
            where = self._where
            base = (self._first + len(self._calls)) << _CALL_SHIFT
            for i, rid in enumerate(ids):
                where[rid] = base | i
            self._calls.append((ids, pred, bounds))
            self.rows += len(pred)
            while self.rows > self.max_rows and len(self._calls) > 1:
                old_ids, old, _ = self._calls.popleft()
                old_call = self._first
                self._first += 1
                self.rows -= len(old)
                for rid in old_ids:
                    code = where.get(rid)
                    if code is not None and code >> _CALL_SHIFT == old_call:  # not reused
                        del where[rid]

    def _lookup(self, rid: str) -> np.ndarray | None:
        """(under the lock)"""
        code = self._where.get(rid)
        if code is None:
            return None
        _, pred, bounds = self._calls[(code >> _CALL_SHIFT) - self._first]
        i = code & _PLACE
        return pred[bounds[i] : bounds[i + 1]]

    def get(self, rid: str) -> np.ndarray | None:
        with self._lock:
            return self._lookup(rid)

    def forget(self, rid: str, pred: np.ndarray | None = None) -> None:
        """Forget ``rid``; with ``pred`` (what ``get`` gave), only if that is still its
        prediction: a client may have reused the id since."""
        with self._lock:
            now = self._lookup(rid)
            if now is None:
                return
            if pred is None or np.may_share_memory(pred, now):
                del self._where[rid]

    def __len__(self) -> int:
        return len(self._where)


_CALL_SHIFT = 32
_PLACE = (1 << _CALL_SHIFT) - 1


class LiveQuality:
    """Accuracy, or MAE and RMSE, over the last ``window`` labelled rows."""

    def __init__(self, task: str, window: int) -> None:
        self.task = task
        # 1/0 per row of a classifier, signed errors of a regressor
        self._scores: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()  # scrapes read from another thread

    def add(self, pred: np.ndarray, truth: Sequence[Any]) -> None:
        with self._lock:
            for p, t in zip(pred.tolist(), truth, strict=True):
                if self.task == "classification":
                    self._scores.append(1.0 if _label(p) == t else 0.0)
                else:
                    self._scores.append(float(p) - float(t))

    def snapshot(self) -> dict[str, float]:
        """The gauges now; empty before the first labelled row."""
        with self._lock:
            n = len(self._scores)
            if n == 0:
                return {}
            # Computed at scrape time (seconds apart), not per labelled row.
            scores = list(self._scores)
        if self.task == "classification":
            return {"rows": float(n), "accuracy": sum(scores) / n}
        return {
            "rows": float(n),
            "mae": sum(abs(s) for s in scores) / n,
            "rmse": math.sqrt(sum(s * s for s in scores) / n),
        }


def _label(p: Any) -> str:
    # Float classes (1.0) name the same label as the integer the signature lists.
    if isinstance(p, float) and p.is_integer():
        return str(int(p))
    return str(p)


def encode(records: Sequence[Mapping[str, Any]], task: str) -> bytes:
    """One Parquet file of feedback records as the server sent them (in the writer)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    value = pa.string() if task == "classification" else pa.float64()
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in records], type=pa.string()),
            "time": pa.array([r["t"] for r in records], type=pa.timestamp("ns", tz="UTC")),
            "rows": pa.array([len(r["truth"]) for r in records], type=pa.int32()),
            "truth": pa.array([r["truth"] for r in records], type=pa.list_(value)),
            "scored": pa.array([r["scored"] for r in records], type=pa.bool_()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class _FeedbackKind:
    def writer(self, spec: Mapping[str, Any], sink: Any, stats: Any) -> Any:
        from .writer import batch_writer

        task = spec["task"]
        return batch_writer("feedback", spec, sink, stats, lambda recs: encode(recs, task))

    def take(self, writer: Any, spec: Mapping[str, Any], payloads: Sequence[bytes]) -> int:
        from .writer import offer_records

        return offer_records(writer, payloads, lambda rec: len(rec["truth"]))

    def warm(self, spec: Mapping[str, Any]) -> None:
        encode([{"id": "warm-up", "t": 0, "truth": [], "scored": False}], spec["task"])


FEEDBACK = _FeedbackKind()


class Feedback:
    """What the server holds for feedback: recent predictions, the live window, and
    the writer of feedback records."""

    def __init__(
        self,
        cfg: FeedbackConfig,
        *,
        task: str,
        classes: Sequence[str] | None,
        model: str,
        version: int,
        writer_id: str,
        stats: Any,
        max_values: int,
        sink: Any = None,
        process: Any = None,
    ) -> None:
        from .capture import partition, split_prefix
        from .writer import LocalChannel, PipeChannel

        self.cfg = cfg
        self.task = task
        self.classes = classes
        self.max_values = max_values
        self.recent = Recent(cfg.remember_rows)
        self.live = LiveQuality(task, cfg.window)
        bucket, prefix = split_prefix(cfg.prefix_uri)
        self.spec: dict[str, Any] = {
            "bucket": bucket,
            "key_prefix": f"{prefix}{partition(model, version)}",
            "writer_id": writer_id,
            "max_values": cfg.remember_rows,
            "flush_seconds": 5.0,
            "batch_records": 20_000,
            "task": task,
        }
        self.channel: LocalChannel | PipeChannel
        if process is not None:
            self.channel = process.channel(b"f", self.spec, stats)
        else:
            if sink is None:
                raise ValueError("feedback needs a sink or a writer process")
            self.channel = LocalChannel(b"f", self.spec, sink, stats)

    def apply(self, entries: Sequence[Entry], now_ns: int) -> tuple[int, list[str]]:
        """Score the entries this server remembers: (scored, unknown ids). Lengths are
        checked for all entries before any is scored: a 400 changes nothing."""
        known = []
        for i, e in enumerate(entries):
            pred = self.recent.get(e.id)
            if pred is not None and len(pred) != len(e.truth):
                raise bad_request(
                    f"feedback[{i}]: request {e.id!r} had {len(pred)} rows, "
                    f"truth has {len(e.truth)} values"
                )
            known.append(pred)
        unknown = []
        for e, pred in zip(entries, known, strict=True):
            if pred is None:
                unknown.append(e.id)
            else:
                self.live.add(pred, e.truth)
                # Labelled once: a second feedback for it is reported, not scored again.
                self.recent.forget(e.id, pred)
            scored = pred is not None
            self.channel.send(
                orjson.dumps({"id": e.id, "t": now_ns, "truth": e.truth, "scored": scored})
            )
        return len(entries) - len(unknown), unknown

    def close(self, timeout: float) -> bool:
        return self.channel.close(timeout)

    def warm(self) -> None:
        """As Capture.warm: the first encode and client off the request path."""
        self.channel.warm()

"""The capture and feedback writers: batches of records to Parquet objects in S3, in a
child process.

Why a process: turning tens of thousands of records into Arrow columns, Parquet and a
signed PUT is a few hundred milliseconds of CPU, most of it holding the GIL. In the
server's process that work froze the event loop in slices of up to the switch
interval for its whole duration, and every request answered meanwhile waited: the
capture benchmark's p99 was 3.3x capture off on a quiet machine. Here the server's
share is small: a predict call's captured batch is held as it is (kept fields only,
so dropped fields never leave the server), and every ``FEED_SECONDS`` the predict
worker, as it starts a predict call, makes all it holds one frame and writes it to the
child's pipe (non-blocking); when no predict call comes, the event loop does.
boto3 and pyarrow never enter the server's memory.

Guarantees kept:
- a request never waits: the server's buffer is bounded (bytes), and a full one
  drops and counts (``buffer_full``); the child's own buffer is bounded (values)
  and drops and counts the same way when S3 is slower than traffic;
- a batch S3 refuses is dropped and counted (``write_failed``); so is what cannot
  reach a dead child, which is started again (at most every ``RESPAWN_SECONDS``);
- SIGTERM: the server drains, then ``close`` sends what it holds and closes the
  pipe; the child (which ignores SIGTERM: it stops on end of input, never before)
  writes everything it holds and exits.

The child's share is kept small too: it reads whatever the pipe holds at most every
``READ_SECONDS`` (sooner when the pipe would be half full by then) and hands each
kind's frames over together; captures of numeric signatures come one frame per feed
(not per predict call: the child's cost is mostly per frame) with their matrices as
raw bytes, read with numpy into an Arrow table that stays Arrow until written (no
Python object per record, no number parsed; bench/writer_cpu.py).

Wire: server -> child, frames: a kind byte, ``c`` (capture) or ``f`` (feedback), the
payload's length (4 bytes, little-endian), the payload: a record as JSON, or a numeric
capture frame holding every record held since the last feed (``capture.held_frame``);
child -> server, one JSON line per outcome
(``{"k": "c", "ok": n, "bytes": b}`` or ``{"k": "c", "drop": reason, "n": n}``),
which the server counts in its metrics.

    python -m kubeml.serving.writer    # specs in $KUBEML_WRITER_SPECS; records on stdin
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Generic, Protocol, TypeVar

import orjson

log = logging.getLogger("kubeml.serve.capture")
T = TypeVar("T")

HIVE_HOUR = "%Y-%m-%dT%H"
NS_PER_HOUR = 3_600_000_000_000
FEED_SECONDS = 0.05
# What a predict call has not fed by then (an idle server, feedback alone), the loop feeds.
IDLE_FEED_SECONDS = 0.25
PIPE_BYTES = 1 << 20
RESPAWN_SECONDS = 5.0
SPECS_ENV = "KUBEML_WRITER_SPECS"
# Below the server: the writer is background work, requests come first for the CPU.
NICENESS = 10
# The child reads the pipe at most this often (sooner when it would be half full).
READ_SECONDS = 0.5


class Sink(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def connect(self) -> None: ...


class Stats(Protocol):
    def captured(self, written: int, nbytes: int) -> None: ...
    def dropped(self, reason: str, n: int) -> None: ...


def by_hour(items: Sequence[T], time_ns: Callable[[T], int]) -> dict[int, list[T]]:
    """Items grouped by the hour of their time, hours in order of first appearance."""
    hours: dict[int, list[T]] = {}
    for item in items:
        hours.setdefault(time_ns(item) // NS_PER_HOUR, []).append(item)
    return hours


class BatchWriter(Generic[T]):
    """A bounded buffer drained by a writer thread into Parquet objects, one per hour
    of records per flush. Shared by captures and feedback; runs in the writer child
    (and in-process in unit tests).

    An item is one record, or a block of records (``offer_block``: an Arrow table
    parsed from many frames at once). ``group`` splits a flushed batch of items into
    hours (numbered since the epoch; in order of first appearance), ``encode`` turns
    one hour's part (anything with a ``len``: its records) into a Parquet object."""

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
        encode: Callable[[Any], bytes],
        group: Callable[[list[T]], Mapping[int, Sized]],
        sink: Sink,
        stats: Stats,
    ) -> None:
        self.name = name
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.writer_id = writer_id
        self.max_values = max_values
        self.flush_seconds = flush_seconds
        self.batch_records = batch_records
        self.encode = encode
        self.group = group
        self.sink = sink
        self.stats = stats
        self._lock = threading.Lock()
        self._pending: list[tuple[T, int, int]] = []  # (item, values, records)
        self._records = 0  # records held by _pending
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
                self._pending.append((item, cost, 1))
                self._values += cost
                self._records += 1
                many = self._records >= self.batch_records
        if full:
            self.stats.dropped("buffer_full", 1)
            return False
        if many:
            self._wake.set()
        return True

    def offer_block(
        self, block: T, costs: Sequence[int], select: Callable[[T, list[bool]], T]
    ) -> int:
        """Hold a block's records as ``offer`` would one by one (each that fits, in
        order; the others dropped and counted); ``select`` keeps a block's records by
        mask. Returns the records held."""
        n = len(costs)
        with self._lock:
            room = 0 if self._closing else self.max_values - self._values
            total = sum(costs)
            if total <= room:
                held, value = n, total
            else:  # the buffer is (nearly) full: the rare, slow path
                mask = []
                for cost in costs:
                    fits = cost <= room
                    room -= cost if fits else 0
                    mask.append(fits)
                held = sum(mask)
                value = sum(c for c, m in zip(costs, mask, strict=True) if m)
                if held:
                    block = select(block, mask)
            if held:
                self._pending.append((block, value, held))
                self._values += value
                self._records += held
            many = self._records >= self.batch_records
        if held < n:
            self.stats.dropped("buffer_full", n - held)
        if many:
            self._wake.set()
        return held

    @property
    def buffered(self) -> int:
        return self._records + self._writing

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
            self._writing, self._records = self._records, 0
        if batch:
            self._write([item for item, _, _ in batch], sum(n for _, _, n in batch))
        with self._lock:
            self._values -= sum(cost for _, cost, _ in batch)
            self._writing = 0

    def _write(self, batch: list[T], n: int) -> None:
        try:
            hours = self.group(batch)
        except Exception as err:  # records the writer cannot read: drop, count, go on
            log.warning("%s: %d records not written: %s", self.name, n, err)
            self.stats.dropped("write_failed", n)
            return
        for hour_n, items in hours.items():
            hour = datetime.fromtimestamp(hour_n * 3600, UTC).strftime(HIVE_HOUR)
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


class S3Sink:
    """PUTs through a boto3 client made on first use. Few, short attempts: a writer
    stuck on a dead endpoint is a writer not draining the buffer."""

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


# -- what each kind of record needs -----------------------------------------------------

Spec = Mapping[str, Any]


class Kind(Protocol):
    def writer(self, spec: Spec, sink: Sink, stats: Stats) -> BatchWriter[Any]: ...
    def take(self, writer: BatchWriter[Any], spec: Spec, payloads: Sequence[bytes]) -> int:
        """Offer the records of ``payloads`` (one frame's payload each, in order);
        returns how many the writer holds."""
        ...

    def warm(self, spec: Spec) -> None: ...


def offer_records(
    writer: BatchWriter[Any], payloads: Sequence[bytes], cost: Callable[[Any], int]
) -> int:
    """One JSON record per payload, decoded here (one that is not JSON is skipped)."""
    held = 0
    for payload in payloads:
        try:
            rec = orjson.loads(payload)
            values = cost(rec)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("%s writer: a malformed record was skipped", writer.name)
            continue
        held += writer.offer(rec, values)
    return held


HEADER = 5  # a frame's kind byte and payload length


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame of the pipe (tests, benchmarks; the server appends in place)."""
    return kind + len(payload).to_bytes(4, "little") + payload


def split_frames(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """The whole frames at the start of ``data`` as (kind, payload), and where the
    first incomplete one starts."""
    out = []
    pos, size = 0, len(data)
    while pos + HEADER <= size:
        end = pos + HEADER + int.from_bytes(data[pos + 1 : pos + HEADER], "little")
        if end > size:
            break
        out.append((data[pos : pos + 1], data[pos + HEADER : end]))
        pos = end
    return out, pos


def kinds() -> dict[bytes, Kind]:
    from .capture import CAPTURE
    from .feedback import FEEDBACK

    return {b"c": CAPTURE, b"f": FEEDBACK}


def batch_writer(
    name: str, spec: Spec, sink: Sink, stats: Stats, encode: Callable[[Sequence[Any]], bytes]
) -> BatchWriter[Any]:
    """A BatchWriter of decoded records (dicts with their time in ``t``) from a spec."""
    return BatchWriter(
        name=name,
        bucket=spec["bucket"],
        key_prefix=spec["key_prefix"],
        writer_id=spec["writer_id"],
        max_values=spec["max_values"],
        flush_seconds=spec["flush_seconds"],
        batch_records=spec["batch_records"],
        encode=encode,
        group=lambda recs: by_hour(recs, lambda rec: int(rec["t"])),
        sink=sink,
        stats=stats,
    )


# -- the server's side ------------------------------------------------------------------


# Items held by the server until the next feed, to one frame's payload.
Encode = Callable[[list[Any]], bytes]


@dataclass
class _Held:
    """A kind's items held since the last feed, and how they become one frame."""

    encode: Encode
    items: list[Any] = field(default_factory=list)
    records: int = 0


class Channel(Protocol):
    """Where a kind of record goes: one JSON record at a time (``send``), or items
    held until the next feed makes them one frame (``hold``)."""

    def send(self, line: bytes, records: int = 1) -> bool: ...
    def hold(self, item: Any, records: int, nbytes: int, encode: Encode) -> bool: ...
    def flush(self) -> None: ...
    def close(self, timeout: float) -> bool: ...


class LocalChannel:
    """A BatchWriter in this process (unit tests): the same payloads, decoded here."""

    def __init__(self, kind: bytes, spec: Spec, sink: Sink, stats: Stats) -> None:
        self.kind = kinds()[kind]
        self.spec = spec
        self.writer = self.kind.writer(spec, sink, stats)

    def send(self, line: bytes, records: int = 1) -> bool:
        return self.kind.take(self.writer, self.spec, [line]) > 0

    def hold(self, item: Any, records: int, nbytes: int, encode: Encode) -> bool:
        return self.send(encode([item]), records)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, timeout: float) -> bool:
        return self.writer.close(timeout)

    def warm(self) -> None:
        self.kind.warm(self.spec)
        self.writer.sink.connect()


class PipeChannel:
    def __init__(self, proc: WriterProcess, kind: bytes) -> None:
        self.proc = proc
        self.kind = kind

    def send(self, line: bytes, records: int = 1) -> bool:
        return self.proc.send(self.kind, line, records)

    def hold(self, item: Any, records: int, nbytes: int, encode: Encode) -> bool:
        return self.proc.hold(self.kind, item, records, nbytes, encode)

    def flush(self) -> None:
        self.proc.flush()

    def close(self, timeout: float) -> bool:
        return self.proc.close(timeout)

    def warm(self) -> None:
        pass  # the runner starts the process


class WriterProcess:
    """The server's end of the writer child: a bounded buffer of frames, written to the
    child's stdin (non-blocking, once per ``FEED_SECONDS``) by the predict worker as a
    predict call starts (``feed_due``) or, when none comes, by the event loop, and a
    reader thread counting the outcomes the child reports. No thread of this process
    wakes per batch or per feed: each would take the GIL from the loop."""

    def __init__(self, max_bytes: int, argv: Sequence[str] | None = None) -> None:
        self.max_bytes = max_bytes
        self.argv = list(argv or [sys.executable, "-m", __name__])
        self.specs: dict[str, Spec] = {}
        self.stats: dict[bytes, Stats] = {}
        self._lock = threading.Lock()
        self._buf = bytearray()
        # (kind, records, bytes) of each frame in _buf, and how much of the first the
        # pipe has taken: what is lost when the child is, without reading _buf again.
        self._frames: deque[tuple[bytes, int, int]] = deque()
        self._taken = 0
        # Per kind: items held as they are (no encoding per predict call) until the
        # pipe is fed.
        self._held: dict[bytes, _Held] = {}
        self._held_bytes = 0
        self._scheduled = False
        self._fed = time.monotonic()  # the last feed
        self._closing = False
        self._result: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        # Set by the reader thread at the end of the child's output: the child is gone
        # (asking the process at every feed took 9 µs of the predict worker's time).
        self._gone = threading.Event()
        self._spawned = -RESPAWN_SECONDS

    def channel(self, kind: bytes, spec: Spec, stats: Stats) -> PipeChannel:
        self.specs[kind.decode()] = spec
        self.stats[kind] = stats
        return PipeChannel(self, kind)

    def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Start the child (it imports pyarrow and boto3 and makes its S3 client at
        once). ``loop``: the event loop that feeds what no predict call fed (``send``
        may be called from any thread); None (tests): timer threads do."""
        with self._lock:
            self._loop = loop
            if self._proc is None:
                self._spawn()

    def send(self, kind: bytes, line: bytes, records: int = 1) -> bool:
        """One frame (it may hold several records), or a counted drop. Called from
        the predict worker and the loop thread."""

        def add() -> None:
            self._append(kind, line, records)

        return self._admit(kind, records, len(line) + HEADER, add)

    def hold(self, kind: bytes, item: Any, records: int, nbytes: int, encode: Encode) -> bool:
        """Keep ``item`` as it is (``nbytes``: about its size in a frame) until the next
        feed, where every item held of a kind becomes one frame (``encode``): the
        writer's cost is mostly per frame, and one per predict call of a few
        requests made it several times the cost per record of one per feed.
        False (and counted) when the buffer is full."""

        def add() -> None:
            held = self._held.get(kind)
            if held is None:
                held = self._held[kind] = _Held(encode)
            held.items.append(item)
            held.records += records
            self._held_bytes += nbytes

        return self._admit(kind, records, nbytes, add)

    def _admit(self, kind: bytes, records: int, nbytes: int, add: Callable[[], None]) -> bool:
        """``add`` under the lock if the buffer (frames and held items) has room for
        ``nbytes`` more, and a feed scheduled; else the records are counted dropped."""
        with self._lock:
            used = len(self._buf) + self._held_bytes
            full = self._closing or used + nbytes > self.max_bytes
            if not full:
                add()
                schedule = not self._scheduled
                self._scheduled = True
        if full:
            self.stats[kind].dropped("buffer_full", records)
            return False
        if schedule:
            self._schedule()
        return True

    def _append(self, kind: bytes, payload: bytes, records: int) -> None:
        self._buf += kind
        self._buf += len(payload).to_bytes(4, "little")
        self._buf += payload
        self._frames.append((kind, records, HEADER + len(payload)))

    def _encode_held(self) -> None:
        """Every held item into the buffer, one frame per kind (under the lock)."""
        held, self._held, self._held_bytes = self._held, {}, 0
        for kind, h in held.items():
            try:
                payload = h.encode(h.items)
            except Exception:  # a bug in an encoder must not stop the server's feeding
                log.exception("capture: %d held records could not be encoded", h.records)
                self.stats[kind].dropped("write_failed", h.records)
                continue
            self._append(kind, payload, h.records)

    def _schedule(self) -> None:
        loop = self._loop
        if loop is not None:
            # send runs on the predict worker too: call_later from another thread
            # would neither be safe nor wake a loop idling in select.
            try:
                loop.call_soon_threadsafe(loop.call_later, IDLE_FEED_SECONDS, self._feed)
            except RuntimeError:  # the loop is closed: close() writes what is held
                with self._lock:
                    self._scheduled = False
        else:
            timer = threading.Timer(IDLE_FEED_SECONDS, self._feed)
            timer.daemon = True
            timer.start()

    def feed_due(self) -> None:
        """Feed the pipe if ``FEED_SECONDS`` have passed since the last feed; the predict
        worker calls this as it starts a predict call. Why then: every client of the
        batch waits for it, so the loop and the clients are idle. Fed by a timer of the
        loop instead, the feed fell anywhere, most often as the loop answered a batch
        and the clients sent the next, and the child, woken to read the frame, competed
        with both for two cores: a predict cycle overlapping a feed took 1.4 ms longer
        than the others (8.5 against 7.1 ms at 32 connections, bench/capture_bench.py);
        fed here, 0.8 ms. The child now reads on its own time (``pump``), not woken by
        a feed."""
        # Read without the lock: a stale view only moves the feed to the next call.
        if not (self._buf or self._held) or time.monotonic() - self._fed < FEED_SECONDS:
            return
        with self._lock:
            if not self._closing:
                self._write_some()

    def _feed(self) -> None:
        """The loop's feed, for what no predict call has fed (under load the predict
        worker feeds far more often than this runs, and this finds nothing to do)."""
        with self._lock:
            if self._closing:
                return
            if time.monotonic() - self._fed >= 2 * FEED_SECONDS:
                self._write_some()
            # A full pipe (the child behind) leaves the rest for the next feed.
            self._scheduled = bool(self._buf or self._held)
        if self._scheduled:
            self._schedule()

    def _write_some(self) -> None:
        """Write what the pipe takes now (under the lock)."""
        self._fed = time.monotonic()
        if self._held:
            self._encode_held()
        proc = self._proc
        if proc is None or self._gone.is_set():
            self._lost("the writer process is not running")
            self._respawn()
            return
        assert proc.stdin is not None
        try:
            n = os.write(proc.stdin.fileno(), self._buf)
        except BlockingIOError:
            return
        except OSError as err:  # the child died meanwhile
            self._lost(str(err))
            # A frame may be cut short: nothing more goes to this pipe (the child would
            # read the next frame as the rest of it); the next feed starts another.
            with contextlib.suppress(OSError):
                proc.stdin.close()
            self._gone.set()
            return
        del self._buf[:n]
        self._taken += n
        frames = self._frames
        while frames and self._taken >= frames[0][2]:
            self._taken -= frames.popleft()[2]

    def _lost(self, why: str) -> None:
        """Count what the buffer holds as not written, and forget it (a frame the
        pipe took only part of is lost too: the child drops it at the end of input).
        What the pipe took whole and a dying child had not read yet is not counted
        here: the server cannot know it."""
        counts = {kind: h.records for kind, h in self._held.items()}
        self._held, self._held_bytes = {}, 0
        for kind, records, _ in self._frames:
            counts[kind] = counts.get(kind, 0) + records
        self._frames.clear()
        self._taken = 0
        self._buf.clear()
        if not counts:
            return
        for kind, n in counts.items():
            self.stats[kind].dropped("write_failed", n)
        log.error("capture writer unreachable (%s): %s records dropped", why, counts)

    def _respawn(self) -> subprocess.Popen[bytes] | None:
        if time.monotonic() - self._spawned < RESPAWN_SECONDS:
            return None
        old = self._proc
        if old is not None and old.stdin is not None:
            with contextlib.suppress(OSError):
                old.stdin.close()  # a child still running ends at the end of its input
        log.error(
            "capture writer process exited (%s); starting another",
            None if old is None else old.poll(),
        )
        self._spawn()
        return self._proc

    def _spawn(self) -> None:
        self._spawned = time.monotonic()
        env = {**os.environ, SPECS_ENV: orjson.dumps(self.specs).decode()}
        try:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0
            )
        except OSError as err:
            log.error("cannot start the capture writer process: %s", err)
            return
        assert proc.stdin is not None and proc.stdout is not None
        fd = proc.stdin.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError, AttributeError):
            # A larger pipe rides out a slow moment of the child (Linux only).
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._proc = proc
        self._gone = gone = threading.Event()
        self._reader = threading.Thread(
            target=self._read, args=(proc.stdout, gone), name="kubeml-capture-read", daemon=True
        )
        self._reader.start()

    def _read(self, out: IO[bytes], gone: threading.Event) -> None:
        try:
            self._count(out)
        finally:
            gone.set()  # the child closed its output: it has exited, or is about to

    def _count(self, out: IO[bytes]) -> None:
        for line in out:
            try:
                msg = orjson.loads(line)
                stats = self.stats.get(str(msg.get("k", "")).encode())
                if stats is None:
                    continue
                if "ok" in msg:
                    stats.captured(int(msg["ok"]), int(msg["bytes"]))
                else:
                    stats.dropped(str(msg["drop"]), int(msg["n"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.warning("capture writer said something unexpected: %r", line[:200])

    def flush(self, timeout: float = 30.0) -> None:
        """Hand everything held to the child now, waiting for the pipe (tests, close)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._write_some()
                if not (self._buf or self._held) or time.monotonic() > deadline:
                    return
            time.sleep(0.01)  # the pipe is full: the child is reading

    def close(self, timeout: float) -> bool:
        """Send what is held, end the child's input, wait for it to write everything;
        True when it exited cleanly within ``timeout``. Idempotent (captures and
        feedback share the child)."""
        with self._lock:
            if self._result is not None:
                return self._result
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._lock:
            self._closing = True
            self._lost("closed before the writer took it")
        proc, reader = self._proc, self._reader
        ok = True
        if proc is not None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of input: the child writes what it holds and exits
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("capture writer still writing after %.1fs", timeout)
                ok = False
            if reader is not None:
                reader.join(max(0.0, deadline - time.monotonic()))
            ok = ok and proc.returncode == 0
        with self._lock:
            self._result = ok
        return ok


# -- the child ----------------------------------------------------------------------------


class Reporter:
    """A writer's outcomes as lines on stdout, for the server's metrics."""

    def __init__(self, kind: str, out: IO[bytes], lock: threading.Lock) -> None:
        self.kind = kind
        self.out = out
        self.lock = lock

    def _say(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(orjson.dumps(msg) + b"\n")
            self.out.flush()

    def captured(self, written: int, nbytes: int) -> None:
        self._say({"k": self.kind, "ok": written, "bytes": nbytes})

    def dropped(self, reason: str, n: int) -> None:
        self._say({"k": self.kind, "drop": reason, "n": n})


def main() -> int:
    # The pod's SIGTERM may reach the whole process group: this process stops at the
    # end of its input (the server closes it after draining), never before.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    specs: dict[str, Spec] = orjson.loads(os.environ[SPECS_ENV])
    out = sys.stdout.buffer
    lock = threading.Lock()
    table = kinds()
    sinks: dict[str, S3Sink] = {}
    writers: dict[bytes, tuple[BatchWriter[Any], Kind, Spec]] = {}
    for name, spec in specs.items():
        kind = table[name.encode()]
        sink = sinks.setdefault(spec["bucket"], S3Sink(spec["bucket"]))
        writers[name.encode()] = (kind.writer(spec, sink, Reporter(name, out, lock)), kind, spec)
        kind.warm(spec)
    for sink in sinks.values():
        try:
            sink.connect()
        except Exception as err:  # missing credentials: every write will fail and count
            log.error("capture: cannot make an S3 client for %s: %s", sink.bucket, err)
    pump(sys.stdin.buffer, writers, pipe_bytes(sys.stdin.fileno()))  # type: ignore[arg-type]
    ok = all(writer.close(3600) for writer, _, _ in writers.values())
    return 0 if ok else 1


Writers = Mapping[bytes, tuple[BatchWriter[Any], Kind, Spec]]


class Readable(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


def pump(
    stream: Readable,
    writers: Writers,
    capacity: int = PIPE_BYTES,
    pause: float = READ_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Every frame of ``stream`` to its kind's writer, until end of input.

    Whatever the pipe holds is read at once and each kind's frames are handed over
    together: a kind decodes them at once (numeric captures into Arrow columns), not
    one Python object per record.

    Between reads the child sleeps up to ``pause`` seconds: no longer than the rate
    of the last read takes to fill half the pipe's ``capacity``, and not at all after
    a read that took half of it or more, so the pipe does not fill and the server's
    buffer is not needed. Why: woken by every feed (20 a second at 32 connections)
    it spent 1.1 ms of CPU per feed, 4.8 µs per captured request, although decoding a
    feed's line (JSON then) took 0.22 ms when warm; a process that runs in short bursts between
    sleeps runs cold. Reading ten feeds at a time costs 2.4-2.8 µs per request
    (bench/README.md), and the child no longer wakes as the predict worker feeds it.
    At the end of input (the server's close) a sleeping child reads what is left
    when it wakes."""
    rest = b""
    last = clock()
    while chunk := stream.read1(capacity):
        now = clock()
        # Bytes a second since the last read: what the pipe must hold while we sleep.
        rate = len(chunk) / max(now - last, 1e-3)
        last = now
        data = rest + chunk if rest else chunk
        frames, end = split_frames(data)
        rest = data[end:]
        if frames:
            dispatch(frames, writers)
        if len(chunk) < capacity // 2:
            sleep(min(pause, capacity / 2 / rate))
    if rest:  # the server counted it lost: it ends only a frame it could not finish
        log.warning("capture writer: the input ended inside a frame; %d bytes dropped", len(rest))


def pipe_bytes(fd: int) -> int:
    """What the pipe on ``fd`` holds at most (the server asks for ``PIPE_BYTES``; the
    kernel may give less, or this may not be Linux)."""
    try:
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (OSError, AttributeError):
        return 1 << 16


def dispatch(frames: Sequence[tuple[bytes, bytes]], writers: Writers) -> None:
    """Frames' payloads to their kinds' writers, in order within each kind."""
    grouped: dict[bytes, list[bytes]] = {}
    for key, payload in frames:
        grouped.setdefault(key, []).append(payload)
    for key, payloads in grouped.items():
        entry = writers.get(key)
        if entry is not None:
            writer, kind, spec = entry
            try:
                kind.take(writer, spec, payloads)
            except Exception:  # one kind's unreadable input must not stop the child
                log.exception("writer of kind %r: %d frames not read", key, len(payloads))


if __name__ == "__main__":
    sys.exit(main())

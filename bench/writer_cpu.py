"""CPU per captured record, measured in CPU time (not wall time, so a busy machine
changes it little): the server's share (``Capture.offer`` holding each predict
call's batch, and the feed making one frame of what is held) and the
writer child's share (reading the frames from its pipe, splitting them into records,
buffering, Parquet encoding),
the latter with the child's own code (``kubeml.serving.writer.pump``) fed in
pipe-sized chunks, a sink that keeps nothing, and everything flushed at the end.

    .venv/bin/python bench/writer_cpu.py                  # about 20 seconds
    .venv/bin/python bench/writer_cpu.py --records 200000 --rows 4

The records are the capture benchmark's: iris rows (four float64 features), integer
class predictions, no probabilities, all fields kept; ``--data random`` puts
full-precision random floats in instead. ``--per-feed`` is how many records
one read of the pipe returns (the server writes the pipe every 50 ms: at 6,000
requests/s about 300); ``--batch`` how many requests one predict call answers (the
micro-batcher's batches at 32 connections hold about 16).
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import time
import uuid
from typing import Any

import numpy as np

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Collect:
    """The writer process as Capture sees it: what is held becomes a frame every
    ``per_feed`` records, as a feed of the pipe does; the frames are kept."""

    def __init__(self, per_feed: int) -> None:
        self.per_feed = per_feed
        self.lines: list[bytes] = []
        self.held: list[Any] = []
        self.records = 0

    def channel(self, kind: bytes, spec: Any, stats: Any) -> Collect:
        self.spec = spec
        return self

    def hold(self, item: Any, records: int, nbytes: int, encode: Any) -> bool:
        self.held.append(item)
        self.records += records
        if self.records >= self.per_feed:
            self.feed(encode)
        return True

    def feed(self, encode: Any) -> None:
        if self.held:
            self.lines.append(encode(self.held))
        self.held, self.records = [], 0


class NullStats:
    def __init__(self) -> None:
        self.written = 0
        self.dropped_n = 0

    def captured(self, written: int, nbytes: int) -> None:
        self.written += written

    def dropped(self, reason: str, n: int) -> None:
        self.dropped_n += n


class NullSink:
    def __init__(self) -> None:
        self.bytes = 0

    def connect(self) -> None:
        pass

    def put(self, key: str, data: bytes) -> None:
        self.bytes += len(data)


class Chunks(io.RawIOBase):
    """A pipe that hands out ``per_feed`` frames per read, as the server's feeds do."""

    def __init__(self, lines: list[bytes], per_feed: int) -> None:
        self.parts = [b"".join(lines[i : i + per_feed]) for i in range(0, len(lines), per_feed)]
        self.i = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.i >= len(self.parts):
            return 0
        part = self.parts[self.i]
        if len(part) > len(b):
            self.parts[self.i] = part[len(b) :]
            part = part[: len(b)]
        else:
            self.i += 1
        b[: len(part)] = part
        return len(part)


def server_side(
    n: int, rows: int, batch: int, per_feed: int, data: str = "iris"
) -> tuple[float, list[bytes], dict[str, Any]]:
    from kubeml.serving.capture import Batch, Capture, CaptureConfig, held_frame

    sink = Collect(per_feed)
    cap = Capture(
        CaptureConfig(prefix_uri="s3://bench/namespaces/bench/captures/iris/"),
        model="iris",
        version=1,
        modelversion="iris-v1",
        features=FEATURES,
        dtypes=["number"] * 4,
        classes=["0", "1", "2"],
        stats=NullStats(),
        process=sink,  # type: ignore[arg-type]
    )
    rng = np.random.default_rng(0)
    if data == "iris":  # what capture_bench.py sends: iris rows (short decimals)
        from sklearn.datasets import load_iris

        X = load_iris().data
        inputs = [X[rng.integers(0, len(X), rows)] for _ in range(n)]
    else:  # full-precision random floats: the slowest numbers to print and parse
        inputs = [rng.normal(5, 1, (rows, 4)) for _ in range(n)]
    ids = [uuid.uuid4().hex for _ in range(n)]
    preds = [rng.integers(0, 3, rows) for _ in range(n)]
    now = time.time_ns()

    def predicted(i: int) -> Batch:
        # Fresh arrays, as a predict call makes them (hot in the cache).
        k = min(batch, n - i)
        x, y = np.concatenate(inputs[i : i + k]), np.concatenate(preds[i : i + k])
        return Batch(ids[i : i + k], ["v2"] * k, [rows] * k, [False] * k, x, y, None, now + i)

    gc.collect()
    start = time.process_time()
    for i in range(0, n, batch):
        predicted(i)
    making = time.process_time() - start
    start = time.process_time()
    for i in range(0, n, batch):
        cap.offer(predicted(i))
    sink.feed(held_frame)
    # The offers' (and feeds') share: the same loop without them subtracted.
    return time.process_time() - start - making, sink.lines, sink.spec


def writer_side(
    lines: list[bytes], spec: dict[str, Any], per_feed: int, records: int
) -> tuple[float, int]:
    from kubeml.serving.capture import CAPTURE
    from kubeml.serving.writer import frame, pump

    sink, stats = NullSink(), NullStats()
    spec = {**spec, "flush_seconds": 3600.0}
    writer = CAPTURE.writer(spec, sink, stats)
    CAPTURE.warm(spec)
    stream = io.BufferedReader(Chunks([frame(b"c", line) for line in lines], per_feed))
    gc.collect()
    start = time.process_time()  # every thread of this process: the writer thread too
    pump(stream, {b"c": (writer, CAPTURE, spec)})
    assert writer.close(600)
    spent = time.process_time() - start
    assert stats.written == records and stats.dropped_n == 0, (stats.written, stats.dropped_n)
    return spent, sink.bytes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--per-feed", type=int, default=300, help="records per pipe read")
    p.add_argument("--batch", type=int, default=16, help="requests per predict call")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", choices=("iris", "random"), default="iris", help="input values")
    a = p.parse_args()
    server, writer = [], []
    for _ in range(a.repeat):
        s, lines, spec = server_side(a.records, a.rows, a.batch, a.per_feed, a.data)
        w, nbytes = writer_side(lines, spec, 1, a.records)
        server.append(s / a.records * 1e6)
        writer.append(w / a.records * 1e6)
    print(
        f"{a.records} records of {a.rows} row(s) of {a.data} inputs, {a.batch} per predict call, "
        f"{a.per_feed} per pipe read, "
        f"{a.repeat} repeats (CPU time, µs per record; median [min-max])"
    )
    for name, xs in (("server (offer and feed)", server), ("writer child", writer)):
        print(f"  {name:24s} {statistics.median(xs):7.2f} [{min(xs):.2f}-{max(xs):.2f}]")
    print(f"  Parquet bytes per 1,000 records: {nbytes / a.records * 1000:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Request ids and request capture without HTTP or S3: what a record holds, the
sampling rate, fields dropped before anything is written, and the bounds (a full
buffer or a failing store drops and counts, never blocks a request)."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestClassifier

from kubeml.serving.app import ModelServer
from kubeml.serving.capture import Batch, Capture, CaptureConfig
from kubeml.serving.config import ConfigError, ServerConfig
from kubeml.serving.loader import Loaded
from kubeml.serving.metrics import ServerMetrics
from kubeml.serving.predictor import Predictor
from tests.unit.test_serving_app import FEATURES, SIG, Harness, config, doc, v2

PREFIX = "s3://bucket/namespaces/team-a/captures/iris/"


class ListSink:
    """Keeps what would have gone to S3; can be made to fail or to hang."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def connect(self) -> None:
        pass

    def put(self, key: str, data: bytes) -> None:
        self.gate.wait(30)
        if self.fail:
            raise ConnectionError("endpoint unreachable")
        self.objects[key] = data

    def records(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for key in sorted(self.objects):
            rows.extend(pq.read_table(io.BytesIO(self.objects[key])).to_pylist())
        return rows


def capturing(model: Any, sink: ListSink, **capture: Any) -> tuple[Harness, Capture, ServerMetrics]:
    cfg = config(capture=CaptureConfig(prefix_uri=PREFIX, flush_seconds=3600, **capture))
    server = ModelServer(cfg)
    assert cfg.capture is not None
    cap = Capture(
        cfg.capture,
        model=cfg.model,
        version=cfg.version,
        modelversion=cfg.modelversion,
        features=cfg.signature.features,
        dtypes=cfg.signature.dtypes,
        classes=cfg.signature.classes,
        sink=sink,
        stats=server.metrics.capture,
    )
    server.capture = cap
    h = Harness(server)
    server.set_loaded(Loaded(Predictor(model, cfg.signature), None))
    return h, cap, server.metrics


def iris_capture(metrics: ServerMetrics, **where: Any) -> Capture:
    """Capture of the four-feature iris signature; ``where``: its sink or process."""
    return Capture(
        CaptureConfig(prefix_uri=PREFIX),
        model="iris",
        version=3,
        modelversion="iris-v3",
        features=FEATURES,
        dtypes=["number"] * 4,
        classes=None,
        stats=metrics.capture,
        **where,
    )


def sample(name: str, metrics: ServerMetrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model": "iris", "version": "3", **labels})
    return value or 0.0


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
INFER = "/v2/models/iris/infer"


def test_every_answer_carries_an_id_and_a_clients_id_is_kept(
    forest: RandomForestClassifier,
) -> None:
    h, cap, _ = capturing(forest, ListSink())
    try:
        fresh = h.call("POST", INFER, v2(ROWS))
        mine = h.call("POST", INFER, v2(ROWS, id="order-17"))
        v1 = h.call("POST", "/v1/models/iris:predict", {"instances": ROWS.tolist()})
        for resp in (fresh, mine, v1):
            assert resp.status == 200
        assert doc(fresh)["id"] == dict(fresh.headers)["x-request-id"]
        assert doc(mine)["id"] == dict(mine.headers)["x-request-id"] == "order-17"
        assert dict(v1.headers)["x-request-id"]
        assert len({doc(fresh)["id"], dict(v1.headers)["x-request-id"]}) == 2
    finally:
        cap.close(5)
        h.close()


@pytest.mark.parametrize("rid", ["", "x" * 257, "a\r\nset-cookie: 1", "café"])
def test_a_bad_client_id_is_a_400(forest: RandomForestClassifier, rid: str) -> None:
    h, cap, _ = capturing(forest, ListSink())
    try:
        resp = h.call("POST", INFER, v2(ROWS, id=rid))
        assert resp.status == 400
        assert "request id" in doc(resp)["error"]
    finally:
        cap.close(5)
        h.close()


def test_every_captured_record_holds_id_time_inputs_and_outputs(
    forest: RandomForestClassifier,
) -> None:
    sink = ListSink()
    h, cap, metrics = capturing(forest, sink)
    try:
        answers = [h.call("POST", INFER, v2(ROWS[: i + 1], id=f"r{i}")) for i in range(3)]
        answers.append(h.call("POST", "/v1/models/iris:predict", {"instances": ROWS.tolist()}))
        assert cap.close(10)
    finally:
        h.close()
    records = {r["id"]: r for r in sink.records()}
    assert len(records) == 4
    for i in range(3):
        rec = records[f"r{i}"]
        assert rec["rows"] == i + 1 and rec["protocol"] == "v2"
        assert rec["modelversion"] == "iris-v3" and rec["time"] is not None
        assert [rec["inputs"][f] for f in FEATURES] == ROWS[: i + 1].T.tolist()
        assert rec["outputs"]["predict"] == doc(answers[i])["outputs"][0]["data"]
    v1_id = dict(answers[3].headers)["x-request-id"]
    assert records[v1_id]["outputs"]["predict"] == doc(answers[3])["predictions"]
    (key,) = sink.objects
    assert key.startswith(
        "namespaces/team-a/captures/iris/model=iris/version=3/hour="
    ) and key.endswith(".parquet")
    assert sample("kubeml_capture_records_total", metrics) == 4
    assert sample("kubeml_capture_bytes_total", metrics) == len(sink.objects[key])


def test_dropped_fields_never_reach_the_store(forest: RandomForestClassifier) -> None:
    sink = ListSink()
    h, cap, _ = capturing(forest, sink, drop=("petal_width",))
    try:
        assert h.call("POST", INFER, v2(ROWS)).status == 200
        assert cap.close(10)
    finally:
        h.close()
    (rec,) = sink.records()
    assert set(rec["inputs"]) == set(FEATURES) - {"petal_width"}
    assert b"petal_width" not in next(iter(sink.objects.values()))


def test_keep_writes_only_the_named_fields() -> None:
    cfg = CaptureConfig(prefix_uri=PREFIX, keep=("sepal_length", "petal_width"), drop=("x",))
    assert cfg.features(FEATURES) == ["sepal_length", "petal_width"]


def test_a_sample_of_ten_percent_is_within_binomial_bounds(
    forest: RandomForestClassifier,
) -> None:
    sink = ListSink()
    h, cap, _ = capturing(forest, sink, sample_percent=10)
    n = 2000
    try:
        h.many([("POST", INFER, v2(ROWS[:1]), None) for _ in range(n)])
        assert cap.close(10)
    finally:
        h.close()
    got = len(sink.records())
    # mean 200, sd sqrt(2000 * 0.1 * 0.9) = 13.4: five sd either side
    assert 200 - 67 <= got <= 200 + 67


def test_a_full_buffer_drops_and_counts_without_holding_a_request(
    forest: RandomForestClassifier,
) -> None:
    sink = ListSink()
    sink.gate.clear()  # the store hangs: nothing leaves the buffer
    h, cap, metrics = capturing(forest, sink, max_buffer_values=4 * 3 * 10, batch_records=1)
    try:
        answers = h.many([("POST", INFER, v2(ROWS), None) for _ in range(30)])
        assert all(a.status == 200 for a in answers)
        assert sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full") >= 19
        sink.gate.set()
        assert cap.close(10)
    finally:
        h.close()
    written = sample("kubeml_capture_records_total", metrics)
    dropped = sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full")
    assert written + dropped == 30
    assert len(sink.records()) == written


def test_a_failing_store_drops_its_batch_and_capture_resumes(
    forest: RandomForestClassifier,
) -> None:
    sink = ListSink()
    h, cap, metrics = capturing(forest, sink)
    try:
        sink.fail = True
        h.many([("POST", INFER, v2(ROWS), None) for _ in range(5)])
        cap.flush()
        assert sample("kubeml_capture_dropped_records_total", metrics, reason="write_failed") == 5
        sink.fail = False
        h.many([("POST", INFER, v2(ROWS), None) for _ in range(7)])
        assert cap.close(10)
    finally:
        h.close()
    assert len(sink.records()) == 7


def test_offer_after_close_is_dropped() -> None:
    metrics = ServerMetrics("iris", "3")
    cap = iris_capture(metrics, sink=ListSink())
    assert cap.close(5)
    batch = Batch(["a", "b"], ["v2", "v1"], [2, 1], [False, False], ROWS, np.arange(3), None, 0)
    assert cap.offer(batch) == 0
    assert sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full") == 2


def test_capture_settings_from_the_environment() -> None:
    env = {
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "3",
        "KUBEML_ARTIFACT_URI": "s3://b/k",
        "KUBEML_ARTIFACT_SHA256": "0" * 64,
        "KUBEML_SIGNATURE": __import__("json").dumps(SIG),
    }
    assert ServerConfig.from_env(env).capture is None
    env |= {
        "KUBEML_CAPTURE_URI": PREFIX,
        "KUBEML_CAPTURE_SAMPLE_PERCENT": "12.5",
        "KUBEML_CAPTURE_DROP": "petal_width, sepal_width",
        "KUBEML_POD_NAME": "iris-stable-abc",
    }
    cap = ServerConfig.from_env(env).capture
    assert cap is not None
    assert (cap.bucket, cap.prefix) == ("bucket", "namespaces/team-a/captures/iris/")
    assert cap.sample_percent == 12.5 and cap.drop == ("petal_width", "sepal_width")
    assert cap.writer_id == "iris-stable-abc"
    with pytest.raises(ConfigError, match="unknown inputs: nope"):
        ServerConfig.from_env({**env, "KUBEML_CAPTURE_DROP": "nope"})
    with pytest.raises(ConfigError, match="outside"):
        ServerConfig.from_env({**env, "KUBEML_CAPTURE_SAMPLE_PERCENT": "101"})


def test_records_a_dead_writer_process_cannot_take_are_dropped_and_counted() -> None:
    from kubeml.serving.writer import WriterProcess

    stats = ServerMetrics("iris", "3")
    proc = WriterProcess(max_bytes=1000, argv=[sys.executable, "-c", "raise SystemExit(3)"])
    proc.channel(b"c", {}, stats.capture)
    proc.start(None)
    assert proc._proc is not None
    proc._proc.wait(30)  # the child is gone before anything is sent
    for i in range(3):
        assert proc.send(b"c", b'{"id": "%d"}' % i)
    assert not proc.send(b"c", b"x" * 1000)  # over the buffer's bound
    proc.flush()
    assert sample("kubeml_capture_dropped_records_total", stats, reason="write_failed") == 3
    assert sample("kubeml_capture_dropped_records_total", stats, reason="buffer_full") == 1
    assert not proc.close(5)  # it did not exit cleanly


def test_batch_lines_are_split_and_written_record_by_record() -> None:
    """The server sends one line per predict call; the writer child splits a pipe
    read's lines into records: each holds its own inputs (NaN as null), predictions,
    and probabilities if it asked for them; a line that cannot be read is skipped
    (the others' records unchanged); records of two hours go to two objects."""
    from kubeml.serving.capture import batch_line, block_hours, encode_block, parse_block

    spec = {"kept": ["a", "b"], "modelversion": "m-v1"}
    hour = 3_600_000_000_000
    m = np.array
    lines = [
        batch_line(
            ["r0", "r4"], 5 * hour, ["v2", "v2"], [1, 1], [True, False],
            m([[1.0, float("nan")], [9.0, 9.5]]), m([2, 0]), m([[0.0, 1.0], [1.0, 0.0]]),
        ),
        batch_line(
            ["r1"], 6 * hour, ["v1"], [2], [True],
            m([[3.0, 4.0], [5.0, 6.0]]), m([0, 1]), m([[0.5, 0.5], [1.0, 0.0]]),
        ),
        batch_line(["r2"], 5 * hour + 1, ["v2"], [1], [False], m([[7.0, 8.0]]), m([1]), None),
    ]  # fmt: skip
    block = parse_block(b"\n".join(lines) + b"\n")
    assert block.column("id").to_pylist() == ["r0", "r4", "r1", "r2"]

    def stored(table: Any) -> list[dict[str, Any]]:
        return pq.read_table(io.BytesIO(encode_block(table, spec))).to_pylist()  # NaN: None

    broken = [
        lines[0][:-40] + b"}",  # cut short
        b"{not json",
        b'{"id": ["r9"], "t": 1}',  # fields missing
        lines[0].replace(b'"r0"', b"7"),  # an id that is not a string
        lines[0].replace(b'"n":[1,1]', b'"n":[1,2]'),  # rows that do not add up
    ]
    for bad in broken:
        skipped = parse_block(b"\n".join([lines[0], bad, *lines[1:]]) + b"\n")
        assert stored(skipped) == stored(block), bad
    hours = block_hours([block])
    assert list(hours) == [5, 6]  # in order of first appearance
    written = {h: stored(t) for h, t in hours.items()}
    assert [r["id"] for r in written[5]] == ["r0", "r4", "r2"]
    assert [r["id"] for r in written[6]] == ["r1"]
    r0, r4, r2 = written[5]
    (r1,) = written[6]
    assert r0["inputs"] == {"a": [1.0], "b": [None]} and r0["rows"] == 1
    assert r0["outputs"] == {"predict": [2], "predict_proba": [[0.0, 1.0]]}
    assert r4["inputs"] == {"a": [9.0], "b": [9.5]}
    assert r4["outputs"] == {"predict": [0], "predict_proba": None}  # it did not ask
    assert r1["inputs"] == {"a": [3.0, 5.0], "b": [4.0, 6.0]} and r1["protocol"] == "v1"
    assert r1["outputs"] == {"predict": [0, 1], "predict_proba": [[0.5, 0.5], [1.0, 0.0]]}
    assert r2["outputs"] == {"predict": [1], "predict_proba": None}
    assert r0["modelversion"] == "m-v1" and r0["time"].value == 5 * hour
    assert r2["time"].value == 5 * hour + 1
    # The line without probabilities first: the others' probabilities in their place.
    reordered = parse_block(b"\n".join([lines[2], lines[0], lines[1]]) + b"\n")
    assert sorted(stored(reordered), key=str) == sorted(stored(block), key=str)
    # Labels (strings) in a later line: every prediction of the block as a string.
    labels = batch_line(["r3"], 5 * hour, ["v2"], [1], [False], m([[0.0, 0.0]]), m(["x"]), None)
    other = parse_block(b"\n".join([*lines, labels]) + b"\n")
    mixed = block_hours([other])[5]
    assert [r["outputs"]["predict"] for r in stored(mixed)] == [["2"], ["0"], ["1"], ["x"]]
    # Floats and booleans keep their type; no inputs kept: no input column.
    for pred in (m([0.25]), m([True])):
        line = batch_line(["r5"], hour, ["v2"], [1], [False], np.zeros((1, 0)), pred, None)
        (rec,) = pq.read_table(
            io.BytesIO(encode_block(parse_block(line + b"\n"), {**spec, "kept": []}))
        ).to_pylist()
        assert rec["outputs"]["predict"] == pred.tolist() and "inputs" not in rec


def test_a_line_sent_by_the_predict_worker_is_fed_while_the_loop_idles(tmp_path: Any) -> None:
    """Bug: the predict worker's send scheduled the pipe feed with call_later from its
    own thread, which does not wake a loop waiting in select: an idle server kept a
    captured line until something else woke it."""
    import asyncio
    import time

    from kubeml.serving.writer import WriterProcess

    got = tmp_path / "got"
    proc = WriterProcess(max_bytes=10_000, argv=["sh", "-c", f"cat > {got}"])
    proc.channel(b"c", {}, ServerMetrics("iris", "3").capture)
    loop = asyncio.new_event_loop()
    proc.start(loop)
    arrived: asyncio.Future[bool] = loop.create_future()

    def watch() -> None:  # no timer on the loop: only a thread-safe call wakes it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (got.exists() and got.stat().st_size):
            time.sleep(0.02)
        ok = got.exists() and got.stat().st_size > 0
        loop.call_soon_threadsafe(arrived.set_result, ok)

    loop_thread = threading.get_native_id()

    def predict_worker() -> None:
        # Only once the loop waits in epoll with nothing scheduled (Linux's view of it).
        wchan = Path(f"/proc/self/task/{loop_thread}/wchan")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "epoll" not in wchan.read_text():
            time.sleep(0.01)
        proc.send(b"c", b'{"id": ["r1"]}', 1)

    worker = threading.Thread(target=predict_worker)
    watcher = threading.Thread(target=watch)
    try:
        worker.start()
        watcher.start()
        assert loop.run_until_complete(arrived), "the line never reached the writer"
        assert got.read_bytes() == b'c{"id": ["r1"]}\n'
    finally:
        worker.join(5)
        watcher.join(15)
        proc.close(5)
        loop.close()


def test_batches_held_until_a_feed_become_one_line_with_the_same_records() -> None:
    """The server holds each predict call's batch as it is and makes one line of all
    it holds when it feeds the pipe (the writer's cost is per line): the records
    written are those of one line per batch, each with its own batch's time, and
    probabilities only for requests that asked, also beside batches that computed none."""
    from kubeml.serving.capture import batch_line, encode_block, held_line, parse_block

    spec = {"kept": ["a", "b"], "modelversion": "m-v1"}
    m = np.array
    batches = [
        Batch(["r0", "r1"], ["v2", "v1"], [1, 2], [True, False],
              m([[1.0, float("nan")], [2.0, 3.0], [4.0, 5.0]]), m([2, 0, 1]),
              m([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), 100),
        Batch(["r2"], ["v2"], [1], [False], m([[6.0, 7.0]]), m([1]), None, 200),
        Batch(["r3", "r4"], ["v2", "v2"], [1, 1], [False, True], m([[8.0, 9.0], [1.5, 2.5]]),
              m([0, 0]), m([[1.0, 0.0], [0.6, 0.4]]), 300),
    ]  # fmt: skip

    def stored(lines: list[bytes]) -> list[dict[str, Any]]:
        table = encode_block(parse_block(b"\n".join(lines) + b"\n"), spec)
        return pq.read_table(io.BytesIO(table)).to_pylist()

    one_per_batch = [
        batch_line(b.ids, b.time_ns, b.protocols, b.ns, b.want_proba, b.rows, b.pred, b.proba)
        for b in batches
    ]
    merged = stored([held_line(batches)])
    assert merged == stored(one_per_batch)
    assert [r["id"] for r in merged] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r["time"].value for r in merged] == [100, 100, 200, 300, 300]
    probas = [r["outputs"]["predict_proba"] for r in merged]
    assert probas == [[[0.1, 0.9]], None, None, None, [[0.6, 0.4]]]
    assert merged[1]["inputs"] == {"a": [2.0, 4.0], "b": [3.0, 5.0]}
    assert merged[0]["inputs"] == {"a": [1.0], "b": [None]}
    # Class labels in some batches, numbers in others: every prediction as a label.
    labelled = Batch(["r5"], ["v2"], [1], [False], m([[0.0, 0.0]]), m(["x"]), None, 400)
    mixed = stored([held_line([batches[1], labelled])])
    assert [r["outputs"]["predict"] for r in mixed] == [["1"], ["x"]]
    # Per-request times that do not fit the line: the line is skipped, not misread.
    line = held_line(batches[:2])
    for bad in (b'"t":[100,100]', b'"t":[100,"x",200]', b'"t":[100,100,%d]' % 2**70, b'"t":1.5'):
        broken = line.replace(b'"t":[100,100,200]', bad)
        assert broken != line
        assert stored([broken, one_per_batch[2]]) == stored([one_per_batch[2]])


def test_predict_calls_feed_the_writer_once_a_feed_is_due(
    forest: RandomForestClassifier, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The predict worker feeds the pipe as a predict call starts (its clients wait,
    a core is free for the child), once FEED_SECONDS have passed since the last feed:
    everything earlier calls held goes as one line. What no predict call feeds (an
    idle server) the loop feeds."""
    import asyncio
    import time
    import types

    from kubeml.serving import writer
    from kubeml.serving.capture import parse_block

    now = [1000.0]
    clock = types.SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep)
    monkeypatch.setattr(writer, "time", clock)
    got = tmp_path / "got"
    proc = writer.WriterProcess(max_bytes=100_000, argv=["sh", "-c", f"cat > {got}"])
    cfg = config(capture=CaptureConfig(prefix_uri=PREFIX))
    server = ModelServer(cfg)
    server.capture = iris_capture(server.metrics, process=proc)
    server.writer = proc
    h = Harness(server)
    server.set_loaded(Loaded(Predictor(forest, cfg.signature), None))
    proc.start(h.loop)

    def lines(n: int) -> list[list[str]]:
        """The ids of each line the child has read, once it has read ``n`` lines."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = got.read_bytes() if got.exists() else b""
            if data.count(b"\n") >= n:
                break
            h.loop.run_until_complete(asyncio.sleep(0.02))  # the loop's timers run
        return [
            parse_block(line[1:] + b"\n").column("id").to_pylist()
            for line in got.read_bytes().splitlines()
        ]

    try:
        for rid, at in (("r1", 1000.0), ("r2", 1000.0 + writer.FEED_SECONDS * 0.8)):
            now[0] = at
            assert h.call("POST", INFER, v2(ROWS, id=rid)).status == 200
        now[0] = 1000.0 + writer.FEED_SECONDS * 1.2
        assert h.call("POST", INFER, v2(ROWS, id="r3")).status == 200
        # r2's call came too early to feed r1: both in the line r3's call fed.
        assert lines(1) == [["r1", "r2"]]
        # No predict call after r3: the loop feeds it.
        now[0] += 3 * writer.FEED_SECONDS
        assert lines(2) == [["r1", "r2"], ["r3"]]
    finally:
        assert proc.close(10)
        h.close()


def test_held_batches_reach_the_writer_process_as_one_line_and_are_bounded(
    tmp_path: Any,
) -> None:
    """What the server holds counts against its buffer's bound, goes to the pipe as one
    line per feed, and is counted as dropped when the child cannot take it."""
    from kubeml.serving.capture import parse_block
    from kubeml.serving.writer import WriterProcess

    def batch(i: int, rows: int = 1) -> Batch:
        x = np.full((rows, 4), float(i))
        return Batch([f"r{i}"], ["v2"], [rows], [False], x, np.zeros(rows, np.int64), None, i)

    got = tmp_path / "got"
    metrics = ServerMetrics("iris", "3")
    proc = WriterProcess(max_bytes=2_000, argv=["sh", "-c", f"cat > {got}"])
    cap = iris_capture(metrics, process=proc)
    proc.start(None)
    assert [cap.offer(batch(i)) for i in range(3)] == [1, 1, 1]
    assert cap.offer(batch(9, rows=100)) == 0  # 100 rows of 4 floats: over the bound
    assert sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full") == 1
    # A plain line finds the room the held batches take: 1,800 bytes do not fit beside them.
    assert not proc.send(b"c", b"x" * 1800)
    assert sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full") == 2
    proc.flush()
    assert proc.close(10)
    lines = got.read_bytes().splitlines()
    assert len(lines) == 1 and lines[0][:1] == b"c"
    block = parse_block(lines[0][1:] + b"\n")
    assert block.column("id").to_pylist() == ["r0", "r1", "r2"]
    assert block.column("t").to_pylist() == [0, 1, 2]

    dead = WriterProcess(max_bytes=10_000, argv=[sys.executable, "-c", "raise SystemExit(3)"])
    lost = ServerMetrics("iris", "3")
    cap = iris_capture(lost, process=dead)
    dead.start(None)
    assert dead._proc is not None
    dead._proc.wait(30)
    assert [cap.offer(batch(i)) for i in range(4)] == [1, 1, 1, 1]
    dead.flush()
    assert sample("kubeml_capture_dropped_records_total", lost, reason="write_failed") == 4
    assert not dead.close(5)


def test_the_writer_child_pauses_between_reads_no_longer_than_half_the_pipe_takes() -> None:
    """The child sleeps between reads (woken by every feed it ran cold: 4x the CPU per
    record), at most ``pause``, never longer than the last read's rate takes to fill
    half the pipe, and not at all after a read of half the pipe or more; every line
    reaches its kind, the last one at the end of input."""
    from kubeml.serving import writer

    class Kind:
        def __init__(self) -> None:
            self.lines: list[bytes] = []

        def take(self, w: Any, spec: Any, lines: bytes) -> int:
            self.lines += lines.splitlines()
            return 0

    line = b"c" + b"x" * 98 + b"\n"  # 100 bytes
    now = [0.0]
    # (seconds the read waits for input, what it finds)
    reads = iter([
        (1.0, line),  # 100 B/s: the full pause
        (0.0, line * 3),  # 600 B/s over the pause: half the pipe takes 0.83 s
        (0.0, line * 10),  # a full pipe: read on
        (0.0, line * 6),  # half full: read on
        (0.1, line * 4),  # 4,000 B/s: half the pipe takes 0.125 s
        (0.0, line[:40]),  # a cut line
        (0.0, line[40:] + line[:-1]),  # and one without its newline at the end
    ])  # fmt: skip
    events: list[str] = []

    class Stream:
        def read1(self, size: int = -1, /) -> bytes:
            assert size == 1000
            wait, chunk = next(reads, (0.0, b""))
            now[0] += wait
            events.append(f"read {len(chunk)}")
            return chunk

    def sleep(seconds: float) -> None:
        events.append(f"sleep {seconds:.3f}")
        now[0] += seconds

    kind = Kind()
    writer.pump(
        Stream(),
        {b"c": (None, kind, {})},  # type: ignore[dict-item]
        capacity=1000,
        pause=0.5,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert events == [
        "read 100", "sleep 0.500",
        "read 300", "sleep 0.500",
        "read 1000",
        "read 600",
        "read 400", "sleep 0.125",
        "read 40", "sleep 0.500",
        "read 159", "sleep 0.500",
        "read 0",
    ]  # fmt: skip
    assert kind.lines == [b"x" * 98] * 26


def test_the_pipes_size_is_what_the_kernel_gave() -> None:
    import fcntl
    import os

    from kubeml.serving import writer

    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 17)
        assert writer.pipe_bytes(r) == 1 << 17
    finally:
        os.close(r)
        os.close(w)
    with open(__file__, "rb") as f:  # not a pipe
        assert writer.pipe_bytes(f.fileno()) == 1 << 16

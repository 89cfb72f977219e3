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


def test_frames_are_split_and_written_record_by_record() -> None:
    """The server sends one frame per feed; the writer child splits a pipe read's
    frames into records: each holds its own inputs (NaN as null), predictions, and
    probabilities if it asked for them; a frame that cannot be read is skipped (the
    others' records unchanged); records of two hours go to two objects."""
    from kubeml.serving.capture import block_hours, encode_block, held_frame, parse_frames

    spec = {"kept": ["a", "b"], "modelversion": "m-v1"}
    hour = 3_600_000_000_000
    m = np.array
    frames = [
        held_frame([Batch(
            ["r0", "r4"], ["v2", "v2"], [1, 1], [True, False],
            m([[1.0, float("nan")], [9.0, 9.5]]), m([2, 0]), m([[0.0, 1.0], [1.0, 0.0]]),
            5 * hour,
        )]),
        held_frame([Batch(
            ["r1"], ["v1"], [2], [True],
            m([[3.0, 4.0], [5.0, 6.0]]), m([0, 1]), m([[0.5, 0.5], [1.0, 0.0]]), 6 * hour,
        )]),
        held_frame([
            Batch(["r2"], ["v2"], [1], [False], m([[7.0, 8.0]]), m([1]), None, 5 * hour + 1)
        ]),
    ]  # fmt: skip
    block = parse_frames(frames)
    assert block.column("id").to_pylist() == ["r0", "r4", "r1", "r2"]

    def stored(table: Any) -> list[dict[str, Any]]:
        return pq.read_table(io.BytesIO(encode_block(table, spec))).to_pylist()  # NaN: None

    def header(frame: bytes, old: bytes, new: bytes) -> bytes:
        """``frame`` with ``old`` replaced by ``new`` in its header (its length kept right)."""
        size = int.from_bytes(frame[:4], "little")
        head = frame[4 : 4 + size]
        assert old in head, (old, head)
        head = head.replace(old, new)
        return len(head).to_bytes(4, "little") + head + frame[4 + size :]

    broken = [
        frames[0][:-8],  # cut short
        frames[0] + b"\0" * 8,  # longer than its header says
        b"\x09\0\0\0{not json",
        header(frames[0], b'"r0"', b"7"),  # an id that is not a string
        header(frames[0], b'"n":[[1,1]]', b'"n":[[1,2]]'),  # rows the bytes do not hold
        header(frames[0], b'"n":[[1,1]]', b'"n":[[1]]'),  # fields of different lengths
        header(frames[0], b'"n":[[1,1]]', b'"n":[[3,-1]]'),  # a negative count
        header(frames[0], b'"f":2', b'"f":-2'),  # a negative width
        header(frames[0], b'"f":2', b'"f":3'),  # a width earlier frames do not have
        header(frames[0], b'"yd":"<i8"', b'"yd":"|O"'),  # predictions that are not numbers
        header(frames[0], b'"yd":"<i8"', b'"yd":"<f16"'),  # a type Arrow does not read
        header(frames[0], b'"f":2', b'"f":2.0'),  # a width that is not a whole number
        header(frames[0], b'"f":2', b'"f":true'),
        header(frames[0], b'"wp":[[true,false]]', b'"wp":[[1,0]]'),  # flags not booleans
        header(frames[0], b'"pb":[true]', b'"pb":[true,false]'),  # flags of other batches
        header(frames[0], b'"c":2', b'"c":-1'),
        header(frames[0], b'"id":', b'"ids":'),  # a field missing
    ]
    for bad in broken:
        skipped = parse_frames([frames[1], bad, frames[0], frames[2]])
        ordered = parse_frames([frames[1], frames[0], frames[2]])
        assert stored(skipped) == stored(ordered), bad
    assert len(parse_frames(broken).column("id")) == 0
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
    # The frame without probabilities first: the others' probabilities in their place.
    reordered = parse_frames([frames[2], frames[0], frames[1]])
    assert sorted(stored(reordered), key=str) == sorted(stored(block), key=str)
    # Labels (strings) in a later frame: every prediction of the block as a string.
    labels = held_frame(
        [Batch(["r3"], ["v2"], [1], [False], m([[0.0, 0.0]]), m(["x"]), None, 5 * hour)]
    )
    other = parse_frames([*frames, labels])
    mixed = block_hours([other])[5]
    assert [r["outputs"]["predict"] for r in stored(mixed)] == [["2"], ["0"], ["1"], ["x"]]
    # The writer knows the width it keeps: an empty frame of another width is skipped,
    # not taken as the width the next frames must have.
    empty = held_frame([Batch([], [], [], [], np.zeros((0, 7)), m([], np.int64), None, hour)])
    assert stored(parse_frames([empty, *frames], width=2)) == stored(block)
    # Floats of types Arrow does not read from numpy travel as float64.
    for odd in (np.float16, np.longdouble):
        frame = held_frame(
            [Batch(["r6"], ["v2"], [1], [False], m([[0.0, 0.0]]), m([0.5], odd), None, hour)]
        )
        (rec,) = stored(parse_frames([frame]))
        assert rec["outputs"]["predict"] == [0.5]
    # Floats and booleans keep their type; no inputs kept: no input column.
    for pred in (m([0.25]), m([True])):
        frame = held_frame(
            [Batch(["r5"], ["v2"], [1], [False], np.zeros((1, 0)), pred, None, hour)]
        )
        (rec,) = pq.read_table(
            io.BytesIO(encode_block(parse_frames([frame]), {**spec, "kept": []}))
        ).to_pylist()
        assert rec["outputs"]["predict"] == pred.tolist() and "inputs" not in rec


def test_a_line_sent_by_the_predict_worker_is_fed_while_the_loop_idles(tmp_path: Any) -> None:
    """Bug: the predict worker's send scheduled the pipe feed with call_later from its
    own thread, which does not wake a loop waiting in select: an idle server kept a
    captured line until something else woke it."""
    import asyncio
    import time

    from kubeml.serving.writer import WriterProcess, frame

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
        assert got.read_bytes() == frame(b"c", b'{"id": ["r1"]}')
    finally:
        worker.join(5)
        watcher.join(15)
        proc.close(5)
        loop.close()


def test_batches_held_until_a_feed_become_one_frame_with_the_same_records() -> None:
    """The server holds each predict call's batch as it is and makes one frame of all
    it holds when it feeds the pipe (the writer's cost is per frame): the records
    written are those of one frame per batch, each with its own batch's time, and
    probabilities only for requests that asked, also beside batches that computed none."""
    from kubeml.serving.capture import encode_block, held_frame, parse_frames

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

    def stored(frames: list[bytes]) -> list[dict[str, Any]]:
        table = encode_block(parse_frames(frames), spec)
        return pq.read_table(io.BytesIO(table)).to_pylist()

    one_per_batch = [held_frame([b]) for b in batches]
    merged = stored([held_frame(batches)])
    assert merged == stored(one_per_batch)
    assert [r["id"] for r in merged] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r["time"].value for r in merged] == [100, 100, 200, 300, 300]
    probas = [r["outputs"]["predict_proba"] for r in merged]
    assert probas == [[[0.1, 0.9]], None, None, None, [[0.6, 0.4]]]
    assert merged[1]["inputs"] == {"a": [2.0, 4.0], "b": [3.0, 5.0]}
    assert merged[0]["inputs"] == {"a": [1.0], "b": [None]}
    # Class labels in some batches, numbers in others: every prediction as a label.
    labelled = Batch(["r5"], ["v2"], [1], [False], m([[0.0, 0.0]]), m(["x"]), None, 400)
    mixed = stored([held_frame([batches[1], labelled])])
    assert [r["outputs"]["predict"] for r in mixed] == [["1"], ["x"]]
    # Predictions of a byte order or width other than the first batch's: as they were.
    other = Batch(["r6"], ["v2"], [1], [False], m([[0.0, 0.0]]), m([7], ">i4"), None, 500)
    assert [r["outputs"]["predict"] for r in stored([held_frame([other])])] == [[7]]
    # Batches the writer could not read as one: an error, not a frame misread later.
    with pytest.raises(ValueError, match="inputs per row"):
        held_frame([batches[0], batches[1]._replace(rows=m([[1.0, 2.0, 3.0]]))])
    with pytest.raises(ValueError, match="probabilities per row"):
        held_frame([batches[0], batches[2]._replace(proba=m([[1.0, 0.0, 0.0]] * 2))])
    # Times that do not fit the frame: the frame is skipped, not misread.
    frame = held_frame(batches[:2])
    size = int.from_bytes(frame[:4], "little")
    for bad in (b'"t":[100]', b'"t":[100,"x"]', b'"t":[100,%d]' % 2**70, b'"t":[100,1.5]'):
        head = frame[4 : 4 + size].replace(b'"t":[100,200]', bad)
        broken = len(head).to_bytes(4, "little") + head + frame[4 + size :]
        assert broken != frame
        assert stored([broken, one_per_batch[2]]) == stored([one_per_batch[2]])


def test_predict_calls_feed_the_writer_once_a_feed_is_due(
    forest: RandomForestClassifier, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The predict worker feeds the pipe as a predict call starts (its clients wait,
    a core is free for the child), once FEED_SECONDS have passed since the last feed:
    everything earlier calls held goes as one frame. What no predict call feeds (an
    idle server) the loop feeds."""
    import asyncio
    import time
    import types

    from kubeml.serving import writer
    from kubeml.serving.capture import parse_frames

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

    def frames(n: int) -> list[list[str]]:
        """The ids of each frame the child has read, once it has read ``n`` frames."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = got.read_bytes() if got.exists() else b""
            if len(writer.split_frames(data)[0]) >= n:
                break
            h.loop.run_until_complete(asyncio.sleep(0.02))  # the loop's timers run
        read, end = writer.split_frames(got.read_bytes())
        assert end == got.stat().st_size
        assert {kind for kind, _ in read} == {b"c"}
        return [parse_frames([payload]).column("id").to_pylist() for _, payload in read]

    try:
        for rid, at in (("r1", 1000.0), ("r2", 1000.0 + writer.FEED_SECONDS * 0.8)):
            now[0] = at
            assert h.call("POST", INFER, v2(ROWS, id=rid)).status == 200
        now[0] = 1000.0 + writer.FEED_SECONDS * 1.2
        assert h.call("POST", INFER, v2(ROWS, id="r3")).status == 200
        # r2's call came too early to feed r1: both in the frame r3's call fed.
        assert frames(1) == [["r1", "r2"]]
        # No predict call after r3: the loop feeds it.
        now[0] += 3 * writer.FEED_SECONDS
        assert frames(2) == [["r1", "r2"], ["r3"]]
    finally:
        assert proc.close(10)
        h.close()


def test_held_batches_reach_the_writer_process_as_one_frame_and_are_bounded(
    tmp_path: Any,
) -> None:
    """What the server holds counts against its buffer's bound, goes to the pipe as one
    frame per feed, and is counted as dropped when the child cannot take it."""
    from kubeml.serving.capture import parse_frames
    from kubeml.serving.writer import WriterProcess, split_frames

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
    # A plain record finds the room the held batches take: 1,800 bytes do not fit beside them.
    assert not proc.send(b"c", b"x" * 1800)
    assert sample("kubeml_capture_dropped_records_total", metrics, reason="buffer_full") == 2
    proc.flush()
    assert proc.close(10)
    [(kind, payload)], end = split_frames(got.read_bytes())
    assert kind == b"c" and end == got.stat().st_size
    block = parse_frames([payload])
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


def test_frames_the_child_did_not_take_whole_are_counted_lost(tmp_path: Any) -> None:
    """The pipe full (the child not reading), a frame can be half written: when the
    child dies, what the pipe did not take is dropped and counted, the half-written
    frame with it (the child drops a frame cut short), each frame by its own records."""
    import array
    import fcntl
    import termios
    import time

    from kubeml.serving.writer import HEADER, WriterProcess

    metrics = ServerMetrics("iris", "3")
    proc = WriterProcess(max_bytes=4_000_000, argv=["sleep", "600"])
    proc.channel(b"c", {}, metrics.capture)
    proc.start(None)
    assert proc._proc is not None and proc._proc.stdin is not None
    sizes = [300_000, 300_000, 300_000, 300_000, 300_000]
    for i, size in enumerate(sizes):
        assert proc.send(b"c", b"x" * size, records=i + 1)
    proc.flush(timeout=0.2)  # as much as the pipe takes
    queued = array.array("i", [0])
    fcntl.ioctl(proc._proc.stdin.fileno(), termios.FIONREAD, queued)
    assert 0 < queued[0] < sum(sizes)
    ends = np.cumsum([HEADER + size for size in sizes])
    lost = sum(i + 1 for i, end in enumerate(ends) if end > queued[0])
    proc._proc.kill()
    deadline = time.monotonic() + 10
    while not proc._gone.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc._gone.is_set(), "the reader never saw the child's output end"
    proc.flush(timeout=0)
    assert sample("kubeml_capture_dropped_records_total", metrics, reason="write_failed") == lost
    assert not proc.close(5)


def test_the_writer_child_pauses_between_reads_no_longer_than_half_the_pipe_takes() -> None:
    """The child sleeps between reads (woken by every feed it ran cold: 4x the CPU per
    record), at most ``pause``, never longer than the last read's rate takes to fill
    half the pipe, and not at all after a read of half the pipe or more; every whole
    frame reaches its kind, also one split between reads; one cut short by the end
    of input is dropped."""
    from kubeml.serving import writer

    class Kind:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        def take(self, w: Any, spec: Any, payloads: list[bytes]) -> int:
            self.payloads += payloads
            return 0

    line = writer.frame(b"c", b"x" * 95)  # 100 bytes
    assert len(line) == 100
    now = [0.0]
    # (seconds the read waits for input, what it finds)
    reads = iter([
        (1.0, line),  # 100 B/s: the full pause
        (0.0, line * 3),  # 600 B/s over the pause: half the pipe takes 0.83 s
        (0.0, line * 10),  # a full pipe: read on
        (0.0, line * 6),  # half full: read on
        (0.1, line * 4),  # 4,000 B/s: half the pipe takes 0.125 s
        (0.0, line[:40]),  # a frame split between two reads
        (0.0, line[40:] + line[:-1]),  # and one cut short by the end of input
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
    assert kind.payloads == [b"x" * 95] * 25


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


def test_each_kinds_frames_reach_its_writer_in_order() -> None:
    """Captures and feedback share the pipe: a read's frames go to their kinds, in
    order within each kind; a kind no writer has is ignored."""
    from kubeml.serving import writer

    class Kind:
        def __init__(self) -> None:
            self.calls: list[list[bytes]] = []

        def take(self, w: Any, spec: Any, payloads: list[bytes]) -> int:
            self.calls.append(list(payloads))
            return 0

    data = b"".join(
        writer.frame(kind, payload)
        for kind, payload in [
            (b"c", b"c1"), (b"f", b"f1"), (b"z", b"z1"), (b"c", b""), (b"f", b"f2\n"),
        ]
    ) + writer.frame(b"c", b"c3")[:-1]  # fmt: skip
    frames, end = writer.split_frames(data)
    assert end == len(data) - len(writer.frame(b"c", b"c3")) + 1
    capture, feedback = Kind(), Kind()
    writer.dispatch(frames, {b"c": (None, capture, {}), b"f": (None, feedback, {})})  # type: ignore[dict-item]
    assert capture.calls == [[b"c1", b""]]
    assert feedback.calls == [[b"f1", b"f2\n"]]


def test_a_writer_child_survives_records_it_cannot_read() -> None:
    """A record that is JSON but not a record is skipped, and a kind whose reading
    fails loses that read only: the other kinds' frames are still taken."""
    from kubeml.serving import writer

    class Writer:
        name = "feedback"

        def __init__(self) -> None:
            self.offered: list[Any] = []

        def offer(self, rec: Any, cost: int) -> bool:
            self.offered.append((rec, cost))
            return True

    w = Writer()
    payloads = [b"{}", b"[]", b'"x"', b"{not json", b'{"truth": [1, 2]}']
    held = writer.offer_records(w, payloads, lambda rec: len(rec["truth"]))  # type: ignore[arg-type]
    assert held == 1 and w.offered == [({"truth": [1, 2]}, 2)]

    class Broken:
        def take(self, w: Any, spec: Any, payloads: list[bytes]) -> int:
            raise RuntimeError("a bug")

    class Kind:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        def take(self, w: Any, spec: Any, payloads: list[bytes]) -> int:
            self.payloads = list(payloads)
            return 0

    kind = Kind()
    frames = [(b"c", b"1"), (b"f", b"2"), (b"c", b"3")]
    writer.dispatch(frames, {b"c": (None, Broken(), {}), b"f": (None, kind, {})})  # type: ignore[dict-item]
    assert kind.payloads == [b"2"]

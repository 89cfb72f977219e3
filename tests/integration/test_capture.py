"""Request capture by the model server process against the real S3 server: records
read back with pyarrow, sampling within binomial bounds, an S3 outage during traffic
(requests keep succeeding, drops are counted, capture resumes), and SIGTERM flushing
every answered request."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest

from tests.support.server import (
    FEATURES,
    Artifacts,
    ServerProcess,
    get,
    post,
    start_server,
    stored_artifacts,
    wait_for,
)
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def artifacts(s3_env: dict[str, str]) -> Iterator[Artifacts]:
    with stored_artifacts(s3_env) as a:
        yield a


def capture_server(
    s3_env: dict[str, str], a: Artifacts, tmp: Path, prefix: str, **env: str
) -> ServerProcess:
    overrides = {
        "KUBEML_CAPTURE_URI": f"s3://{s3_env['KUBEML_BUCKET']}/{prefix}",
        "KUBEML_CAPTURE_FLUSH_SECONDS": "0.5",
        "KUBEML_POD_NAME": "capture-test",
        **env,
    }
    srv = start_server(s3_env, a, tmp, a.uri, overrides)
    wait_for(lambda: get(srv.base + "/v2/health/ready")[0] == 200 or None, "readiness")
    return srv


def records(s3_client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            body = s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return out


def infer(srv: ServerProcess, rid: str | None = None) -> tuple[int, Any]:
    doc: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]
    }
    if rid is not None:
        doc["id"] = rid
    return post(srv.base + "/v2/models/iris/infer", doc)


def metric(srv: ServerProcess, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = get(srv.base + "/metrics")[1].decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_every_request_is_captured_and_sigterm_flushes_what_is_held(
    s3_env: dict[str, str], artifacts: Artifacts, s3_client: Any, tmp_path: Path
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    prefix = f"namespaces/t-cap-{uuid.uuid4().hex[:6]}/captures/iris/"
    # A flush interval longer than the test: only SIGTERM writes these records.
    srv = capture_server(s3_env, artifacts, tmp_path, prefix, KUBEML_CAPTURE_FLUSH_SECONDS="3600")
    try:
        n = 150
        ids = []
        for i in range(n):
            status, doc = infer(srv, f"req-{i}" if i % 2 else None)
            assert status == 200, doc
            ids.append(doc["id"])
        assert records(s3_client, bucket, prefix) == []
    finally:
        assert srv.stop() == 0, srv.log.read_text()
    got = records(s3_client, bucket, prefix)
    assert sorted(r["id"] for r in got) == sorted(ids)
    for r in got:
        assert r["rows"] == 1 and r["modelversion"] == "iris-v1" and r["time"] is not None
        assert [r["inputs"][f][0] for f in FEATURES] == ROW
        assert r["outputs"]["predict"] == [0]


def test_ten_percent_is_within_binomial_bounds(
    s3_env: dict[str, str], artifacts: Artifacts, s3_client: Any, tmp_path: Path
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    prefix = f"namespaces/t-cap-{uuid.uuid4().hex[:6]}/captures/iris/"
    srv = capture_server(s3_env, artifacts, tmp_path, prefix, KUBEML_CAPTURE_SAMPLE_PERCENT="10")
    n = 1000
    try:
        ids = {infer(srv)[1]["id"] for _ in range(n)}
    finally:
        assert srv.stop() == 0, srv.log.read_text()
    got = records(s3_client, bucket, prefix)
    # mean 100, sd sqrt(1000 * 0.1 * 0.9) = 9.5: a 5 sd band fails once in 3.5 million
    assert 100 - 48 <= len(got) <= 100 + 48
    assert {r["id"] for r in got} <= ids


def test_s3_outage_during_traffic_drops_and_counts_and_capture_resumes(
    s3_env: dict[str, str], artifacts: Artifacts, s3_client: Any, tmp_path: Path
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    prefix = f"namespaces/t-cap-{uuid.uuid4().hex[:6]}/captures/iris/"
    endpoint = urlparse(s3_env["AWS_ENDPOINT_URL"])
    with TcpProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 80)) as proxy:
        srv = capture_server({**s3_env, "AWS_ENDPOINT_URL": proxy.url}, artifacts, tmp_path, prefix)
        failures: list[Any] = []
        stop = threading.Event()
        sent = [0]

        def traffic() -> None:
            while not stop.is_set():
                status, doc = infer(srv)
                sent[0] += 1
                if status != 200:
                    failures.append((status, doc))

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        try:
            wait_for(
                lambda: metric(srv, "kubeml_capture_records_total") > 0 or None, "first capture"
            )
            proxy.cut()
            at_cut = sent[0]
            wait_for(
                lambda: metric(srv, "kubeml_capture_dropped_records_total") >= 20 or None,
                "dropped records counted while S3 is unreachable",
            )
            assert sent[0] > at_cut  # requests went on during the outage
            written = metric(srv, "kubeml_capture_records_total")
            proxy.start()
            wait_for(
                lambda: metric(srv, "kubeml_capture_records_total") > written + 20 or None,
                "capture resuming once S3 is back",
            )
        finally:
            stop.set()
            t.join(30)
            final_written = metric(srv, "kubeml_capture_records_total")
            dropped = metric(srv, "kubeml_capture_dropped_records_total")
            assert srv.stop() == 0, srv.log.read_text()
        assert failures == []
    got = records(s3_client, bucket, prefix)
    # Every record the server counted as written is in S3; the rest were counted as
    # dropped (the few after the last scrape were flushed by SIGTERM).
    assert len(got) >= final_written
    assert len(got) + dropped <= sent[0] and len(got) + dropped >= sent[0] - 1
    assert json.loads(json.dumps(got[0]["outputs"]))["predict"] == [0]

"""`kubeml prepare` (runtime.prepare.main) in-process against a real S3 server."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pandas as pd
import pytest

from kubeml.runtime.prepare import main
from kubeml.storage import ArtifactStore, sha256_bytes
from kubeml.storage.devserver import SeaweedS3, free_ports, shared_server

pytestmark = pytest.mark.integration

IRIS: dict[str, Any] = {"source": {"builtin": {"name": "iris"}}, "target": "target"}


def synthetic(seed: int, rows: int = 2000) -> dict[str, Any]:
    return {
        "source": {
            "synthetic": {"task": "classification", "rows": rows, "features": 8, "seed": seed}
        },
        "target": "target",
        "split": {"validation": 0.1, "test": 0.2, "stratify": True},
    }


@pytest.fixture(scope="module")
def server() -> SeaweedS3:
    return shared_server()


@pytest.fixture
def store(server: SeaweedS3) -> ArtifactStore:
    return ArtifactStore(server.settings(), env=server.env())


class Prepare:
    """Runs main() with the env a preparation Job gets, and reads its result manifest."""

    def __init__(self, server: SeaweedS3, store: ArtifactStore, mp: pytest.MonkeyPatch):
        self.store = store
        self.mp = mp
        for k, v in server.env().items():
            mp.setenv(k, v)
        for k in (
            "KUBEML_MEMORY_LIMIT_BYTES",
            "KUBEML_SOURCE_AWS_ACCESS_KEY_ID",
            "KUBEML_SOURCE_AWS_SECRET_ACCESS_KEY",
        ):
            mp.delenv(k, raising=False)

    def __call__(self, spec: dict[str, Any], **env: str) -> tuple[int, dict[str, Any]]:
        key = f"results/test/{uuid.uuid4().hex}.json"
        doc = {"namespace": "ns", "name": "ds", "generation": 1, "spec": spec}
        self.mp.setenv("KUBEML_DATASET", json.dumps(doc))
        self.mp.setenv("KUBEML_RESULT_KEY", key)
        for k, v in env.items():
            self.mp.setenv(k, v)
        code = main([])
        return code, self.store.get_json(key)


@pytest.fixture
def prepare(server: SeaweedS3, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> Prepare:
    return Prepare(server, store, monkeypatch)


def listing(store: ArtifactStore, prefix: str) -> list[tuple[str, int, Any, Any]]:
    return [(o.key, o.size, o.etag, o.last_modified) for o in store.list_prefix(prefix)]


def test_iris_published_and_rerun_creates_nothing(prepare: Prepare, store: ArtifactStore) -> None:
    code, r = prepare(IRIS)
    assert code == 0
    assert r["ok"] is True
    assert r["rows"] == {"total": 150, "train": 120, "validation": 0, "test": 30}
    prefix = f"namespaces/ns/datasets/{r['version']}/"
    assert r["uri"] == f"s3://{store.bucket}/{prefix}"
    assert [c["name"] for c in r["columns"]][-1] == "target"
    for entry in r["files"].values():
        key = store.parse_uri(entry["uri"])[1]
        data = store.get_bytes(key, expected_sha256=entry["sha256"])
        assert len(data) == entry["size"]
        assert store.head(key).sha256 == entry["sha256"]
    train = pd.read_parquet(io.BytesIO(store.get_bytes(prefix + "train.parquet")))
    assert len(train) == 120
    profile = store.get_json(prefix + "profile.json")
    assert r["profile"]["sha256"] == sha256_bytes(store.get_bytes(prefix + "profile.json"))
    assert profile["rows"] == 120
    before = listing(store, prefix)
    assert [k for k, *_ in before] == [
        prefix + n
        for n in ("manifest.json", "profile.json", "schema.json", "test.parquet", "train.parquet")
    ]
    datasets_before = listing(store, "namespaces/ns/datasets/")

    code, again = prepare(IRIS)
    assert code == 0
    assert again["reused"] is True
    assert again["version"] == r["version"]
    # The same keys, sizes and LastModified: nothing was uploaded again.
    assert listing(store, "namespaces/ns/datasets/") == datasets_before


def test_synthetic_rows_and_a_changed_seed_is_a_new_version(
    prepare: Prepare, store: ArtifactStore
) -> None:
    code, a = prepare(synthetic(seed=1))
    assert code == 0
    assert a["rows"] == {"total": 2000, "train": 1400, "validation": 200, "test": 400}
    assert set(a["files"]) == {"train", "validation", "test", "schema", "profile"}
    _, same = prepare(synthetic(seed=1))
    assert same["version"] == a["version"]
    _, b = prepare(synthetic(seed=2))
    assert b["ok"] is True
    assert b["version"] != a["version"]
    assert b["reused"] is False
    assert store.exists(f"namespaces/ns/datasets/{b['version']}/manifest.json")


def test_s3_prefix_parts_are_read_in_key_order(prepare: Prepare, store: ArtifactStore) -> None:
    base = f"raw/{uuid.uuid4().hex[:8]}/"
    rows = [f"{i},{i % 2}" for i in range(40)]
    store.put_bytes(base + "part-1.csv", ("x,y\n" + "\n".join(rows[20:]) + "\n").encode())
    store.put_bytes(base + "part-0.csv", ("x,y\n" + "\n".join(rows[:20]) + "\n").encode())
    store.put_bytes(base + "_SUCCESS", b"")
    code, r = prepare({"source": {"s3": {"prefix": base}}, "target": "y"})
    assert code == 0, r
    assert r["rows"]["total"] == 40
    assert r["columns"] == [
        {"name": "x", "type": "integer", "role": "feature"},
        {"name": "y", "type": "integer", "role": "target"},
    ]


@pytest.fixture
def raw(store: ArtifactStore) -> str:
    base = f"raw/{uuid.uuid4().hex[:8]}/"
    store.put_bytes(base + "empty.csv", b"")
    store.put_bytes(base + "bad.csv", b"a,b\n1,2\n3,4,5\n")
    store.put_bytes(
        base + "good.csv", b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(50))
    )
    return base


def bad_cases(raw: str) -> list[tuple[dict[str, Any], str, str]]:
    return [
        ({**IRIS, "target": "species"}, "TargetMissing", "'species'"),
        (
            {
                **IRIS,
                "validation": {
                    "minRows": 1000,
                    "maxNullFraction": 0.0,
                    "ranges": [{"column": "target", "max": 1}],
                },
            },
            "ValidationFailed",
            "2 validation checks failed",
        ),
        ({"source": {"s3": {"key": raw + "empty.csv"}}, "target": "b"}, "EmptyFile", "empty.csv"),
        ({"source": {"s3": {"key": raw + "bad.csv"}}, "target": "b"}, "MalformedCSV", "line 3"),
        (
            {"source": {"s3": {"key": raw + "nope.csv"}}, "target": "b"},
            "SourceNotFound",
            raw + "nope.csv",
        ),
        (
            {"source": {"s3": {"prefix": raw + "none/"}}, "target": "b"},
            "SourceNotFound",
            "no objects under",
        ),
        (
            {
                "source": {"s3": {"key": raw + "good.csv"}},
                "target": "b",
                "validation": {"requiredColumns": [{"name": "a", "type": "boolean"}]},
            },
            "ValidationFailed",
            "1 validation check failed",
        ),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_inputs_fail_permanently_with_a_reason(
    prepare: Prepare, store: ArtifactStore, raw: str, case: int
) -> None:
    spec, reason, fragment = bad_cases(raw)[case]
    before = listing(store, "namespaces/ns/datasets/")
    code, r = prepare(spec)
    assert code == 2
    assert r["ok"] is False
    assert r["reason"] == reason
    assert fragment in r["message"]
    assert r["transient"] is False
    assert listing(store, "namespaces/ns/datasets/") == before


def test_validation_failures_each_listed(prepare: Prepare) -> None:
    spec = {**IRIS, "validation": {"minRows": 1000, "ranges": [{"column": "target", "max": 1}]}}
    _, r = prepare(spec)
    assert r["failures"] == [
        "minRows: 150 rows, fewer than the required 1000",
        "ranges: column 'target' has 50 values above max 1 (highest 2)",
    ]


def test_source_access_denied_with_its_own_credentials(
    prepare: Prepare, server: SeaweedS3, raw: str
) -> None:
    spec = {
        "source": {"s3": {"key": raw + "good.csv", "credentials": {"secretName": "other"}}},
        "target": "b",
    }
    code, r = prepare(
        spec,
        KUBEML_SOURCE_AWS_ACCESS_KEY_ID=server.access_key,
        KUBEML_SOURCE_AWS_SECRET_ACCESS_KEY="wrong-secret",
    )
    assert code == 2
    assert r["reason"] == "AccessDenied"
    assert f"s3://{server.bucket}/{raw}good.csv" in r["message"]
    code, r = prepare(
        spec,
        KUBEML_SOURCE_AWS_ACCESS_KEY_ID=server.access_key,
        KUBEML_SOURCE_AWS_SECRET_ACCESS_KEY=server.secret_key,
    )
    assert (code, r["ok"], r["rows"]["total"]) == (0, True, 50)


def test_source_larger_than_memory_limit(prepare: Prepare, raw: str) -> None:
    spec = {"source": {"s3": {"key": raw + "good.csv"}}, "target": "b"}
    code, r = prepare(spec, KUBEML_MEMORY_LIMIT_BYTES="100")
    assert code == 2
    assert r["reason"] == "SourceTooLarge"
    assert "memory limit of 100 B" in r["message"]


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    _Files.files = {
        "/data.csv": b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 3) for i in range(60)),
        "/blob": b"PAR1 not parquet at all",
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_sources(prepare: Prepare, http_base: str) -> None:
    code, r = prepare({"source": {"url": {"url": f"{http_base}/data.csv"}}, "target": "b"})
    assert (code, r["ok"], r["rows"]["total"]) == (0, True, 60)

    code, r = prepare({"source": {"url": {"url": f"{http_base}/gone.csv"}}, "target": "b"})
    assert (code, r["reason"]) == (2, "SourceNotFound")
    assert "HTTP 404" in r["message"]

    code, r = prepare({"source": {"url": {"url": f"{http_base}/blob"}}, "target": "b"})
    assert (code, r["reason"]) == (2, "MalformedParquet")

    code, r = prepare(
        {"source": {"url": {"url": f"{http_base}/data.csv"}}, "target": "b"},
        KUBEML_MEMORY_LIMIT_BYTES="64",
    )
    assert (code, r["reason"]) == (2, "SourceTooLarge")

    (port,) = free_ports(1)
    code, r = prepare({"source": {"url": {"url": f"http://127.0.0.1:{port}/x.csv"}}, "target": "b"})
    assert (code, r["reason"], r["transient"]) == (3, "SourceUnreachable", True)


def test_unreachable_artifact_store_is_transient(
    prepare: Prepare, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KUBEML_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("KUBEML_DATASET", json.dumps({"namespace": "n", "name": "d", "spec": IRIS}))
    monkeypatch.setenv("KUBEML_RESULT_KEY", "results/unreachable.json")
    assert main([]) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert any("cannot write the result manifest: EndpointUnreachable" in m for m in lines)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback for expected errors

"""The preparation program's orchestration, with an in-memory stand-in for S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeml.data.errors import DataError
from kubeml.runtime.fetch import _http_error, check_size
from kubeml.runtime.prepare import EXIT_BAD_INPUT, EXIT_OK, EXIT_TRANSIENT, prepare_dataset
from kubeml.runtime.prepare_request import memory_limit, read_request
from kubeml.storage import KeyNotFound, canonical_json, sha256_bytes
from kubeml.storage.store import ObjectInfo


class MemoryStore:
    """The subset of ArtifactStore that publishing uses, kept in a dict."""

    bucket = "mem"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def _put(self, key: str, data: bytes) -> ObjectInfo:
        self.puts += 1
        self.objects[key] = data
        return ObjectInfo(self.bucket, key, len(data), sha256_bytes(data))

    def put_file(self, key: str, path: Path, **_: Any) -> ObjectInfo:
        return self._put(key, Path(path).read_bytes())

    def put_json(self, key: str, obj: object) -> ObjectInfo:
        return self._put(key, canonical_json(obj))

    def get_json(self, key: str) -> Any:
        if key not in self.objects:
            raise KeyNotFound(f"{self.uri(key)}: no such key", bucket=self.bucket, key=key)
        return json.loads(self.objects[key])

    def head(self, key: str) -> ObjectInfo:
        data = self.objects[key]
        return ObjectInfo(self.bucket, key, len(data), sha256_bytes(data))


def env_for(spec: dict[str, Any], **extra: str) -> dict[str, str]:
    doc = {"namespace": "ns", "name": "d", "generation": 2, "spec": spec}
    return {"KUBEML_DATASET": json.dumps(doc), **extra}


IRIS = {"source": {"builtin": {"name": "iris"}}, "target": "target"}


def run(spec: dict[str, Any], store: MemoryStore, **extra: str) -> Any:
    env = env_for(spec, **extra)
    return prepare_dataset(read_request(env), store, env)  # type: ignore[arg-type]


def test_success_result_shape_and_reuse() -> None:
    store = MemoryStore()
    first = run(IRIS, store)
    assert first.exit_code == EXIT_OK
    r = first.result
    assert r["ok"] is True
    assert r["reused"] is False
    assert r["rows"] == {"total": 150, "train": 120, "validation": 0, "test": 30}
    assert r["uri"] == f"s3://mem/namespaces/ns/datasets/{r['version']}/"
    assert r["profile"]["uri"] == f"s3://mem/namespaces/ns/datasets/{r['version']}/profile.json"
    assert r["profile"]["sha256"] == sha256_bytes(
        store.objects[f"namespaces/ns/datasets/{r['version']}/profile.json"]
    )
    assert set(r["files"]) == {"train", "test", "schema", "profile"}
    assert r["columns"][-1] == {"name": "target", "type": "integer", "role": "target"}
    manifest = store.get_json(f"namespaces/ns/datasets/{r['version']}/manifest.json")
    assert manifest["version"] == r["version"]
    assert set(manifest["files"]) == {
        "train.parquet",
        "test.parquet",
        "schema.json",
        "profile.json",
    }

    puts = store.puts
    second = run(IRIS, store)
    assert second.result["reused"] is True
    assert second.result["version"] == r["version"]
    assert second.result["files"] == r["files"]
    assert store.puts == puts  # nothing uploaded


def test_a_broken_manifest_is_healed_not_trusted() -> None:
    store = MemoryStore()
    version = run(IRIS, store).result["version"]
    key = f"namespaces/ns/datasets/{version}/manifest.json"
    store.objects[key] = canonical_json({"version": version, "files": {}})
    again = run(IRIS, store)
    assert again.result["reused"] is False
    assert set(store.get_json(key)["files"]) == {
        "train.parquet",
        "test.parquet",
        "schema.json",
        "profile.json",
    }


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({**IRIS, "target": "species"}, "TargetMissing"),
        ({**IRIS, "validation": {"minRows": 1000}}, "ValidationFailed"),
        (
            {
                "source": {"synthetic": {"task": "regression", "rows": 10, "features": 2}},
                "target": "target",
                "split": {"validation": 0.5, "test": 0.45},  # 5 + 5 of 10 rows: no train
            },
            "EmptyPartition",
        ),
    ],
)
def test_permanent_failures(spec: dict[str, Any], reason: str) -> None:
    store = MemoryStore()
    outcome = run(spec, store)
    assert outcome.exit_code == EXIT_BAD_INPUT
    assert outcome.result["ok"] is False
    assert outcome.result["reason"] == reason
    assert outcome.result["transient"] is False
    assert store.puts == 0


def test_validation_failures_are_listed_one_by_one() -> None:
    spec = {**IRIS, "validation": {"minRows": 1000, "ranges": [{"column": "target", "max": 1}]}}
    r = run(spec, MemoryStore()).result
    assert r["failures"] == [
        "minRows: 150 rows, fewer than the required 1000",
        "ranges: column 'target' has 50 values above max 1 (highest 2)",
    ]
    assert r["message"] == "2 validation checks failed on builtin data set iris"


def test_synthetic_source_larger_than_the_memory_limit_fails_fast() -> None:
    spec = {
        "source": {"synthetic": {"task": "classification", "rows": 1_000_000, "features": 20}},
        "target": "target",
    }
    outcome = run(spec, MemoryStore(), KUBEML_MEMORY_LIMIT_BYTES=str(64 << 20))
    assert outcome.exit_code == EXIT_BAD_INPUT
    assert outcome.result["reason"] == "SourceTooLarge"
    assert "memory limit of 64.0 MiB (67108864 bytes)" in outcome.result["message"]


def test_unreachable_url_is_transient() -> None:
    spec = {"source": {"url": {"url": "http://127.0.0.1:1/x.csv"}}, "target": "y"}
    outcome = run(spec, MemoryStore())
    assert outcome.exit_code == EXIT_TRANSIENT
    assert outcome.result["reason"] == "SourceUnreachable"
    assert outcome.result["transient"] is True
    assert "http://127.0.0.1:1/x.csv" in outcome.result["message"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "InvalidRequest"),
        ({"KUBEML_DATASET": "{not json"}, "InvalidRequest"),
        ({"KUBEML_DATASET": json.dumps({"spec": {"target": "y"}})}, "InvalidSpec"),
        (env_for({"source": {"builtin": {"name": "mnist"}}, "target": "t"}), "UnknownBuiltin"),
    ],
)
def test_bad_requests(env: dict[str, str], reason: str) -> None:
    with pytest.raises(DataError) as info:
        read_request(env)
    assert info.value.reason == reason


def test_request_fields() -> None:
    req = read_request(env_for(IRIS))
    assert (req.namespace, req.name, req.generation) == ("ns", "d", 2)
    assert req.spec.target == "target"


@pytest.mark.parametrize(
    ("raw", "limit"), [("", None), ("1073741824", 1 << 30), ("junk", None), ("0", None)]
)
def test_memory_limit_parsing(raw: str, limit: int | None) -> None:
    assert memory_limit({"KUBEML_MEMORY_LIMIT_BYTES": raw}) == limit


def test_check_size_only_refuses_sources_over_the_limit() -> None:
    check_size("s3://b/k", 100, None)
    check_size("s3://b/k", 100, 100)
    with pytest.raises(DataError) as info:
        check_size("s3://b/k", 3 << 30, 1 << 30)
    assert info.value.reason == "SourceTooLarge"
    assert "s3://b/k is 3.0 GiB" in info.value.message
    assert "1.0 GiB (1073741824 bytes)" in info.value.message


@pytest.mark.parametrize(
    ("code", "reason", "transient"),
    [
        (404, "SourceNotFound", False),
        (410, "SourceNotFound", False),
        (403, "AccessDenied", False),
        (400, "SourceUnreachable", False),
        (429, "SourceUnreachable", True),
        (503, "SourceUnreachable", True),
    ],
)
def test_http_status_mapping(code: int, reason: str, transient: bool) -> None:
    err = _http_error("https://h/x.csv", code, "Whatever")
    assert (err.reason, err.transient) == (reason, transient)
    assert f"https://h/x.csv answered HTTP {code}" in err.message

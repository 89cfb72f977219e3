"""Datasets on the real control plane and S3: every source, every bad input, crashes."""

from __future__ import annotations

import copy
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess, free_port

pytestmark = pytest.mark.integration
IRIS = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
CSV = b"x1,x2,color,label\n" + b"".join(
    f"{i},{i * 0.5},{'red' if i % 2 else 'blue'},{i % 3}\n".encode() for i in range(60)
)


def dataset(
    name: str, source: dict[str, Any], target: str = "label", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": source, "target": target, **spec},
    }


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """A local http server with one CSV file (and 404 for anything else)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/data.csv":
                self.send_response(200)
                self.send_header("Content-Length", str(len(CSV)))
                self.end_headers()
                self.wfile.write(CSV)
            else:
                self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_builtin_iris_reaches_ready_with_its_rows_and_a_content_version(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    kube.create(kube_api, ml_namespace, IRIS)
    ds = kube.wait_condition(kube_api, ml_namespace, "Dataset", "iris", "Ready", status="True")
    st = ds["status"]
    assert st["rows"] == {"total": 150, "train": 90, "validation": 30, "test": 30}
    for kstatus in ("Reconciling", "Stalled"):
        assert (kube.condition(ds, kstatus) or {}).get("status") == "False", kstatus
    assert len(st["version"]) == 64 and st["shortVersion"] == st["version"][:12]
    # Everything a namespace's Jobs write lives under that namespace's prefix.
    prefix = f"namespaces/{ml_namespace}/datasets/{st['version']}/"
    assert st["uri"] == f"s3://{s3_env['KUBEML_BUCKET']}/{prefix}"
    assert {c["name"] for c in st["columns"] if c["role"] == "target"} == {"target"}
    assert kube.condition(ds, "Validated")["status"] == "True"  # type: ignore[index]
    assert ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
    # Where the preparation's time went, from the wait for its pod to the upload; and
    # the same, counted once, in the operator's histograms.
    assert [s["name"] for s in st["stages"]] == ["pod", "fetch", "validate", "write", "upload"]
    assert all(s["seconds"] >= 0 for s in st["stages"])
    counted = {"kind": "Dataset", "stage": "validate"}
    assert operator.metric("kubeml_pipeline_stage_duration_seconds_count", **counted) >= 1
    assert operator.metric("kubeml_pipeline_runs_total", kind="Dataset", result="succeeded") >= 1
    listed = s3_client.list_objects_v2(Bucket=s3_env["KUBEML_BUCKET"], Prefix=prefix)
    names = {o["Key"].rsplit("/", 1)[-1] for o in listed["Contents"]}
    assert {"manifest.json", "profile.json"} <= names

    # The same content under another name is the same version, and no new objects.
    before = {o["Key"]: o["LastModified"] for o in listed["Contents"]}
    twin = copy.deepcopy(IRIS)
    twin["metadata"]["name"] = "iris-twin"
    kube.create(kube_api, ml_namespace, twin)
    again = kube.wait_condition(
        kube_api, ml_namespace, "Dataset", "iris-twin", "Ready", status="True"
    )
    assert again["status"]["version"] == st["version"]
    after = s3_client.list_objects_v2(Bucket=s3_env["KUBEML_BUCKET"], Prefix=prefix)["Contents"]
    assert {o["Key"]: o["LastModified"] for o in after} == before

    # A different split seed is different content.
    other = copy.deepcopy(IRIS)
    other["metadata"]["name"] = "iris-seed7"
    other["spec"]["split"]["seed"] = 7
    kube.create(kube_api, ml_namespace, other)
    seeded = kube.wait_condition(
        kube_api, ml_namespace, "Dataset", "iris-seed7", "Ready", status="True"
    )
    assert seeded["status"]["version"] != st["version"]
    # One Job per Dataset, never more.
    assert len(kube.jobs(kube_api, ml_namespace, "kubeml.io/owner-name=iris")) == 1


def test_synthetic_s3_and_url_sources(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
    http_server: str,
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/raw/data.csv", Body=CSV)
    s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/parts/a.csv", Body=CSV)
    s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/parts/b.csv", Body=CSV)
    wanted = {
        "synthetic": (
            dataset(
                "synthetic",
                {"synthetic": {"task": "regression", "rows": 500, "features": 6, "seed": 3}},
                target="target",
            ),
            500,
        ),
        "s3-key": (dataset("s3-key", {"s3": {"key": f"{ml_namespace}/raw/data.csv"}}), 60),
        "s3-prefix": (
            dataset("s3-prefix", {"s3": {"prefix": f"{ml_namespace}/parts/", "format": "csv"}}),
            120,
        ),
        "url": (dataset("url", {"url": {"url": f"{http_server}/data.csv"}}), 60),
    }
    for doc, _ in wanted.values():
        kube.create(kube_api, ml_namespace, doc)
    for name, (_, rows) in wanted.items():
        ds = kube.wait_condition(kube_api, ml_namespace, "Dataset", name, "Ready", status="True")
        assert ds["status"]["rows"]["total"] == rows, name


def test_cleaning_drops_duplicates_and_unlabelled_rows_and_says_how_many(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    """Two exports of the same 60 rows, and 7 rows nobody labelled yet."""
    bucket = s3_env["KUBEML_BUCKET"]
    unlabelled = b"x1,x2,color,label\n" + b"".join(
        f"{100 + i},{i},red,\n".encode() for i in range(7)
    )
    for part, body in (("a", CSV), ("b", CSV), ("c", unlabelled)):
        s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/dups/{part}.csv", Body=body)
    source = {"s3": {"prefix": f"{ml_namespace}/dups/", "format": "csv"}}
    rules = {"dropMissingTarget": True, "dropDuplicates": True}
    kube.create(kube_api, ml_namespace, dataset("cleaned", source, cleaning=rules))
    ds = kube.wait_condition(kube_api, ml_namespace, "Dataset", "cleaned", "Ready", status="True")
    assert ds["status"]["removed"] == {"missingTarget": 7, "duplicates": 60}
    assert ds["status"]["rows"]["total"] == 60
    ready = kube.condition(ds, "Ready")
    assert ready is not None
    assert "removed 7 without a target, 60 duplicate" in ready["message"]


def test_every_bad_input_lands_in_a_clear_condition(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
    http_server: str,
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        ml_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="wrong-keys"),
            string_data={
                "AWS_ACCESS_KEY_ID": s3_env["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": "not-the-secret",
            },
        ),
    )
    s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/empty.csv", Body=b"")
    s3_client.put_object(
        Bucket=bucket,
        Key=f"{ml_namespace}/bad.csv",
        Body=b'a,b,label\n1,2,3\n"unterminated,4,5\n6,7\n',
    )
    s3_client.put_object(Bucket=bucket, Key=f"{ml_namespace}/ok.csv", Body=CSV)
    ok_key = {"s3": {"key": f"{ml_namespace}/ok.csv"}}
    dead = f"http://127.0.0.1:{free_port()}/data.csv"
    cases = [
        (dataset("no-target", ok_key, target="nope"), "TargetMissing", "nope"),
        (
            dataset("missing-key", {"s3": {"key": f"{ml_namespace}/absent.csv"}}),
            "SourceNotFound",
            "absent.csv",
        ),
        (
            dataset(
                "denied",
                {
                    "s3": {
                        "key": f"{ml_namespace}/ok.csv",
                        "credentials": {"secretName": "wrong-keys"},
                    }
                },
            ),
            "AccessDenied",
            bucket,
        ),
        (dataset("empty", {"s3": {"key": f"{ml_namespace}/empty.csv"}}), "EmptyFile", "empty.csv"),
        (
            dataset("malformed", {"s3": {"key": f"{ml_namespace}/bad.csv"}}),
            "MalformedCSV",
            "bad.csv",
        ),
        (
            dataset("url-404", {"url": {"url": f"{http_server}/missing.csv"}}),
            "SourceNotFound",
            "404",
        ),
        (dataset("url-dead", {"url": {"url": dead}}), "SourceUnreachable", "127.0.0.1"),
        (
            dataset(
                "rules",
                ok_key,
                validation={
                    "minRows": 1000,
                    "requiredColumns": [{"name": "color", "type": "number"}],
                    "ranges": [{"column": "x1", "max": 10}],
                    "allowedCategories": [{"column": "color", "values": ["red"]}],
                },
            ),
            "ValidationFailed",
            "x1",
        ),
        (
            dataset(
                "non-numeric",
                ok_key,
                features=["x1", "color"],
                validation={"requiredColumns": [{"name": "color", "type": "number"}]},
            ),
            "NonNumericFeature",
            "color",
        ),
        (
            dataset(
                "empty-split",
                {"synthetic": {"task": "regression", "rows": 10, "features": 2}},
                target="target",
                split={"test": 0.9, "validation": 0.09},
            ),
            "EmptyPartition",
            "train",
        ),
        (
            dataset(
                "too-large",
                {"synthetic": {"task": "regression", "rows": 3_000_000, "features": 40}},
                target="target",
                resources={"limits": {"memory": "600Mi"}},
            ),
            # The size check refuses it; should the imports alone brush the limit
            # first, the kill is the other correct way to fail once, naming it.
            ("SourceTooLarge", "OOMKilled"),
            "limit",
        ),
        (
            # The runtime's own imports exceed 120Mi: the agent kills it like the
            # kubelet would, and the Job fails once instead of looping.
            dataset(
                "oom",
                {"builtin": {"name": "iris"}},
                target="target",
                resources={"limits": {"memory": "120Mi"}},
            ),
            "OOMKilled",
            "120Mi",
        ),
    ]
    for doc, _, _ in cases:
        kube.create(kube_api, ml_namespace, doc)
    for doc, reason, needle in cases:
        name = doc["metadata"]["name"]
        ds = kube.wait_condition(
            kube_api,
            ml_namespace,
            "Dataset",
            name,
            "Ready",
            status="False",
            reasons=reason if isinstance(reason, tuple) else (reason,),
            timeout=240,
        )
        message = kube.condition(ds, "Ready")["message"]  # type: ignore[index]
        assert needle in message, (name, message)
        assert name in message, (name, message)
        # kstatus (Flux, kpt) sees a failure, not work in progress.
        stalled = kube.condition(ds, "Stalled") or {}
        assert (stalled.get("status"), stalled.get("reason")) == (
            "True",
            kube.condition(ds, "Ready")["reason"],  # type: ignore[index]
        ), (name, stalled)
    # The bad-input Jobs failed once, without retries, and the operator is unharmed.
    oom = kube.jobs(kube_api, ml_namespace, "kubeml.io/owner-name=oom")
    assert len(oom) == 1 and (oom[0]["status"].get("failed") or 0) == 1
    rules = kube.get(kube_api, ml_namespace, "Dataset", "rules")
    validated = kube.condition(rules, "Validated")
    assert validated is not None and validated["status"] == "False"
    for needle in ("1000", "x1", "color"):
        assert needle in validated["message"]
    assert operator.alive()


def test_operator_killed_during_preparation_leaves_one_job_and_a_ready_dataset(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    ml_namespace: str,
) -> None:
    doc = dataset(
        "crash",
        {"synthetic": {"task": "classification", "rows": 20000, "features": 10, "seed": 1}},
        target="target",
    )
    kube.create(kube_api, ml_namespace, doc)
    poll(
        lambda: kube.jobs(kube_api, ml_namespace, "kubeml.io/owner-name=crash") or None,
        timeout=60,
        what="preparation Job",
    )
    operator.restart()
    kube.wait_condition(kube_api, ml_namespace, "Dataset", "crash", "Ready", status="True")
    operator.restart()
    ds = kube.wait_condition(kube_api, ml_namespace, "Dataset", "crash", "Ready", status="True")
    assert len(kube.jobs(kube_api, ml_namespace, "kubeml.io/owner-name=crash")) == 1
    assert ds["status"]["rows"]["total"] == 20000

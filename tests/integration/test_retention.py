"""spec.capture.retention against the real S3 server: the operator deletes a
Deployment's capture and feedback hour partitions once they are older than the
retention, keeps recent ones, and touches nothing outside that Deployment's own
prefixes (another Deployment's, another namespace's, a file that is no partition)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from kubeml.storage import layout
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration


def partition_key(root: str, hour: datetime) -> str:
    return (
        f"{root}model=iris-classifier/version=1/hour={hour:%Y-%m-%dT%H}/"
        "iris-7d9f-abcde-20261206T000000-000001.parquet"
    )


def exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def test_retention_removes_old_partitions_of_its_deployment_only(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    namespace: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    bucket = s3_env["KUBEML_BUCKET"]
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=3), now - timedelta(hours=2)
    other_ns = f"t-other-{uuid.uuid4().hex[:6]}"  # never created: its keys just exist
    mine = [layout.capture_prefix(namespace, "iris"), layout.feedback_prefix(namespace, "iris")]
    expired = [partition_key(root, old) for root in mine] + [
        partition_key(mine[0], old - timedelta(hours=5))
    ]
    kept = [partition_key(root, recent) for root in mine] + [
        partition_key(mine[0], now),
        f"{mine[0]}README.txt",  # not a partition: never chosen
        partition_key(layout.capture_prefix(namespace, "iris-2"), old),
        partition_key(layout.feedback_prefix(namespace, "iris-2"), old),
        partition_key(layout.capture_prefix(other_ns, "iris"), old),
        partition_key(layout.feedback_prefix(other_ns, "iris"), old),
    ]
    try:
        for key in expired + kept:
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"PAR1")
        kube.create(
            kube_api,
            namespace,
            {
                "apiVersion": "kubeml.io/v1alpha1",
                "kind": "Deployment",
                "metadata": {"name": "iris"},
                # No such model version: retention does not depend on serving.
                "spec": {
                    "model": "iris-classifier",
                    "version": 1,
                    "capture": {"retention": "24h"},
                },
            },
        )
        poll(
            lambda: not any(exists(s3_client, bucket, k) for k in expired),
            timeout=90,
            what="the expired partitions deleted",
        )
        assert [k for k in kept if not exists(s3_client, bucket, k)] == []
    finally:
        for key in kept:
            if key.startswith(layout.tenant_prefix(other_ns)):
                s3_client.delete_object(Bucket=bucket, Key=key)

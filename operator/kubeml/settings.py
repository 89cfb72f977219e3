"""Operator settings, fixed at startup from the environment.

The operator never reads Secrets: S3 credentials reach the operator and every
pod it creates through `secretKeyRef`, so only the Secret's *name* is a setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What the controllers need to know about the installation."""

    bucket: str = "kubeml"
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_verify: bool = True
    # Secret (in each workload namespace) holding AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY for the pods the operator creates.
    s3_secret: str = "kubeml-s3"
    runtime_image: str = "ghcr.io/kubeml/runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    # Empty: every namespace (cluster-wide install).
    namespaces: tuple[str, ...] = ()
    # Loopback unless told otherwise: run on a host (the local control plane, whose
    # pods listen on their own 127.x addresses, or a laptop) it collides with nothing
    # and exposes nothing. The chart always sets it (the pod IP, or 0.0.0.0).
    bind_address: str = "127.0.0.1"
    health_port: int = 8080
    metrics_port: int = 8081
    # The safety net: a relist and one reconcile of every object this often.
    # Time-based work (schedules, cooldowns, artifact re-checks) does not wait for
    # it; each object asks to be looked at again when its next work is due.
    resync_seconds: float = 600.0
    # Reconciles running at once (each object is reconciled by one at a time). Most of
    # a reconcile is waiting for the API, so more workers than cores pay off.
    workers: int = 16
    # How often the operator looks at an unchanged artifact again (a HEAD; a changed
    # ETag or size is hashed again). Server pods verify sha256 at every load anyway.
    artifact_recheck_seconds: float = 3600.0
    # How often a retraining loop with the drift trigger reads its pods' drift.
    drift_poll_seconds: float = 60.0
    # How often a Deployment with spec.capture.retention has its expired capture and
    # feedback partitions removed (they expire by the hour: a few minutes late is fine).
    retention_sweep_seconds: float = 600.0
    # How often an optional API (the Gateway API) is looked for while a Deployment
    # asks for it, and an HTTPRoute no Gateway has accepted yet is re-read.
    discovery_seconds: float = 30.0
    # s3:// prefixes the cluster admin allows every namespace's ModelVersions to use
    # (read and serve, never delete). Otherwise a version may only point into its own
    # namespace's model space.
    shared_artifact_prefixes: tuple[str, ...] = ()
    # One active operator among replicas: a Lease in the operator's own namespace.
    leader_election: bool = False
    lease_name: str = "kubeml-operator"
    lease_namespace: str = "default"
    # This replica, in the Lease and in the user agent of its requests (the pod's name).
    identity: str = ""
    # Prometheus' HTTP API for judging rollout steps (e.g. http://prometheus.monitoring:9090);
    # empty: each server pod's /metrics. An operator setting, not a Deployment field:
    # the operator sends these requests from its own network position, and a tenant
    # must not be able to point it anywhere (or at numbers of their choosing).
    prometheus_url: str = ""
    # All of one judgement's queries together; past it the judgement is inconclusive.
    prometheus_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        namespaces = tuple(n for n in e.get("KUBEML_NAMESPACES", "").split(",") if n.strip())
        return cls(
            bucket=e.get("KUBEML_BUCKET", cls.bucket),
            s3_endpoint=e.get("AWS_ENDPOINT_URL") or None,
            s3_region=e.get("AWS_REGION", cls.s3_region),
            s3_verify=e.get("KUBEML_S3_VERIFY", "true").lower() not in ("0", "false", "no"),
            s3_secret=e.get("KUBEML_S3_SECRET", cls.s3_secret),
            runtime_image=e.get("KUBEML_RUNTIME_IMAGE", cls.runtime_image),
            image_pull_policy=e.get("KUBEML_IMAGE_PULL_POLICY", cls.image_pull_policy),
            namespaces=tuple(n.strip() for n in namespaces),
            bind_address=e.get("KUBEML_BIND_ADDRESS") or cls.bind_address,
            health_port=int(e.get("KUBEML_HEALTH_PORT", cls.health_port)),
            metrics_port=int(e.get("KUBEML_METRICS_PORT", cls.metrics_port)),
            resync_seconds=float(e.get("KUBEML_RESYNC_SECONDS", cls.resync_seconds)),
            workers=int(e.get("KUBEML_WORKERS", cls.workers)),
            artifact_recheck_seconds=float(
                e.get("KUBEML_ARTIFACT_RECHECK_SECONDS", cls.artifact_recheck_seconds)
            ),
            drift_poll_seconds=float(e.get("KUBEML_DRIFT_POLL_SECONDS", cls.drift_poll_seconds)),
            retention_sweep_seconds=float(
                e.get("KUBEML_RETENTION_SWEEP_SECONDS", cls.retention_sweep_seconds)
            ),
            discovery_seconds=float(e.get("KUBEML_DISCOVERY_SECONDS", cls.discovery_seconds)),
            shared_artifact_prefixes=tuple(
                p.strip() for p in e.get("KUBEML_SHARED_ARTIFACTS", "").split(",") if p.strip()
            ),
            leader_election=_flag(e.get("KUBEML_LEADER_ELECTION", "false")),
            lease_name=e.get("KUBEML_LEASE_NAME", cls.lease_name),
            lease_namespace=e.get("KUBEML_LEASE_NAMESPACE") or e.get("POD_NAMESPACE") or "default",
            identity=e.get("KUBEML_IDENTITY") or e.get("HOSTNAME") or "",
            prometheus_url=e.get("KUBEML_PROMETHEUS_URL", "").strip().rstrip("/"),
            prometheus_timeout_seconds=float(
                e.get("KUBEML_PROMETHEUS_TIMEOUT_SECONDS", cls.prometheus_timeout_seconds)
            ),
        )


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")

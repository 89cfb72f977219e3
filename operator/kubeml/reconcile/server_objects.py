"""Manifests for serving a ModelVersion: server Deployments, Service, HPA, monitoring."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .. import labels
from ..api.deployment import Alerts, DeploymentSpec, ServerOptions
from ..settings import Settings
from ..storage import layout
from ..storage.uri import make_uri
from . import pods

PORT = 8080
# The Open Inference Protocol's gRPC form, on its own port as KServe and MLServer do.
GRPC_PORT = 8081
CONTAINER = "server"


def app_name(name: str, track: str) -> str:
    return f"{name[:50]}-{track}"


def selector(name: str) -> dict[str, str]:
    return {labels.DEPLOYMENT: name, labels.COMPONENT: "server"}


@dataclass(frozen=True)
class Forwarding:
    """What a stable server forwards: ``percent`` of its requests to the canary
    version's Service at ``url``."""

    url: str
    percent: int
    version: int


def forwarding_env(fwd: Forwarding | None) -> list[dict[str, Any]]:
    if fwd is None or fwd.percent <= 0:
        return []
    return [
        {"name": "KUBEML_CANARY_URL", "value": fwd.url},
        {"name": "KUBEML_CANARY_PERCENT", "value": str(fwd.percent)},
        {"name": "KUBEML_CANARY_VERSION", "value": str(fwd.version)},
    ]


@dataclass(frozen=True)
class Mirroring:
    """What a stable server mirrors (shadow traffic): ``percent`` of the requests it
    answers itself, to the Service at ``url`` serving ``version``."""

    url: str
    percent: int
    version: int
    tolerance: float = 0.01


def mirroring_env(mirror: Mirroring | None) -> list[dict[str, Any]]:
    if mirror is None or mirror.percent <= 0:
        return []
    return [
        {"name": "KUBEML_SHADOW_URL", "value": mirror.url},
        {"name": "KUBEML_SHADOW_PERCENT", "value": str(mirror.percent)},
        {"name": "KUBEML_SHADOW_VERSION", "value": str(mirror.version)},
        {"name": "KUBEML_SHADOW_TOLERANCE", "value": f"{mirror.tolerance:g}"},
    ]


def _server_env_of(app: dict[str, Any] | None) -> dict[str, Any]:
    spec = ((app or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    for container in spec.get("containers") or []:
        if container.get("name") == CONTAINER:
            return {e.get("name"): e.get("value") for e in container.get("env") or []}
    return {}


def forwarded_percent(app: dict[str, Any] | None) -> int:
    """The share an apps/v1 server Deployment's pod template forwards (0: none)."""
    env = _server_env_of(app)
    raw = env.get("KUBEML_CANARY_PERCENT")
    if env.get("KUBEML_CANARY_URL") and raw and str(raw).isdigit():
        return int(raw)
    return 0


def mirrored(app: dict[str, Any] | None) -> tuple[int, int] | None:
    """(version, percent) an apps/v1 server Deployment's pod template mirrors to."""
    env = _server_env_of(app)
    raw, version = env.get("KUBEML_SHADOW_PERCENT"), env.get("KUBEML_SHADOW_VERSION")
    if env.get("KUBEML_SHADOW_URL") and raw and str(raw).isdigit() and str(version).isdigit():
        return int(str(version)), int(raw)
    return None


def server_options_env(opts: ServerOptions) -> dict[str, str]:
    """The server's tuning as environment variables: what a pod gets, and what the
    serving benchmark runs with (so both use exactly the API's defaults)."""
    return {
        "KUBEML_MAX_BATCH_SIZE": str(opts.max_batch_size),
        "KUBEML_MAX_BATCH_REQUESTS": str(opts.max_batch_requests),
        "KUBEML_MAX_BATCH_DELAY_MS": str(opts.max_batch_delay_ms),
        "KUBEML_MAX_REQUEST_BYTES": str(opts.max_request_bytes),
        "KUBEML_MAX_CONNECTIONS": str(opts.max_connections),
        "KUBEML_GRPC_PORT": str(GRPC_PORT if opts.grpc else 0),
    }


def capture_env(
    spec: DeploymentSpec, namespace: str, name: str, bucket: str
) -> list[dict[str, Any]]:
    """Capture settings of the server (none when capture is off). The prefixes are
    the namespace's own: a server writes only where its tenant's data lives."""
    cap = spec.capture
    if cap is None:
        return []
    env: list[dict[str, Any]] = [
        {
            "name": "KUBEML_CAPTURE_URI",
            "value": make_uri(bucket, layout.capture_prefix(namespace, name)),
        },
        {
            "name": "KUBEML_FEEDBACK_URI",
            "value": make_uri(bucket, layout.feedback_prefix(namespace, name)),
        },
        {"name": "KUBEML_CAPTURE_SAMPLE_PERCENT", "value": f"{cap.sample_percent:g}"},
        # Several replicas write the same hour: the pod name keeps their objects apart.
        {"name": "KUBEML_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if cap.keep_inputs is not None:
        env.append({"name": "KUBEML_CAPTURE_KEEP", "value": ",".join(cap.keep_inputs)})
    if cap.drop_inputs:
        env.append({"name": "KUBEML_CAPTURE_DROP", "value": ",".join(cap.drop_inputs)})
    return env


def _server_env(
    mv: dict[str, Any],
    opts: ServerOptions,
    settings: Settings,
    profile_uri: str | None,
    fwd: Forwarding | None,
    mirror: Mirroring | None = None,
) -> list[dict[str, Any]]:
    spec = mv["spec"]
    env: list[dict[str, Any]] = [
        {"name": "KUBEML_MODEL", "value": spec["model"]},
        {"name": "KUBEML_MODEL_VERSION", "value": str(spec["version"])},
        {"name": "KUBEML_MODELVERSION", "value": mv["metadata"]["name"]},
        {"name": "KUBEML_ARTIFACT_URI", "value": spec["artifact"]["uri"]},
        {"name": "KUBEML_ARTIFACT_SHA256", "value": spec["artifact"]["sha256"]},
        {"name": "KUBEML_SIGNATURE", "value": json.dumps(spec["signature"], sort_keys=True)},
        *({"name": k, "value": v} for k, v in server_options_env(opts).items()),
        {"name": "KUBEML_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "KUBEML_PORT", "value": str(PORT)},
        {"name": "TMPDIR", "value": "/tmp"},
        # Predict is batched across requests; BLAS threads would only contend.
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "OPENBLAS_NUM_THREADS", "value": "1"},
        *pods.s3_env(settings),
        *forwarding_env(fwd),
        *mirroring_env(mirror),
    ]
    if profile_uri:
        env.append({"name": "KUBEML_PROFILE_URI", "value": profile_uri})
    return env


def _pod_labels(name: str, track: str, mv: dict[str, Any]) -> dict[str, str]:
    return {
        **selector(name),
        labels.MANAGED_BY: labels.MANAGER,
        labels.PART_OF: "kubeml",
        "kubeml.io/track": track,
        labels.MODEL: mv["spec"]["model"],
        labels.VERSION: str(mv["spec"]["version"]),
    }


def _scrape_annotations(spec: DeploymentSpec) -> dict[str, str]:
    if spec.monitoring is not None and not spec.monitoring.enabled:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _server_container(
    owner: dict[str, Any],
    mv: dict[str, Any],
    spec: DeploymentSpec,
    settings: Settings,
    profile_uri: str | None,
    fwd: Forwarding | None,
    mirror: Mirroring | None = None,
) -> dict[str, Any]:
    opts = spec.server or ServerOptions()
    ports = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    if opts.grpc:
        ports.append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    meta = owner["metadata"]
    env = _server_env(mv, opts, settings, profile_uri, fwd, mirror)
    env += capture_env(spec, meta["namespace"], meta["name"], settings.bucket)
    return {
        "name": CONTAINER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kubeml", "serve"],
        "env": env,
        "ports": ports,
        # Liveness starts counting only once the process answers: a slow import on a
        # busy node is not a hung server.
        "startupProbe": _probe("/v2/health/live", 2, 90),
        "readinessProbe": _probe("/v2/health/ready", 2, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "resources": pods.resources(spec.resources)
        if spec.resources
        else {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": pods.container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def server_deployment(
    owner: dict[str, Any],
    track: str,
    mv: dict[str, Any],
    replicas: int | None,
    spec: DeploymentSpec,
    settings: Settings,
    profile_uri: str | None,
    fwd: Forwarding | None = None,
    mirror: Mirroring | None = None,
) -> dict[str, Any]:
    meta = owner["metadata"]
    name = meta["name"]
    pod_labels = _pod_labels(name, track, mv)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app_name(name, track),
            "namespace": meta["namespace"],
            "labels": {**pod_labels},
            "ownerReferences": [pods.owner_reference(owner)],
        },
        "spec": {
            "selector": {"matchLabels": {**selector(name), "kubeml.io/track": track}},
            # Zero downtime: a new pod must be Ready (model loaded and verified)
            # before an old one goes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "minReadySeconds": 0,
            "progressDeadlineSeconds": 300,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": _scrape_annotations(spec)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pods.pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        _server_container(owner, mv, spec, settings, profile_uri, fwd, mirror)
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def _owned_meta(owner: dict[str, Any]) -> dict[str, Any]:
    """Metadata of an object named after its kubeml.io Deployment and owned by it."""
    meta = owner["metadata"]
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": {**selector(meta["name"]), labels.MANAGED_BY: labels.MANAGER},
        "ownerReferences": [pods.owner_reference(owner)],
    }


def service(owner: dict[str, Any], track: str = "stable") -> dict[str, Any]:
    """The stable Service clients use (named after the Deployment), or the canary's
    or the shadow's, which only stable servers call: clients reach the canary only
    through the stable servers' exact forwarding, and the shadow never."""
    meta = owner["metadata"]
    ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    server = (owner.get("spec") or {}).get("server") or {}
    if server.get("grpc", ServerOptions().grpc):
        # appProtocol tells meshes and gateways that this port speaks HTTP/2 gRPC.
        ports.append(
            {
                "name": "grpc",
                "port": GRPC_PORT,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            }
        )
    metadata = _owned_meta(owner)
    if track != "stable":
        metadata["name"] = app_name(meta["name"], track)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": {**selector(meta["name"]), "kubeml.io/track": track},
            "ports": ports,
        },
    }


def service_url(svc: dict[str, Any] | None) -> str | None:
    """http://clusterIP:80 of a Service, once it has one. The address, not the DNS
    name: it works in clusters without cluster DNS too (the local control plane)."""
    ip = ((svc or {}).get("spec") or {}).get("clusterIP")
    if not ip or ip == "None":
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:80"


def hpa(owner: dict[str, Any], spec: DeploymentSpec) -> dict[str, Any]:
    meta = owner["metadata"]
    auto = spec.autoscaling
    assert auto is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _owned_meta(owner),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": app_name(meta["name"], "stable"),
            },
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def split_replicas(total: int, percent: int) -> tuple[int, int]:
    """(stable, canary) replicas. The share is set by forwarding, not by the replica
    ratio: every request arrives at a stable server, so stable keeps all its replicas,
    and the canary gets capacity for its share (at least one pod)."""
    if percent <= 0:
        return total, 0
    return max(total, 1), max(1, math.ceil(total * percent / 100))


def service_monitor(owner: dict[str, Any], interval: str) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _owned_meta(owner),
        "spec": {
            "selector": {"matchLabels": selector(meta["name"])},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": interval}],
            # Series carry kubeml_io_deployment and kubeml_io_track: rollout analysis
            # from Prometheus selects a Deployment's servers by them (as a labelmap of
            # pod labels gives in annotation-based scrape configs).
            "podTargetLabels": [labels.DEPLOYMENT, labels.TRACK],
        },
    }


def alert_rules(name: str, namespace: str, model: str, alerts: Alerts) -> list[dict[str, Any]]:
    """Prometheus alerting rules for one served model (PrometheusRule or rule file)."""
    sel = f'namespace="{namespace}",model="{model}"'
    job = f'namespace="{namespace}",job="{name}"'
    return [
        {
            "alert": "KubeMLHighErrorRate",
            "expr": (
                f'sum(rate(kubeml_requests_total{{{sel},code=~"5.."}}[5m]))'
                f" / clamp_min(sum(rate(kubeml_requests_total{{{sel}}}[5m])), 1e-9)"
                f" > {alerts.error_rate}"
            ),
            "for": "5m",
            "labels": {"severity": "warning", "model": model},
            "annotations": {
                "summary": f"{model}: more than {alerts.error_rate:.1%} of "
                f"requests fail ({name} in {namespace})"
            },
        },
        {
            "alert": "KubeMLHighLatency",
            "expr": (
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(kubeml_request_duration_seconds_bucket{{{sel}}}[5m])))"
                f" > {alerts.latency_p99_seconds}"
            ),
            "for": "5m",
            "labels": {"severity": "warning", "model": model},
            "annotations": {
                "summary": f"{model}: p99 latency above {alerts.latency_p99_seconds}s ({name})"
            },
        },
        {
            "alert": "KubeMLFeatureDrift",
            "expr": f"max by (feature) (kubeml_feature_drift_psi{{{sel}}}) > {alerts.drift_psi}",
            "for": "10m",
            "labels": {"severity": "warning", "model": model},
            "annotations": {
                "summary": f"{model}: feature {{{{ $labels.feature }}}} drifted "
                f"(PSI above {alerts.drift_psi})"
            },
        },
        *_live_rules(sel, model, name, alerts),
        *_shadow_rules(sel, model, name, alerts),
        {
            "alert": "KubeMLServerDown",
            "expr": f"sum(up{{{job}}}) == 0 or absent(up{{{job}}})",
            "for": "5m",
            "labels": {"severity": "critical", "model": model},
            "annotations": {"summary": f"no {name} server in {namespace} is being scraped"},
        },
    ]


def _live_rules(sel: str, model: str, name: str, alerts: Alerts) -> list[dict[str, Any]]:
    """Live quality alerts, only where a threshold is set; a server with too few
    labelled rows never fires them."""
    enough = f"kubeml_live_labelled_rows{{{sel}}} >= {alerts.min_labelled_rows}"
    rules: list[dict[str, Any]] = []
    if alerts.live_accuracy is not None:
        rules.append(
            {
                "alert": "KubeMLLowLiveAccuracy",
                "expr": f"(kubeml_live_accuracy{{{sel}}} < {alerts.live_accuracy}) and ({enough})",
                "for": "10m",
                "labels": {"severity": "warning", "model": model},
                "annotations": {
                    "summary": f"{model}: live accuracy below {alerts.live_accuracy} "
                    f"on labelled requests ({name})"
                },
            }
        )
    if alerts.live_mae is not None:
        rules.append(
            {
                "alert": "KubeMLHighLiveError",
                "expr": f"(kubeml_live_mae{{{sel}}} > {alerts.live_mae}) and ({enough})",
                "for": "10m",
                "labels": {"severity": "warning", "model": model},
                "annotations": {
                    "summary": f"{model}: live MAE above {alerts.live_mae} "
                    f"on labelled requests ({name})"
                },
            }
        )
    return rules


SHADOW_MIN_ROWS = 100


def _shadow_rules(sel: str, model: str, name: str, alerts: Alerts) -> list[dict[str, Any]]:
    """Low agreement of a shadow version with stable, over enough compared rows that
    a few disagreements on a quiet server do not fire it."""
    if alerts.shadow_agreement is None:
        return []
    by = "sum by (target_version)"
    compared = f"{by} (increase(kubeml_shadow_rows_compared_total{{{sel}}}[10m]))"
    agreed = f"{by} (increase(kubeml_shadow_rows_agreed_total{{{sel}}}[10m]))"
    return [
        {
            "alert": "KubeMLLowShadowAgreement",
            "expr": f"({agreed} / {compared} < {alerts.shadow_agreement}) "
            f"and ({compared} >= {SHADOW_MIN_ROWS})",
            "for": "10m",
            "labels": {"severity": "warning", "model": model},
            "annotations": {
                "summary": f"{model}: shadow version {{{{ $labels.target_version }}}} agrees "
                f"with stable on less than {alerts.shadow_agreement:.0%} of rows ({name})"
            },
        }
    ]


def prometheus_rule(owner: dict[str, Any], model: str, alerts: Alerts) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _owned_meta(owner),
        "spec": {
            "groups": [
                {
                    "name": f"kubeml-{meta['name']}",
                    "rules": alert_rules(meta["name"], meta["namespace"], model, alerts),
                }
            ]
        },
    }

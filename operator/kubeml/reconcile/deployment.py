"""Deployment (kubeml.io) decisions: which versions to serve and how the rollout stands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import Deployment, ManifestError, parse_manifest
from ..api.deployment import Alerts
from ..conditions import Status, find, set_condition
from ..settings import Settings
from . import registry, server_objects

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"


@dataclass
class Decision:
    status: dict[str, Any]
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)  # apiVersion, kind, name
    events: list[tuple[str, str, str]] = field(default_factory=list)


def resolve(
    versions: list[dict[str, Any]], model: str, version: int | None, alias: str | None
) -> tuple[dict[str, Any] | None, str, str]:
    """The ModelVersion to serve, or (None, reason, message)."""
    if version is not None:
        for mv in versions:
            if mv["spec"]["version"] == version:
                return mv, "", ""
        return None, "ModelVersionNotFound", f"model {model} has no version {version}"
    assert alias is not None
    held = registry.holder(versions, alias)
    if held is None:
        return None, "AliasNotFound", f"no version of model {model} holds alias {alias}"
    return dict(held), "", ""


def profile_uri(settings: Settings, mv: dict[str, Any]) -> str:
    dv = mv["spec"]["lineage"]["datasetVersion"]
    return f"s3://{settings.bucket}/datasets/{dv}/profile.json"


def rollout(app: dict[str, Any] | None) -> tuple[int, int, int, bool]:
    """(replicas wanted, ready, updated, complete) of an apps/v1 Deployment."""
    if app is None:
        return 0, 0, 0, False
    spec, st = app.get("spec") or {}, app.get("status") or {}
    want = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    total = int(st.get("replicas") or 0)
    current = int(st.get("observedGeneration") or 0) >= int(app["metadata"].get("generation", 0))
    complete = current and updated == want and available == want and total == want
    return want, ready, updated, complete


def _stalled(app: dict[str, Any] | None) -> str | None:
    for c in ((app or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return str(c.get("message") or "rollout exceeded its progress deadline")
    return None


def _mv_problem(mv: dict[str, Any]) -> tuple[str, str] | None:
    ready = find((mv.get("status") or {}).get("conditions"), READY)
    if ready is not None and ready.get("status") == "False":
        return str(ready.get("reason")), str(ready.get("message"))
    return None


def _track(mv: dict[str, Any], app: dict[str, Any] | None) -> dict[str, Any]:
    want, ready, _, _ = rollout(app)
    return {
        "version": mv["spec"]["version"],
        "modelVersion": mv["metadata"]["name"],
        "replicas": want,
        "readyReplicas": ready,
    }


def decide(
    body: dict[str, Any],
    versions: list[dict[str, Any]],
    apps: dict[str, dict[str, Any] | None],
    *,
    prometheus_operator: bool,
    settings: Settings,
    now: str,
) -> Decision:
    meta = body["metadata"]
    name, ns, gen = meta["name"], meta["namespace"], meta.get("generation")
    status: dict[str, Any] = dict(body.get("status") or {})
    status["observedGeneration"] = gen
    conds = status.get("conditions") or []
    decision = Decision(status=status)

    def cond(type_: str, state: Status, reason: str, message: str) -> None:
        nonlocal conds
        conds = set_condition(
            conds, type_, state, reason, message, observed_generation=gen, now=now
        )
        status["conditions"] = conds

    try:
        model = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(model, Deployment)
    except ManifestError as err:
        cond(READY, "False", "InvalidSpec", f"deployment {name}: {err}")
        cond(PROGRESSING, "False", "InvalidSpec", str(err))
        cond(DEGRADED, "True", "InvalidSpec", str(err))
        return decision
    spec = model.spec
    stable_mv, reason, message = resolve(versions, spec.model, spec.version, spec.alias)
    if stable_mv is None:
        # Waiting, not failing: a pipeline applied in one go (a GitOps sync) has
        # its Deployment before training registered a version. Like a pod waiting
        # for its ConfigMap, it progresses once the version exists.
        cond(READY, "False", reason, f"deployment {name}: {message}")
        cond(PROGRESSING, "True", reason, f"waiting: {message}")
        cond(DEGRADED, "False", reason, "nothing has failed; no version to serve yet")
        return decision

    canary_mv = None
    if spec.canary is not None:
        canary_mv, creason, cmessage = resolve(
            versions, spec.model, spec.canary.version, spec.canary.alias
        )
        if canary_mv is not None and canary_mv["metadata"]["name"] == stable_mv["metadata"]["name"]:
            canary_mv = None  # nothing to compare: serve it as stable only
        elif canary_mv is None:
            decision.events.append(("Warning", creason, f"canary: {cmessage}"))
    percent = spec.canary.traffic_percent if (spec.canary and canary_mv) else 0

    if spec.autoscaling is not None:
        stable_replicas: int | None = None  # the HPA owns it
        lo = spec.autoscaling.min_replicas
        canary_replicas = max(1, round(lo * percent / max(1, 100 - percent))) if percent else 0
    else:
        total = spec.replicas if spec.replicas is not None else 1
        stable_replicas, canary_replicas = server_objects.split_replicas(total, percent)

    decision.apply.append(
        server_objects.server_deployment(
            body,
            "stable",
            stable_mv,
            stable_replicas,
            spec,
            settings,
            profile_uri(settings, stable_mv),
        )
    )
    decision.apply.append(server_objects.service(body))
    if canary_mv is not None:
        decision.apply.append(
            server_objects.server_deployment(
                body,
                "canary",
                canary_mv,
                canary_replicas,
                spec,
                settings,
                profile_uri(settings, canary_mv),
            )
        )
    else:
        decision.delete.append(("apps/v1", "Deployment", server_objects.app_name(name, "canary")))
    if spec.autoscaling is not None:
        decision.apply.append(server_objects.hpa(body, spec))
    else:
        decision.delete.append(("autoscaling/v2", "HorizontalPodAutoscaler", name))
    monitoring = spec.monitoring
    wants_monitor = (monitoring is None or monitoring.enabled) and (
        monitoring is None or monitoring.service_monitor is not False
    )
    if prometheus_operator and wants_monitor:
        interval = monitoring.scrape_interval if monitoring else "30s"
        alerts = monitoring.alerts if monitoring else Alerts()
        decision.apply.append(server_objects.service_monitor(body, interval))
        decision.apply.append(server_objects.prometheus_rule(body, spec.model, alerts))
    elif prometheus_operator:
        decision.delete += [
            ("monitoring.coreos.com/v1", "ServiceMonitor", name),
            ("monitoring.coreos.com/v1", "PrometheusRule", name),
        ]

    # Status from what the apps/v1 Deployments report.
    stable_app, canary_app = apps.get("stable"), apps.get("canary")
    old = (body.get("status") or {}).get("stable") or {}
    stable = _track(stable_mv, stable_app)
    if stable_replicas is not None:
        stable["replicas"] = stable_replicas
    _, s_ready, s_updated, s_done = rollout(stable_app)
    app_version = (
        (stable_app or {})
        .get("spec", {})
        .get("template", {})
        .get("metadata", {})
        .get("labels", {})
        .get("kubeml.io/version")
    )
    s_done = s_done and app_version == str(stable_mv["spec"]["version"])
    if old.get("version") and old.get("version") != stable["version"] and not s_done:
        status["previous"] = {k: v for k, v in old.items() if k in ("version", "modelVersion")}
    elif s_done:
        status.pop("previous", None)
    status["stable"] = stable
    if canary_mv is not None:
        status["canary"] = {
            **_track(canary_mv, canary_app),
            "trafficPercent": percent,
            "replicas": canary_replicas,
        }
    else:
        status.pop("canary", None)
    c_ready = (
        int(((canary_app or {}).get("status") or {}).get("readyReplicas") or 0)
        if canary_mv is not None
        else 0
    )
    status["readyReplicas"] = s_ready + c_ready
    status["replicas"] = stable["replicas"] + (canary_replicas if canary_mv else 0)
    status["endpoint"] = f"http://{name}.{ns}.svc:80"

    problem = _mv_problem(stable_mv)
    stalled = _stalled(stable_app)
    version_label = f"v{stable['version']}"
    if problem is not None:
        reason, message = problem
        cond(DEGRADED, "True", reason, f"{stable['modelVersion']}: {message}")
        status["lastFailure"] = {"reason": reason, "message": message, "time": now}
    elif stalled is not None:
        cond(DEGRADED, "True", "ProgressDeadlineExceeded", stalled)
        status["lastFailure"] = {
            "reason": "ProgressDeadlineExceeded",
            "message": stalled,
            "time": now,
        }
    else:
        cond(DEGRADED, "False", "AsExpected", "no known problem")
        status.pop("lastFailure", None)

    if s_done:
        cond(
            PROGRESSING,
            "False",
            "RolloutComplete",
            f"{stable['modelVersion']} serves on {s_ready} replica(s)",
        )
    else:
        frm = f" from v{status['previous']['version']}" if status.get("previous") else ""
        cond(
            PROGRESSING,
            "True",
            "RollingOut",
            f"rolling{frm} to {version_label}: {s_updated}/{stable['replicas']} updated, "
            f"{s_ready} ready",
        )
    serving_ok = s_ready > 0 or stable["replicas"] == 0
    if s_done and serving_ok and problem is None:
        msg = f"serving {spec.model} {version_label} on {s_ready} replica(s)"
        if canary_mv is not None:
            msg += f"; canary v{canary_mv['spec']['version']} at {percent}% ({c_ready} ready)"
        was = ((body.get("status") or {}).get("previous") or {}).get("version")
        if was is not None:
            decision.events.append(
                ("Normal", "RolledOut", f"now serving {version_label} (was v{was})")
            )
        cond(READY, "True", "Serving", msg)
    elif problem is not None and s_ready == 0:
        cond(READY, "False", problem[0], f"deployment {name}: {problem[1]}")
    else:
        reason = "RollingOut" if s_ready else "Unavailable"
        cond(
            READY,
            "False",
            reason,
            f"deployment {name}: {s_ready}/{stable['replicas']} ready on {version_label}",
        )
    return decision

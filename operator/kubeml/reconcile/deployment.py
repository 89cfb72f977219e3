"""Deployment (kubeml.io) decisions: which versions to serve and how the rollout stands."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import labels
from ..api import Deployment, ManifestError, parse_manifest
from ..api.deployment import Alerts, DeploymentSpec
from ..conditions import find
from ..schedules import parse_time
from ..settings import Settings
from ..storage import layout
from . import analysis, exposure, registry, retraining, rollout, server_objects
from .modelversion import artifact_refusal
from .outcome import Create, Outcome, Patch, Ref
from .step import Step

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
# How often status.shadow's agreement is refreshed from the stable servers' counters.
SHADOW_READ_SECONDS = 30.0


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
    return layout.profile_uri(settings.bucket, mv["metadata"]["namespace"], dv)


def app_rollout(app: dict[str, Any] | None) -> tuple[int, int, int, bool]:
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
    # A blocked deletion says nothing against the artifact: the version still serves.
    if (
        ready is not None
        and ready.get("status") == "False"
        and ready.get("reason") != "DeletionBlocked"
    ):
        return str(ready.get("reason")), str(ready.get("message"))
    return None


def _track(mv: dict[str, Any], app: dict[str, Any] | None) -> dict[str, Any]:
    want, ready, _, _ = app_rollout(app)
    return {
        "version": mv["spec"]["version"],
        "modelVersion": mv["metadata"]["name"],
        "replicas": want,
        "readyReplicas": ready,
    }


@dataclass(frozen=True)
class DeploymentView:
    """Everything observed about one kubeml.io Deployment."""

    body: Mapping[str, Any]
    versions: list[dict[str, Any]]  # of its model, versions being deleted included
    apps: Mapping[str, dict[str, Any] | None]  # track -> apps/v1 Deployment
    prometheus_operator: bool = False
    # For spec.retraining:
    template: Mapping[str, Any] | None = None
    dataset: Mapping[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    drift: retraining.DriftReading | None = None
    # The canary's Service (stable servers forward to its ClusterIP).
    canary_service: Mapping[str, Any] | None = None
    # The shadow's Service (stable servers mirror to its ClusterIP).
    shadow_service: Mapping[str, Any] | None = None
    # For spec.rollout: the new version's requests as the stable servers saw them.
    sample: analysis.Sample | None = None
    # For spec.shadow: the stable servers' shadow counters, when due (status.shadow).
    shadow_reading: analysis.Sample | None = None
    # For spec.exposure (and to withdraw what it published).
    exposed: exposure.Observed = field(default_factory=lambda: exposure.Observed(False))


def decide(
    view: DeploymentView, settings: Settings, *, now: str, drift_poll_seconds: float = 60.0
) -> Outcome:
    step, _ = _serve(view, settings, now)
    plan = _plan(view, step.status, now, drift_poll_seconds)
    _carry_out(step, view, plan)
    return step.out


def wants_drift(view: DeploymentView, settings: Settings, *, now: str) -> bool:
    """Whether the retraining plan needs the serving pods' drift gauges (phase one)."""
    if not (view.body.get("spec") or {}).get("retraining"):
        return False
    step, _ = _serve(view, settings, now)
    return _plan(view, step.status, now, 60.0).needs_drift


def wants_sample(view: DeploymentView, settings: Settings, *, now: str) -> bool:
    """Whether a rollout step is due for judgement (phase one: read the stable
    servers' metrics, then decide with the sample)."""
    spec = view.body.get("spec") or {}
    # Only these can have steps (spec.rollout, or retraining's default ones).
    if not (spec.get("rollout") or spec.get("retraining")) or view.sample is not None:
        return False
    return _serve(view, settings, now)[1]


def wants_shadow_reading(view: DeploymentView, *, now: str) -> int | None:
    """The shadow version whose agreement the stable servers' counters should be read
    for (phase one), when mirroring is in effect and the last reading is old."""
    if view.shadow_reading is not None or not (view.body.get("spec") or {}).get("shadow"):
        return None
    st = (view.body.get("status") or {}).get("shadow") or {}
    if not st.get("percent") or not st.get("version"):
        return None
    last, at = parse_time(str(st.get("measuredTime") or "")), parse_time(now)
    if last is not None and at is not None and (at - last).total_seconds() < SHADOW_READ_SECONDS:
        return None
    return int(st["version"])


def _plan(view: DeploymentView, status: dict[str, Any], now: str, poll: float) -> retraining.Plan:
    return retraining.plan(
        {**view.body, "status": status},
        template=view.template,
        dataset=view.dataset,
        runs=view.runs,
        versions=view.versions,
        drift=view.drift,
        now=parse_time(now) or datetime.now(UTC),
        drift_poll_seconds=poll,
    )


def _alias_patches(
    step: Step, view: DeploymentView, aliases: Mapping[str, list[str]], why: str
) -> None:
    """Each ModelVersion's new aliases, written only over the resourceVersion seen."""
    by_name = {v["metadata"]["name"]: v for v in view.versions}
    for mv_name, names in aliases.items():
        mv = by_name[mv_name]
        rv = str(mv["metadata"].get("resourceVersion") or "")
        step.out.patches.append(Patch(Ref.of(mv), {"spec": {"aliases": names}}, rv, why=why))


def _carry_out(step: Step, view: DeploymentView, plan: retraining.Plan) -> None:
    if plan.status is None:
        step.status.pop("retraining", None)
    else:
        step.status["retraining"] = plan.status
    _alias_patches(step, view, plan.aliases, "retraining alias move")
    if plan.refresh is not None and view.dataset is not None and plan.status is not None:
        stamp = plan.status["refreshRequestedTime"]
        step.out.patches.append(
            Patch(
                Ref.of(view.dataset),
                {"metadata": {"annotations": {labels.REFRESH_REQUESTED: stamp}}},
                str(view.dataset["metadata"].get("resourceVersion") or ""),
                why="refresh request",
            )
        )
    if plan.run is not None:
        step.out.create.append(Create(plan.run))
    for type_, reason, message in plan.events:
        step.out.event(view.body, "Normal" if type_ == "Normal" else "Warning", reason, message)
    step.out.look_again(plan.requeue_after)


def _serve(view: DeploymentView, settings: Settings, now: str) -> tuple[Step, bool]:
    body = view.body
    meta = body["metadata"]
    name = meta["name"]
    step = Step.begin(body, now)
    try:
        model = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(model, Deployment)
    except ManifestError as err:
        step.cond(READY, "False", "InvalidSpec", f"deployment {name}: {err}")
        step.cond(PROGRESSING, "False", "InvalidSpec", str(err))
        step.cond(DEGRADED, "True", "InvalidSpec", str(err))
        return step, False
    spec = model.spec
    stable_mv, reason, message = resolve(view.versions, spec.model, spec.version, spec.alias)
    refusal = None if stable_mv is None else artifact_refusal(stable_mv, settings)
    if stable_mv is None or refusal is not None:
        # Waiting, not failing: a pipeline applied in one go (a GitOps sync) has its
        # Deployment before training registered a version. A version whose artifact
        # lies in another namespace's space is never served.
        if refusal is not None:
            reason, message = "ArtifactNotAllowed", refusal
        step.cond(READY, "False", reason, f"deployment {name}: {message}")
        step.cond(
            PROGRESSING, "True" if refusal is None else "False", reason, f"waiting: {message}"
        )
        step.cond(
            DEGRADED,
            "True" if refusal else "False",
            reason,
            message if refusal else "nothing has failed; no version to serve yet",
        )
        return step, False
    needs_sample = False
    if spec.rollout_policy() is not None:
        rd = _progressive(step, view, spec, stable_mv, now)
        stable_mv, canary_mv, percent = rd.stable, rd.canary, rd.weight
        needs_sample = rd.needs_sample
    else:
        step.status.pop("rollout", None)
        canary_mv = _canary(step, view, spec, stable_mv, settings)
        percent = spec.canary.traffic_percent if (spec.canary and canary_mv) else 0
    replicas = _replicas(spec, percent)
    shadow = _shadow(step, view, spec, stable_mv, settings)
    mirror = shadow.mirror if shadow is not None else None
    if spec.rollout is not None and spec.rollout.analysis.min_agreement is not None:
        # Agreement is judged on requests mirrored to the new version: while it
        # runs, the rollout's mirror takes the place of spec.shadow's.
        mirror = _rollout_mirroring(view, spec, canary_mv)
    _children(step, view, spec, stable_mv, canary_mv, replicas, settings, percent, mirror)
    _children_of_shadow(step, spec, settings, shadow)
    published = exposure.decide(
        step, spec.model, spec.exposure, view.exposed, settings.discovery_seconds
    )
    step.out.apply += published.apply
    step.out.delete += published.delete
    step.out.look_again(published.look_again)
    _report(step, view, spec, stable_mv, canary_mv, replicas, percent)
    _report_shadow(step, view, shadow)
    _rollout_conditions(step)
    return step, needs_sample


def _progressive(
    step: Step, view: DeploymentView, spec: DeploymentSpec, target: dict[str, Any], now: str
) -> rollout.Decision:
    status = view.body.get("status") or {}
    stable_app, canary_app = view.apps.get("stable"), view.apps.get("canary")
    old = status.get("rollout") or {}
    in_effect = False
    cannot_serve = None
    by_name = {v["metadata"]["name"]: v for v in view.versions}
    if old.get("phase") == rollout.PROGRESSING:
        new_mv = by_name.get(str(old["to"].get("modelVersion")))
        problem = _mv_problem(new_mv) if new_mv is not None else None
        stalled = _stalled(canary_app)
        if problem is not None:
            cannot_serve = f"{problem[0]}: {problem[1]}"
        elif stalled is not None:
            cannot_serve = f"ProgressDeadlineExceeded: {stalled}"
        c_ready = int(((canary_app or {}).get("status") or {}).get("readyReplicas") or 0)
        in_effect = (
            _runs(stable_app, old["from"]["version"])
            and _runs(canary_app, old["to"]["version"])
            and server_objects.forwarded_percent(stable_app) == old.get("weight")
            and c_ready > 0
        )
    serving = (status.get("stable") or {}).get("version")
    serving_mv = by_name.get(str((status.get("stable") or {}).get("modelVersion")))
    rd = rollout.plan(
        view.body,
        spec,
        target,
        view.versions,
        in_effect,
        serving is not None
        and _runs(stable_app, serving)
        and (serving_mv is None or _mv_problem(serving_mv) is None),
        view.sample,
        now,
        cannot_serve,
    )
    if rd.status is not None:
        if (
            rd.status.get("phase") == rollout.ROLLED_BACK
            and "rolledBackGeneration" not in rd.status
        ):
            rd.status["rolledBackGeneration"] = view.body["metadata"].get("generation")
        step.status["rollout"] = rd.status
    for type_, reason, message in rd.events:
        step.event("Normal" if type_ == "Normal" else "Warning", reason, message)
    _alias_patches(step, view, rd.aliases, "rollback alias move")
    step.out.look_again(rd.requeue_after)
    return rd


def _runs(app: dict[str, Any] | None, version: int) -> bool:
    """Whether an apps/v1 server Deployment has finished rolling to ``version``."""
    if app is None:
        return False
    labels_ = ((app.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {})
    return app_rollout(app)[3] and labels_.get("kubeml.io/version") == str(version)


def _rollout_conditions(step: Step) -> None:
    """A rollout in steps is Progressing until it ends; a rollback is Degraded until
    the spec changes (a GitOps revert, or a new version to roll out)."""
    st = step.status.get("rollout") or {}
    phase = st.get("phase")
    if phase == rollout.PROGRESSING:
        reason = "WaitingForApproval" if st.get("waitingFor") == "Approval" else "RollingOut"
        step.cond(PROGRESSING, "True", reason, str(st.get("message") or "rolling out"))
    elif phase == rollout.ROLLED_BACK and st.get("rolledBackGeneration") == step.body[
        "metadata"
    ].get("generation"):
        message = str(st.get("message") or "rolled back")
        step.cond(DEGRADED, "True", "RolledBack", message)
        step.status["lastFailure"] = {"reason": "RolledBack", "message": message, "time": step.now}


def _canary(
    step: Step,
    view: DeploymentView,
    spec: DeploymentSpec,
    stable_mv: dict[str, Any],
    settings: Settings,
) -> dict[str, Any] | None:
    if spec.canary is None:
        return None
    canary_mv, reason, message = resolve(
        view.versions, spec.model, spec.canary.version, spec.canary.alias
    )
    refusal = None if canary_mv is None else artifact_refusal(canary_mv, settings)
    if refusal is not None:
        canary_mv, reason, message = None, "ArtifactNotAllowed", refusal
    if canary_mv is not None and canary_mv["metadata"]["name"] == stable_mv["metadata"]["name"]:
        return None  # nothing to compare: serve it as stable only
    if canary_mv is None:
        step.event("Warning", reason, f"canary: {message}")
    return canary_mv


@dataclass(frozen=True)
class ShadowPlan:
    """The shadow track to run, and what the stable servers mirror (None: nothing)."""

    mv: dict[str, Any]
    replicas: int
    percent: int
    mirror: server_objects.Mirroring | None


def _shadow(
    step: Step,
    view: DeploymentView,
    spec: DeploymentSpec,
    stable_mv: dict[str, Any],
    settings: Settings,
) -> ShadowPlan | None:
    sh = spec.shadow
    if sh is None:
        return None
    shadow_mv, reason, message = resolve(view.versions, spec.model, sh.version, sh.alias)
    refusal = None if shadow_mv is None else artifact_refusal(shadow_mv, settings)
    if refusal is not None:
        shadow_mv, reason, message = None, "ArtifactNotAllowed", refusal
    if shadow_mv is None:
        step.event("Warning", reason, f"shadow: {message}")
        return None
    if shadow_mv["metadata"]["name"] == stable_mv["metadata"]["name"]:
        return None  # it would only agree with itself
    # Capacity for the mirrored share of what reaches the stable servers.
    lo = spec.autoscaling.min_replicas if spec.autoscaling is not None else spec.replicas
    total = 1 if lo is None else lo
    replicas = max(1, math.ceil(total * sh.percent / 100))
    return ShadowPlan(shadow_mv, replicas, sh.percent, _mirroring(view, sh, shadow_mv))


def _mirroring(
    view: DeploymentView, sh: Any, shadow_mv: dict[str, Any]
) -> server_objects.Mirroring | None:
    """Stable servers mirror once the shadow's Service has an address and a shadow
    server is ready (as with forwarding: its start is not its failures, and stable
    is not restarted for nothing), and keep mirroring while shadow pods come and go."""
    version = int(shadow_mv["spec"]["version"])
    shadow_app = view.apps.get("shadow")
    ready = int(((shadow_app or {}).get("status") or {}).get("readyReplicas") or 0) > 0
    already = server_objects.mirrored(view.apps.get("stable"))
    if not ready and (already is None or already[0] != version):
        return None
    url = server_objects.service_url(
        dict(view.shadow_service) if view.shadow_service is not None else None
    )
    if url is None:
        return None
    return server_objects.Mirroring(url, sh.percent, version, sh.tolerance)


def _rollout_mirroring(
    view: DeploymentView, spec: DeploymentSpec, canary_mv: dict[str, Any] | None
) -> server_objects.Mirroring | None:
    """A rollout judged on agreement mirrors to its new version (the canary's
    Service), from when the canary is forwarded to, like forwarding itself."""
    assert spec.rollout is not None
    fwd = _forwarding(view, 1, canary_mv)
    if fwd is None:
        return None
    tolerance = spec.shadow.tolerance if spec.shadow is not None else 0.01
    return server_objects.Mirroring(
        fwd.url, spec.rollout.analysis.mirror_weight, fwd.version, tolerance
    )


def _report_shadow(step: Step, view: DeploymentView, shadow: ShadowPlan | None) -> None:
    """status.shadow: the share in effect is what the stable servers run with, once
    they all do, and only while a shadow server is ready."""
    status = step.status
    if shadow is None:
        status.pop("shadow", None)
        return
    version = int(shadow.mv["spec"]["version"])
    shadow_app, stable_app = view.apps.get("shadow"), view.apps.get("stable")
    track = {**_track(shadow.mv, shadow_app), "replicas": shadow.replicas}
    old = (view.body.get("status") or {}).get("shadow") or {}
    share: int | None = old.get("percent") if old.get("version") == version else 0
    if track["readyReplicas"] <= 0:
        share = 0
    elif app_rollout(stable_app)[3]:
        running = server_objects.mirrored(stable_app)
        share = running[1] if running is not None and running[0] == version else 0
    status["shadow"] = {**track, "desiredPercent": shadow.percent}
    if share is not None:
        status["shadow"]["percent"] = share
    status["shadow"].update(_agreement(view, version, step.now))
    if share:
        step.out.look_again(SHADOW_READ_SECONDS)
    status["readyReplicas"] = int(status.get("readyReplicas") or 0) + track["readyReplicas"]
    status["replicas"] = int(status.get("replicas") or 0) + shadow.replicas


def _agreement(view: DeploymentView, version: int, now: str) -> dict[str, Any]:
    """status.shadow's agreement fields: a fresh reading, else the last one (of this
    version)."""
    old = (view.body.get("status") or {}).get("shadow") or {}
    keys = ("rowsCompared", "rowsAgreed", "agreement", "measuredTime")
    reading = view.shadow_reading
    kept = {k: old[k] for k in keys if k in old} if old.get("version") == version else {}
    if reading is None or reading.pods == 0:
        return kept
    if (kept.get("rowsCompared"), kept.get("rowsAgreed")) == (reading.compared, reading.agreed):
        return kept  # nothing new: no status write (measuredTime: the last change seen)
    doc: dict[str, Any] = {
        "rowsCompared": reading.compared,
        "rowsAgreed": reading.agreed,
        "measuredTime": now,
    }
    if reading.compared > 0:
        doc["agreement"] = round(reading.agreed / reading.compared, 6)
    return doc


def _replicas(spec: DeploymentSpec, percent: int) -> tuple[int | None, int]:
    """(stable, canary) replicas; stable None when the HPA owns it."""
    if spec.autoscaling is not None:
        lo = spec.autoscaling.min_replicas
        # Every request reaches a stable server; the canary needs capacity for its share.
        return None, server_objects.split_replicas(lo, percent)[1]
    total = spec.replicas if spec.replicas is not None else 1
    return server_objects.split_replicas(total, percent)


def _children(
    step: Step,
    view: DeploymentView,
    spec: DeploymentSpec,
    stable_mv: dict[str, Any],
    canary_mv: dict[str, Any] | None,
    replicas: tuple[int | None, int],
    settings: Settings,
    percent: int,
    mirror: server_objects.Mirroring | None = None,
) -> None:
    body, out = dict(view.body), step.out
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    out.apply.append(
        server_objects.server_deployment(
            body,
            "stable",
            stable_mv,
            replicas[0],
            spec,
            settings,
            profile_uri(settings, stable_mv),
            _forwarding(view, percent, canary_mv),
            mirror,
        )
    )
    out.apply.append(server_objects.service(body))
    canary_svc = server_objects.app_name(name, "canary")
    if canary_mv is not None:
        out.apply.append(server_objects.service(body, "canary"))
        out.apply.append(
            server_objects.server_deployment(
                body,
                "canary",
                canary_mv,
                replicas[1],
                spec,
                settings,
                profile_uri(settings, canary_mv),
            )
        )
    else:
        out.delete.append(Ref("apps/v1", "Deployment", ns, canary_svc))
        out.delete.append(Ref("v1", "Service", ns, canary_svc))
    if spec.autoscaling is not None:
        out.apply.append(server_objects.hpa(body, spec))
    else:
        out.delete.append(Ref("autoscaling/v2", "HorizontalPodAutoscaler", ns, name))
    monitoring = spec.monitoring
    wants_monitor = monitoring is None or (
        monitoring.enabled and monitoring.service_monitor is not False
    )
    if view.prometheus_operator and wants_monitor:
        out.apply.append(
            server_objects.service_monitor(
                body, monitoring.scrape_interval if monitoring else "30s"
            )
        )
        out.apply.append(
            server_objects.prometheus_rule(
                body, spec.model, monitoring.alerts if monitoring else Alerts()
            )
        )
    elif view.prometheus_operator:
        out.delete += [
            Ref("monitoring.coreos.com/v1", "ServiceMonitor", ns, name),
            Ref("monitoring.coreos.com/v1", "PrometheusRule", ns, name),
        ]


def _children_of_shadow(
    step: Step, spec: DeploymentSpec, settings: Settings, shadow: ShadowPlan | None
) -> None:
    """The shadow's server Deployment and its Service (only stable servers call it)."""
    body, out = dict(step.body), step.out
    meta = body["metadata"]
    if shadow is None:
        name = server_objects.app_name(meta["name"], "shadow")
        out.delete.append(Ref("apps/v1", "Deployment", meta["namespace"], name))
        out.delete.append(Ref("v1", "Service", meta["namespace"], name))
        return
    out.apply.append(server_objects.service(body, "shadow"))
    out.apply.append(
        server_objects.server_deployment(
            body,
            "shadow",
            shadow.mv,
            shadow.replicas,
            spec,
            settings,
            profile_uri(settings, shadow.mv),
        )
    )


def _forwarding(
    view: DeploymentView, percent: int, canary_mv: dict[str, Any] | None
) -> server_objects.Forwarding | None:
    """Stable servers forward the canary's share once its Service has an address
    (assigned when it is created: the next reconcile has it) and a canary server is
    ready: forwarding earlier would only count the canary's start as its failures
    (and restart stable servers for nothing). Once forwarding, they keep forwarding
    while canary pods come and go (those requests are answered by stable)."""
    if canary_mv is None or percent <= 0:
        return None
    canary_app = view.apps.get("canary")
    ready = int(((canary_app or {}).get("status") or {}).get("readyReplicas") or 0) > 0
    if not ready and server_objects.forwarded_percent(view.apps.get("stable")) <= 0:
        return None
    url = server_objects.service_url(
        dict(view.canary_service) if view.canary_service is not None else None
    )
    if url is None:
        return None
    return server_objects.Forwarding(url, percent, int(canary_mv["spec"]["version"]))


def effective_share(
    stable_app: dict[str, Any] | None,
    stable_done: bool,
    canary_ready: int,
    reported: int | None,
) -> int | None:
    """The canary's share in effect, not the one asked for. Stable servers forward
    it once they run with it (a rollout of the stable Deployment); a canary with no
    ready server gets none (stable answers those requests itself). While stable
    servers still roll, the old ones forward the share reported before."""
    if canary_ready <= 0:
        return 0
    if not stable_done:
        return reported
    return server_objects.forwarded_percent(stable_app)


def _report(
    step: Step,
    view: DeploymentView,
    spec: DeploymentSpec,
    stable_mv: dict[str, Any],
    canary_mv: dict[str, Any] | None,
    replicas: tuple[int | None, int],
    percent: int,
) -> None:
    """Status from what the apps/v1 Deployments report."""
    status, name = step.status, view.body["metadata"]["name"]
    stable_app, canary_app = view.apps.get("stable"), view.apps.get("canary")
    old = (view.body.get("status") or {}).get("stable") or {}
    stable = _track(stable_mv, stable_app)
    if replicas[0] is not None:
        stable["replicas"] = replicas[0]
    _, s_ready, s_updated, s_done = app_rollout(stable_app)
    app_labels = (
        (stable_app or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    )
    s_done = s_done and app_labels.get("kubeml.io/version") == str(stable_mv["spec"]["version"])
    if old.get("version") and old.get("version") != stable["version"] and not s_done:
        status["previous"] = {k: v for k, v in old.items() if k in ("version", "modelVersion")}
    elif s_done:
        status.pop("previous", None)
    status["stable"] = stable
    c_ready = 0
    if canary_mv is not None:
        c_ready = int(((canary_app or {}).get("status") or {}).get("readyReplicas") or 0)
        old_canary = (view.body.get("status") or {}).get("canary") or {}
        reported = old_canary.get("trafficPercent")
        same = old_canary.get("version") == canary_mv["spec"]["version"]
        share = effective_share(stable_app, s_done, c_ready, reported if same else 0)
        status["canary"] = {
            **_track(canary_mv, canary_app),
            "trafficPercent": share,
            "desiredTrafficPercent": percent,
            "replicas": replicas[1],
        }
        if share is None:
            status["canary"].pop("trafficPercent")
    else:
        status.pop("canary", None)
    status["readyReplicas"] = s_ready + c_ready
    status["replicas"] = stable["replicas"] + (replicas[1] if canary_mv else 0)
    status["endpoint"] = f"http://{name}.{view.body['metadata']['namespace']}.svc:80"
    _conditions(
        step,
        spec,
        stable,
        stable_mv,
        canary_mv,
        stable_app,
        (s_ready, s_updated, s_done),
        (c_ready, int(status["canary"].get("trafficPercent") or 0) if canary_mv else 0),
    )


def _conditions(
    step: Step,
    spec: DeploymentSpec,
    stable: dict[str, Any],
    stable_mv: dict[str, Any],
    canary_mv: dict[str, Any] | None,
    stable_app: dict[str, Any] | None,
    progress: tuple[int, int, bool],
    canary: tuple[int, int],
) -> None:
    status, name = step.status, step.body["metadata"]["name"]
    s_ready, s_updated, s_done = progress
    problem = _mv_problem(stable_mv)
    stalled = _stalled(stable_app)
    version_label = f"v{stable['version']}"
    failure = problem or (("ProgressDeadlineExceeded", stalled) if stalled is not None else None)
    if failure is not None:
        message = f"{stable['modelVersion']}: {failure[1]}" if problem else failure[1]
        step.cond(DEGRADED, "True", failure[0], message)
        status["lastFailure"] = {"reason": failure[0], "message": failure[1], "time": step.now}
    else:
        step.cond(DEGRADED, "False", "AsExpected", "no known problem")
        status.pop("lastFailure", None)
    if s_done:
        step.cond(
            PROGRESSING,
            "False",
            "RolloutComplete",
            f"{stable['modelVersion']} serves on {s_ready} replica(s)",
        )
    else:
        frm = f" from v{status['previous']['version']}" if status.get("previous") else ""
        step.cond(
            PROGRESSING,
            "True",
            "RollingOut",
            f"rolling{frm} to {version_label}: {s_updated}/{stable['replicas']} updated, "
            f"{s_ready} ready",
        )
    if s_done and (s_ready > 0 or stable["replicas"] == 0) and problem is None:
        msg = f"serving {spec.model} {version_label} on {s_ready} replica(s)"
        if canary_mv is not None:
            msg += f"; canary v{canary_mv['spec']['version']} at {canary[1]}% ({canary[0]} ready)"
            want = _desired(step, spec)
            if want != canary[1]:
                msg += f", going to {want}%"
        msg += _leaving(stable_mv, spec)
        was = ((step.body.get("status") or {}).get("previous") or {}).get("version")
        if was is not None:
            step.out.event(
                step.body, "Normal", "RolledOut", f"now serving {version_label} (was v{was})"
            )
        step.cond(READY, "True", "Serving", msg)
    elif problem is not None and s_ready == 0:
        step.cond(READY, "False", problem[0], f"deployment {name}: {problem[1]}")
    else:
        reason = "RollingOut" if s_ready else "Unavailable"
        step.cond(
            READY,
            "False",
            reason,
            f"deployment {name}: {s_ready}/{stable['replicas']} ready on {version_label}",
        )


def _desired(step: Step, spec: DeploymentSpec) -> int:
    if spec.canary is not None:
        return spec.canary.traffic_percent
    return int((step.status.get("rollout") or {}).get("weight") or 0)


def _leaving(mv: dict[str, Any], spec: DeploymentSpec) -> str:
    """A served version being deleted keeps serving until another takes its place."""
    if not mv["metadata"].get("deletionTimestamp"):
        return ""
    until = f"another version holds alias {spec.alias}" if spec.alias else "spec.version changes"
    return f"; {mv['metadata']['name']} is being deleted and serves until {until}"

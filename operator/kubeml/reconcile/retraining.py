"""Retraining decisions: when to ask for new data, when to train, what to promote.

The loop a Deployment's ``spec.retraining`` closes:

1. Drift in the serving pods, or the schedule, asks the template's Dataset for
   new data (a refresh request). Identical data trains an identical model, so
   nothing is trained until the Dataset publishes a version no model of this
   name was trained on.
2. Such a version (when asked for it, or always with ``datasetChange``) starts
   one run: the template's spec pinned to that version, with a gate to beat
   the alias holder on the key metric when the template has no such gate.
3. A run that passes its gates has its version promoted to the alias. When the
   Deployment serves that alias, the version rolls out in steps (by default; see
   ``Retraining.rollout``) and a failed check sends traffic and the alias back; if
   the Deployment cannot serve it (Degraded), the alias goes back too. Either way
   the version is never promoted again, nor its data trained on again.

Pure: everything observed comes in, a Plan goes out; the driver does I/O. Reading
drift means scraping every serving pod, so it happens in two phases: the plan first
runs without a reading and says whether it needs one (``needs_drift``); only then
are the pods read and the plan made again with the reading.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import labels
from ..api.estimators import DEFAULT_METRICS, ESTIMATORS
from ..conditions import find, is_true
from ..schedules import due, format_time, parse_time
from . import pods, registry

Body = Mapping[str, Any]
DRIFT_METRIC = "kubeml_feature_drift_psi"
LIVE_ACCURACY = "kubeml_live_accuracy"
LIVE_ROWS = "kubeml_live_labelled_rows"
PREPARING = frozenset({"Preparing", "Refreshing"})
RUN_HISTORY = 20
TRAINING_API = "kubeml.io/v1alpha1"


@dataclass(frozen=True)
class DriftReading:
    """PSI per feature: the highest any serving pod reports."""

    psi: Mapping[str, float]
    pods: int
    # Live accuracy per pod with its labelled rows (from ground-truth feedback).
    live: tuple[tuple[float, float], ...] = ()

    def lowest_accuracy(self, min_rows: int) -> tuple[float, float] | None:
        """(accuracy, labelled rows) of the worst pod holding enough labels."""
        enough = [(acc, rows) for acc, rows in self.live if rows >= min_rows]
        return min(enough) if enough else None

    def worst(self) -> tuple[str, float] | None:
        if not self.psi:
            return None
        feature = max(sorted(self.psi), key=lambda f: self.psi[f])
        return feature, self.psi[feature]


def drift_from_metrics(texts: Iterable[str]) -> DriftReading:
    """Combine the drift gauges of several server pods' /metrics pages."""
    from prometheus_client.parser import text_string_to_metric_families

    psi: dict[str, float] = {}
    live: list[tuple[float, float]] = []
    count = 0
    for text in texts:
        count += 1
        accuracy, rows = None, 0.0
        for family in text_string_to_metric_families(text):
            if family.name == LIVE_ACCURACY and family.samples:
                accuracy = float(family.samples[0].value)
            elif family.name == LIVE_ROWS and family.samples:
                rows = float(family.samples[0].value)
            if family.name != DRIFT_METRIC:
                continue
            for sample in family.samples:
                feature = sample.labels.get("feature", "")
                if feature and sample.value == sample.value:  # NaN never drifts
                    psi[feature] = max(psi.get(feature, 0.0), float(sample.value))
        if accuracy is not None and accuracy == accuracy:
            live.append((accuracy, rows))
    return DriftReading(psi=psi, pods=count, live=tuple(live))


@dataclass
class Plan:
    status: dict[str, Any] | None  # status.retraining; None removes it
    run: dict[str, Any] | None = None  # a TrainingRun to create
    refresh: str | None = None  # a Dataset to ask for new data
    aliases: dict[str, list[str]] = field(default_factory=dict)  # ModelVersion -> spec.aliases
    events: list[tuple[str, str, str]] = field(default_factory=list)
    needs_drift: bool = False  # plan again with a drift reading
    requeue_after: float | None = None  # look again then (cooldowns, schedules, drift)

    def look_again(self, seconds: float | None) -> None:
        if seconds is not None and (self.requeue_after is None or seconds < self.requeue_after):
            self.requeue_after = max(0.0, seconds)


def run_name(deployment: str, dataset_version: str) -> str:
    # One run per (Deployment, data version): a replayed reconcile or a crash
    # between create and status write can never start a second one.
    return f"{deployment[:40]}-retrain-{dataset_version[:12]}"


def _finished(run: Body) -> bool:
    done = find((run.get("status") or {}).get("conditions"), "Succeeded")
    return done is not None and done.get("status") in ("True", "False")


def _succeeded(run: Body) -> bool:
    return is_true((run.get("status") or {}).get("conditions"), "Succeeded")


def _claims(mv: Body) -> list[str]:
    return list((mv.get("spec") or {}).get("aliases") or [])


def _short(version: str) -> str:
    return version[:12]


def key_metric(spec: Mapping[str, Any]) -> str | None:
    """The run's first metric (the one a search optimises); None for an estimator
    admission would have rejected (the run then fails with InvalidSpec itself)."""
    metrics = spec.get("metrics")
    if metrics:
        return str(metrics[0])
    known = ESTIMATORS.get(str((spec.get("estimator") or {}).get("name")))
    return DEFAULT_METRICS[known.task][0] if known else None


def run_manifest(
    deployment: Body,
    template: Body,
    dataset_version: str,
    alias: str | None,
    trigger: Mapping[str, str],
) -> dict[str, Any]:
    """The template's spec, pinned to the new data, gated on beating the alias."""
    meta = deployment["metadata"]
    spec: dict[str, Any] = copy.deepcopy(dict(template["spec"]))
    dataset = spec["datasetRef"]["name"]
    spec["datasetRef"] = {"name": dataset, "version": dataset_version}
    gates = spec.setdefault("gates", {})
    metric = key_metric(spec)
    if alias and metric and not gates.get("beat"):
        gates["beat"] = {"alias": alias, "metric": metric}
    if not gates:
        spec.pop("gates")
    return {
        "apiVersion": TRAINING_API,
        "kind": "TrainingRun",
        "metadata": {
            "name": run_name(meta["name"], dataset_version),
            "namespace": meta["namespace"],
            "labels": {
                labels.MANAGED_BY: labels.MANAGER,
                labels.RETRAINING_FOR: meta["name"],
                labels.TRIGGER: trigger["reason"],
                labels.DATASET: dataset,
                labels.DATASET_VERSION: labels.short(dataset_version),
            },
            "annotations": {f"{labels.PREFIX}/trigger-message": trigger["message"][:1024]},
            "ownerReferences": [pods.owner_reference(dict(deployment))],
        },
        "spec": spec,
    }


def _promote(
    plan: Plan, rs: dict[str, Any], runs: list[Body], versions: list[Body], alias: str, now: str
) -> None:
    """Give the alias to the newest finished run's version, once per run."""
    done = [r for r in runs if _finished(r)]
    if not done or not _succeeded(done[0]):
        return
    run = done[0]
    run_name_ = run["metadata"]["name"]
    mv_name = (run.get("status") or {}).get("modelVersion")
    if not mv_name or (rs.get("lastPromotion") or {}).get("run") == run_name_:
        return
    by_name = {v["metadata"]["name"]: v for v in versions}
    mv = by_name.get(mv_name)
    if mv is None:
        return  # registered but not yet visible: the next reconcile promotes it
    held = registry.holder(versions, alias)
    previous = held["metadata"]["name"] if held is not None and held is not mv else None
    if alias not in _claims(mv):
        plan.aliases[mv_name] = [*_claims(mv), alias]
    promotion: dict[str, Any] = {
        "run": run_name_,
        "modelVersion": mv_name,
        "alias": alias,
        "time": now,
    }
    if previous:
        promotion["previous"] = previous
    rs["lastPromotion"] = promotion
    was = f" (was {previous})" if previous else ""
    plan.events.append(
        ("Normal", "Promoted", f"retraining run {run_name_}: {mv_name} now holds {alias}{was}")
    )


def _roll_back(
    plan: Plan, rs: dict[str, Any], deployment: Body, versions: list[Body], now: str
) -> None:
    """Give the alias back when the promoted version cannot serve."""
    last = rs.get("lastPromotion")
    if not last or last.get("rolledBackTime") or not last.get("previous"):
        return
    status = deployment.get("status") or {}
    serving = (status.get("stable") or {}).get("modelVersion")
    degraded = find(status.get("conditions"), "Degraded")
    if serving != last["modelVersion"] or degraded is None or degraded.get("status") != "True":
        return
    previous = next((v for v in versions if v["metadata"]["name"] == last["previous"]), None)
    if previous is None:
        return
    alias = last["alias"]
    if alias not in _claims(previous):
        plan.aliases[last["previous"]] = [*_claims(previous), alias]
    why = (
        f"{last['modelVersion']} cannot serve ({degraded.get('reason')}: {degraded.get('message')})"
    )
    rs["lastPromotion"] = {**last, "rolledBackTime": now, "rolledBackMessage": why[:1024]}
    back = f"{why}; alias {alias} back to {last['previous']}"
    plan.events.append(("Warning", "RolledBack", back))


def _rolled_out_or_back(rs: dict[str, Any], deployment: Body, now: str) -> None:
    """Record that the promoted version's progressive rollout rolled it back (its
    alias already went back with it). The promotion stays recorded for its run, so
    the same version is never promoted again, and its data is trained on, so no run
    starts on it again: only new data can bring a new candidate."""
    last = rs.get("lastPromotion")
    if not last or last.get("rolledBackTime"):
        return
    ro = (deployment.get("status") or {}).get("rollout") or {}
    if ro.get("phase") != "RolledBack" or (ro.get("to") or {}).get("modelVersion") != last.get(
        "modelVersion"
    ):
        return
    rs["lastPromotion"] = {
        **last,
        "rolledBackTime": now,
        "rolledBackMessage": str(ro.get("message") or "rolled back")[:1024],
    }


@dataclass(frozen=True)
class _Seen:
    """What the plan reads, worked out once."""

    policy: Mapping[str, Any]
    triggers: Mapping[str, Any]
    runs: list[Body]  # newest first
    versions: list[Body]  # of this model
    active: list[Body]
    cooldown: timedelta
    now: datetime

    @property
    def last_run_time(self) -> datetime | None:
        if not self.runs:
            return None
        return parse_time(str(self.runs[0]["metadata"].get("creationTimestamp") or ""))


def plan(
    deployment: Body,
    *,
    template: Body | None,
    dataset: Body | None,
    runs: Iterable[Body],
    versions: Iterable[Body],
    drift: DriftReading | None,
    now: datetime,
    drift_poll_seconds: float = 60.0,
) -> Plan:
    spec = deployment.get("spec") or {}
    policy = spec.get("retraining")
    if not policy:
        return Plan(status=None)
    current = (deployment.get("status") or {}).get("retraining") or {}
    rs: dict[str, Any] = copy.deepcopy(dict(current))
    out = Plan(status=rs)
    newest_first = sorted(
        runs, key=lambda r: str(r["metadata"].get("creationTimestamp") or ""), reverse=True
    )
    seen = _Seen(
        policy,
        policy.get("triggers") or {},
        newest_first,
        [v for v in versions if (v.get("spec") or {}).get("model") == spec.get("model")],
        [r for r in newest_first if not _finished(r)],
        timedelta(seconds=int(policy.get("cooldownSeconds", 3600))),
        now,
    )
    if newest_first:
        rs["runs"] = [r["metadata"]["name"] for r in newest_first][:RUN_HISTORY]
    if seen.active:
        rs["activeRun"] = seen.active[0]["metadata"]["name"]
    else:
        rs.pop("activeRun", None)
    alias = policy.get("promoteAlias")
    if alias:
        _promote(out, rs, newest_first, seen.versions, alias, format_time(now))
        _rolled_out_or_back(rs, deployment, format_time(now))
        _roll_back(out, rs, deployment, seen.versions, format_time(now))
    rs["message"] = _next_step(
        out, rs, deployment, template, dataset, seen, drift, drift_poll_seconds
    )
    return out


def _next_step(
    out: Plan,
    rs: dict[str, Any],
    deployment: Body,
    template: Body | None,
    dataset: Body | None,
    seen: _Seen,
    drift: DriftReading | None,
    poll: float,
) -> str:
    """Start a run on new data, or ask for new data; returns what the loop is doing."""
    template_name = seen.policy["template"]["name"]
    if template is None:
        return f"template TrainingRun {template_name} not found"
    ds_name = template["spec"]["datasetRef"]["name"]
    if dataset is None:
        return f"dataset {ds_name} (of template {template_name}) not found"
    if seen.active:
        return f"retraining run {rs['activeRun']} is running"
    ds_status = dataset.get("status") or {}
    ds_ready = find(ds_status.get("conditions"), "Ready")
    ds_version = str(ds_status.get("version") or "")
    usable = ds_ready is not None and ds_ready.get("status") == "True" and ds_version
    trained = {
        str(((v.get("spec") or {}).get("lineage") or {}).get("datasetVersion"))
        for v in seen.versions
    } | {str(((r.get("spec") or {}).get("datasetRef") or {}).get("version")) for r in seen.runs}
    # The template itself may be training on this version right now (no ModelVersion
    # yet), or have failed on it: a second run on the same data ends the same way.
    trained.add(str((template.get("status") or {}).get("datasetVersion") or ""))
    trained.discard("")
    last_trigger = rs.get("lastTrigger") or {}
    last_run = seen.last_run_time
    pending = last_trigger.get("reason") in ("Drift", "Schedule", "LiveQuality") and (
        last_run is None or last_trigger.get("time", "") > format_time(last_run)
    )
    if usable and ds_version not in trained and (seen.triggers.get("datasetChange") or pending):
        return _start(out, rs, deployment, template, ds_name, ds_version, seen, pending)
    preparing = ds_ready is not None and ds_ready.get("reason") in PREPARING
    return _ask_for_data(
        out, rs, deployment, ds_name, ds_version, seen, drift, poll, pending, preparing
    )


def _start(
    out: Plan,
    rs: dict[str, Any],
    deployment: Body,
    template: Body,
    ds_name: str,
    ds_version: str,
    seen: _Seen,
    pending: bool,
) -> str:
    last_run = seen.last_run_time
    if last_run is not None and last_run + seen.cooldown > seen.now:
        out.look_again((last_run + seen.cooldown - seen.now).total_seconds())
        return (
            f"dataset {ds_name} version {_short(ds_version)} is new; retraining waits for "
            f"the cooldown until {format_time(last_run + seen.cooldown)}"
        )
    trigger = (
        dict(rs.get("lastTrigger") or {})
        if pending
        else {
            "reason": "DatasetChanged",
            "message": f"dataset {ds_name} published version {_short(ds_version)}",
            "time": format_time(seen.now),
        }
    )
    rs["lastTrigger"] = trigger
    out.run = run_manifest(
        deployment, template, ds_version, seen.policy.get("promoteAlias"), trigger
    )
    name = out.run["metadata"]["name"]
    rs["activeRun"] = name
    rs["runs"] = [name, *(rs.get("runs") or [])][:RUN_HISTORY]
    out.events.append(
        (
            "Normal",
            "RetrainingStarted",
            f"{trigger['message']}: started {name} on version {_short(ds_version)}",
        )
    )
    return f"retraining run {name} started on dataset {ds_name} {_short(ds_version)}"


def _ask_for_data(
    out: Plan,
    rs: dict[str, Any],
    deployment: Body,
    ds_name: str,
    ds_version: str,
    seen: _Seen,
    drift: DriftReading | None,
    poll: float,
    pending: bool,
    preparing: bool,
) -> str:
    """Nothing new to train on: do drift or the schedule ask for new data?"""
    spec = deployment.get("spec") or {}
    use_drift = bool(seen.triggers.get("drift", True))
    use_live = bool(seen.triggers.get("liveQuality", False))
    if (use_drift or use_live) and drift is None:
        out.needs_drift = True  # read the pods, then plan again
        return ""
    if use_drift or use_live:
        out.look_again(poll)
    worst = drift.worst() if drift is not None and use_drift else None
    alerts = (spec.get("monitoring") or {}).get("alerts") or {}
    threshold = float(alerts.get("driftPsi", 0.2))
    low = _low_accuracy(drift, alerts) if use_live else None
    requested = str(rs.get("refreshRequestedTime") or "")
    since = max(str(deployment["metadata"].get("creationTimestamp") or ""), requested)
    schedule = due(seen.triggers.get("schedule"), since, seen.now)
    out.look_again(schedule.next_in)
    reason, message = "", ""
    if worst is not None and worst[1] > threshold:
        assert drift is not None
        reason = "Drift"
        message = (
            f"feature {worst[0]} drifted: PSI {worst[1]:.3f} > {threshold:g} "
            f"(highest of {drift.pods} server pod(s))"
        )
    elif low is not None:
        reason, message = "LiveQuality", low
    elif schedule.tick:
        reason, message = "Schedule", f"scheduled retraining at {schedule.tick}"
    if not reason:
        if pending and not preparing:
            last = rs.get("lastTrigger") or {}
            return (
                f"{last.get('message')}; dataset {ds_name} has no new data "
                f"(version {_short(ds_version)} is already trained on)"
            )
        drift_note = f"; highest drift PSI {worst[1]:.3f} ({worst[0]})" if worst else ""
        return f"no new data in dataset {ds_name}{drift_note}"
    return _request(out, rs, ds_name, requested, seen, reason, message, preparing)


def _low_accuracy(drift: DriftReading | None, alerts: Mapping[str, Any]) -> str | None:
    """Why live accuracy asks for new data, or None (no threshold, too few labels, or
    good enough)."""
    threshold = alerts.get("liveAccuracy")
    if drift is None or threshold is None:
        return None
    min_rows = int(alerts.get("minLabelledRows", 50))
    worst = drift.lowest_accuracy(min_rows)
    if worst is None or worst[0] >= float(threshold):
        return None
    return (
        f"live accuracy {worst[0]:.3f} < {float(threshold):g} on {int(worst[1])} labelled "
        f"rows (lowest of {drift.pods} server pod(s))"
    )


def _request(
    out: Plan,
    rs: dict[str, Any],
    ds_name: str,
    requested: str,
    seen: _Seen,
    reason: str,
    message: str,
    preparing: bool,
) -> str:
    last_request = parse_time(requested) if requested else None
    if last_request is not None and last_request + seen.cooldown > seen.now:
        out.look_again((last_request + seen.cooldown - seen.now).total_seconds())
        return (
            f"{message}; new data was asked of dataset {ds_name} at {requested}, "
            f"again after {format_time(last_request + seen.cooldown)}"
        )
    if preparing:
        return f"{message}; waiting for dataset {ds_name} to finish preparing"
    now_s = format_time(seen.now)
    out.refresh = ds_name
    rs["refreshRequestedTime"] = now_s
    rs["lastTrigger"] = {"reason": reason, "message": message, "time": now_s}
    out.events.append(
        ("Normal", "RetrainingTriggered", f"{message}: asked dataset {ds_name} for new data")
    )
    return f"{message}; asked dataset {ds_name} for new data"

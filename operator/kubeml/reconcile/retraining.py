"""Retraining decisions: when to ask for new data, when to train, what to promote.

The loop a Deployment's ``spec.retraining`` closes:

1. Drift in the serving pods, or the schedule, asks the template's Dataset for
   new data (a refresh request). Identical data trains an identical model, so
   nothing is trained until the Dataset publishes a version no model of this
   name was trained on.
2. Such a version (when asked for it, or always with ``datasetChange``) starts
   one run: the template's spec pinned to that version, with a gate to beat
   the alias holder on the key metric when the template has no such gate.
3. A run that passes its gates has its version promoted to the alias; if the
   Deployment then cannot serve it (Degraded), the alias goes back.

Pure: everything observed comes in, a Plan goes out; the controller does I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import labels
from ..api.estimators import DEFAULT_METRICS, ESTIMATORS
from ..conditions import find, is_true
from ..schedules import format_time, latest_tick, parse_time
from . import pods, registry

Body = Mapping[str, Any]
DRIFT_METRIC = "kubeml_feature_drift_psi"
PREPARING = frozenset({"Preparing", "Refreshing"})
RUN_HISTORY = 20
TRAINING_API = "kubeml.io/v1alpha1"


@dataclass(frozen=True)
class DriftReading:
    """PSI per feature: the highest any serving pod reports."""

    psi: Mapping[str, float]
    pods: int

    def worst(self) -> tuple[str, float] | None:
        if not self.psi:
            return None
        feature = max(sorted(self.psi), key=lambda f: self.psi[f])
        return feature, self.psi[feature]


def drift_from_metrics(texts: Iterable[str]) -> DriftReading:
    """Combine the drift gauges of several server pods' /metrics pages."""
    from prometheus_client.parser import text_string_to_metric_families

    psi: dict[str, float] = {}
    count = 0
    for text in texts:
        count += 1
        for family in text_string_to_metric_families(text):
            if family.name != DRIFT_METRIC:
                continue
            for sample in family.samples:
                feature = sample.labels.get("feature", "")
                if feature and sample.value == sample.value:  # NaN never drifts
                    psi[feature] = max(psi.get(feature, 0.0), float(sample.value))
    return DriftReading(psi=psi, pods=count)


@dataclass
class Plan:
    status: dict[str, Any] | None  # status.retraining; None removes it
    run: dict[str, Any] | None = None  # a TrainingRun to create
    refresh: str | None = None  # a Dataset to ask for new data
    aliases: dict[str, list[str]] = field(default_factory=dict)  # ModelVersion -> spec.aliases
    events: list[tuple[str, str, str]] = field(default_factory=list)


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
    rs["lastPromotion"] = {**last, "rolledBackTime": now}
    plan.events.append(
        (
            "Warning",
            "RolledBack",
            f"{last['modelVersion']} cannot serve ({degraded.get('reason')}: "
            f"{degraded.get('message')}); alias {alias} back to {last['previous']}",
        )
    )


def plan(
    deployment: Body,
    *,
    template: Body | None,
    dataset: Body | None,
    runs: Iterable[Body],
    versions: Iterable[Body],
    drift: Callable[[], DriftReading] | None,
    now: datetime,
) -> Plan:
    spec = deployment.get("spec") or {}
    policy = spec.get("retraining")
    if not policy:
        return Plan(status=None)
    now_s = format_time(now)
    current = (deployment.get("status") or {}).get("retraining") or {}
    rs: dict[str, Any] = copy.deepcopy(dict(current))
    out = Plan(status=rs)
    runs = list(runs)
    newest_first = sorted(
        runs, key=lambda r: str(r["metadata"].get("creationTimestamp") or ""), reverse=True
    )
    mvs = [v for v in versions if (v.get("spec") or {}).get("model") == spec.get("model")]
    if newest_first:
        rs["runs"] = [r["metadata"]["name"] for r in newest_first][:RUN_HISTORY]
    active = [r for r in newest_first if not _finished(r)]
    if active:
        rs["activeRun"] = active[0]["metadata"]["name"]
    else:
        rs.pop("activeRun", None)

    alias = policy.get("promoteAlias")
    if alias:
        _promote(out, rs, newest_first, mvs, alias, now_s)
        _roll_back(out, rs, deployment, mvs, now_s)

    def say(message: str) -> Plan:
        rs["message"] = message
        return out

    template_name = policy["template"]["name"]
    if template is None:
        return say(f"template TrainingRun {template_name} not found")
    ds_name = template["spec"]["datasetRef"]["name"]
    if dataset is None:
        return say(f"dataset {ds_name} (of template {template_name}) not found")
    if active:
        return say(f"retraining run {rs['activeRun']} is running")

    triggers = policy.get("triggers") or {}
    cooldown = timedelta(seconds=int(policy.get("cooldownSeconds", 3600)))
    ds_status = dataset.get("status") or {}
    ds_ready = find(ds_status.get("conditions"), "Ready")
    preparing = ds_ready is not None and ds_ready.get("reason") in PREPARING
    ds_version = str(ds_status.get("version") or "")
    usable = ds_ready is not None and ds_ready.get("status") == "True" and ds_version
    trained = {str(((v.get("spec") or {}).get("lineage") or {}).get("datasetVersion")) for v in mvs}
    trained |= {str(((r.get("spec") or {}).get("datasetRef") or {}).get("version")) for r in runs}
    new_data = bool(usable) and ds_version not in trained

    last_run_time = (
        parse_time(str(newest_first[0]["metadata"].get("creationTimestamp") or ""))
        if newest_first
        else None
    )
    last_trigger = rs.get("lastTrigger") or {}
    pending = last_trigger.get("reason") in ("Drift", "Schedule") and (
        last_run_time is None or last_trigger.get("time", "") > format_time(last_run_time)
    )

    if new_data and (triggers.get("datasetChange") or pending):
        if last_run_time is not None and last_run_time + cooldown > now:
            return say(
                f"dataset {ds_name} version {_short(ds_version)} is new; retraining waits for "
                f"the cooldown until {format_time(last_run_time + cooldown)}"
            )
        trigger = (
            dict(last_trigger)
            if pending
            else {
                "reason": "DatasetChanged",
                "message": f"dataset {ds_name} published version {_short(ds_version)}",
                "time": now_s,
            }
        )
        rs["lastTrigger"] = trigger
        out.run = run_manifest(deployment, template, ds_version, alias, trigger)
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
        return say(f"retraining run {name} started on dataset {ds_name} {_short(ds_version)}")

    # Nothing new to train on: do drift or the schedule ask for new data?
    reason, message = "", ""
    # Read only here: scraping every server pod is the costly part of a reconcile.
    reading = drift() if drift is not None and triggers.get("drift", True) else None
    worst = reading.worst() if reading is not None else None
    threshold = float(((spec.get("monitoring") or {}).get("alerts") or {}).get("driftPsi", 0.2))
    requested = str(rs.get("refreshRequestedTime") or "")
    if worst is not None and worst[1] > threshold:
        assert reading is not None
        reason = "Drift"
        message = (
            f"feature {worst[0]} drifted: PSI {worst[1]:.3f} > {threshold:g} "
            f"(highest of {reading.pods} server pod(s))"
        )
    else:
        since = max(str(deployment["metadata"].get("creationTimestamp") or ""), requested)
        tick = latest_tick(triggers.get("schedule"), since, now)
        if tick:
            reason, message = "Schedule", f"scheduled retraining at {tick}"
    if not reason:
        if pending and not preparing:
            return say(
                f"{last_trigger.get('message')}; dataset {ds_name} has no new data "
                f"(version {_short(ds_version)} is already trained on)"
            )
        drift_note = f"; highest drift PSI {worst[1]:.3f} ({worst[0]})" if worst else ""
        return say(f"no new data in dataset {ds_name}{drift_note}")

    last_request = parse_time(requested) if requested else None
    if last_request is not None and last_request + cooldown > now:
        return say(
            f"{message}; new data was asked of dataset {ds_name} at {requested}, "
            f"again after {format_time(last_request + cooldown)}"
        )
    if preparing:
        return say(f"{message}; waiting for dataset {ds_name} to finish preparing")
    out.refresh = ds_name
    rs["refreshRequestedTime"] = now_s
    rs["lastTrigger"] = {"reason": reason, "message": message, "time": now_s}
    out.events.append(
        ("Normal", "RetrainingTriggered", f"{message}: asked dataset {ds_name} for new data")
    )
    return say(f"{message}; asked dataset {ds_name} for new data")

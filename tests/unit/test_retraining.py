"""Retraining decisions: asking for data, starting runs, promoting and rolling back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeml.reconcile.retraining import DriftReading, drift_from_metrics, plan, run_name

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
V0, V1 = "a" * 64, "b" * 64


def ts(delta: timedelta = timedelta()) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(
    retraining: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    drift_psi: float = 0.2,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "iris",
        "alias": "champion",
        "monitoring": {"alerts": {"driftPsi": drift_psi}},
    }
    if retraining is not None:
        spec["retraining"] = retraining
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "uid": "u-1",
            "creationTimestamp": ts(-timedelta(days=2)),
        },
        "spec": spec,
        "status": status or {},
    }


def policy(**extra: Any) -> dict[str, Any]:
    return {"template": {"name": "iris-train"}, "promoteAlias": "champion", **extra}


TEMPLATE = {
    "metadata": {"name": "iris-train"},
    "spec": {
        "datasetRef": {"name": "iris"},
        "model": "iris",
        "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 10}},
    },
}


def dataset(version: str = V0, reason: str = "Prepared", prepared: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "iris"},
        "status": {
            "version": version,
            "preparedTime": prepared or ts(-timedelta(days=1)),
            "conditions": [{"type": "Ready", "status": "True", "reason": reason}],
        },
    }


def version(n: int, dv: str = V0, aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": f"iris-v{n}"},
        "spec": {
            "model": "iris",
            "version": n,
            "aliases": list(aliases),
            "lineage": {"datasetVersion": dv},
        },
        "status": {"aliases": [{"name": a, "since": ts(-timedelta(days=1))} for a in aliases]},
    }


def run(name: str, dv: str, outcome: str | None, mv: str | None = None, age: int = 3600) -> dict:
    status: dict[str, Any] = {}
    if outcome is not None:
        status["conditions"] = [{"type": "Succeeded", "status": outcome, "reason": "x"}]
    if mv:
        status["modelVersion"] = mv
    return {
        "metadata": {"name": name, "creationTimestamp": ts(-timedelta(seconds=age))},
        "spec": {"datasetRef": {"name": "iris", "version": dv}},
        "status": status,
    }


def drifted(psi: float) -> DriftReading:
    return DriftReading(psi={"petal_length": psi, "sepal_width": 0.01}, pods=2)


def decide(dep: dict[str, Any], **kw: Any) -> Any:
    """Both phases, as the controller runs them: plan without a drift reading; if the
    plan asks for one, read it (here: the given reading, or no serving pods) and plan
    again."""
    args: dict[str, Any] = {
        "template": TEMPLATE,
        "dataset": dataset(),
        "runs": [],
        "versions": [version(1, aliases=("champion",))],
        "now": NOW,
    }
    reading = kw.pop("drift", None)
    args.update(kw)
    first = plan(dep, drift=None, **args)
    if not first.needs_drift:
        return first
    return plan(dep, drift=reading or DriftReading(psi={}, pods=0), **args)


def test_no_policy_removes_the_status_block() -> None:
    out = decide(deployment(None, status={"retraining": {"message": "old"}}))
    assert out.status is None and out.run is None and out.refresh is None


def test_a_missing_template_is_reported_by_name() -> None:
    out = decide(deployment(policy()), template=None)
    assert out.status["message"] == "template TrainingRun iris-train not found"
    assert out.run is None and out.refresh is None


def test_drift_above_the_threshold_asks_the_dataset_for_new_data() -> None:
    out = decide(deployment(policy()), drift=drifted(0.9))
    assert out.refresh == "iris" and out.run is None
    assert out.status["refreshRequestedTime"] == ts()
    trigger = out.status["lastTrigger"]
    assert trigger["reason"] == "Drift" and "petal_length" in trigger["message"]
    assert "0.900 > 0.2" in trigger["message"]
    assert [e[1] for e in out.events] == ["RetrainingTriggered"]


def test_drift_below_the_threshold_does_nothing() -> None:
    out = decide(deployment(policy()), drift=drifted(0.15))
    assert out.refresh is None and out.run is None
    assert "highest drift PSI 0.150 (petal_length)" in out.status["message"]


def test_the_drift_trigger_can_be_switched_off() -> None:
    out = decide(deployment(policy(triggers={"drift": False})), drift=drifted(5.0))
    assert out.refresh is None


def test_a_second_request_waits_for_the_cooldown() -> None:
    earlier = {"retraining": {"refreshRequestedTime": ts(-timedelta(minutes=10))}}
    out = decide(deployment(policy(), status=earlier), drift=drifted(0.9))
    assert out.refresh is None
    assert "again after " + ts(timedelta(minutes=50)) in out.status["message"]
    later = {"retraining": {"refreshRequestedTime": ts(-timedelta(hours=2))}}
    assert decide(deployment(policy(), status=later), drift=drifted(0.9)).refresh == "iris"


def test_no_request_while_the_dataset_is_preparing() -> None:
    out = decide(deployment(policy()), drift=drifted(0.9), dataset=dataset(reason="Refreshing"))
    assert out.refresh is None and "finish preparing" in out.status["message"]


def pending_drift() -> dict[str, Any]:
    return {
        "retraining": {
            "refreshRequestedTime": ts(-timedelta(minutes=5)),
            "lastTrigger": {
                "reason": "Drift",
                "message": "feature x drifted",
                "time": ts(-timedelta(minutes=5)),
            },
        }
    }


def test_new_data_after_drift_starts_one_pinned_run_gated_on_the_champion() -> None:
    dep = deployment(policy(), status=pending_drift())
    out = decide(dep, dataset=dataset(V1, prepared=ts(-timedelta(minutes=1))))
    assert out.refresh is None and out.run is not None
    run_ = out.run
    assert run_["metadata"]["name"] == run_name("iris", V1) == "iris-retrain-" + V1[:12]
    assert run_["spec"]["datasetRef"] == {"name": "iris", "version": V1}
    assert run_["spec"]["gates"]["beat"] == {"alias": "champion", "metric": "accuracy"}
    assert run_["spec"]["estimator"] == TEMPLATE["spec"]["estimator"]
    assert run_["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert run_["metadata"]["labels"]["kubeml.io/retraining-for"] == "iris"
    assert run_["metadata"]["labels"]["kubeml.io/trigger"] == "Drift"
    assert out.status["activeRun"] == run_["metadata"]["name"]
    assert TEMPLATE["spec"].get("gates") is None  # the template is not modified


def test_the_templates_own_beat_gate_is_kept() -> None:
    template = {
        **TEMPLATE,
        "spec": {
            **TEMPLATE["spec"],
            "metrics": ["f1_macro"],
            "gates": {"beat": {"alias": "prod", "metric": "f1_macro", "minImprovement": 0.01}},
        },
    }
    out = decide(
        deployment(policy(triggers={"datasetChange": True})), template=template, dataset=dataset(V1)
    )
    assert out.run["spec"]["gates"]["beat"]["alias"] == "prod"


def test_without_a_promote_alias_no_gate_is_added() -> None:
    dep = deployment({"template": {"name": "iris-train"}, "triggers": {"datasetChange": True}})
    out = decide(dep, dataset=dataset(V1))
    assert out.run is not None and "gates" not in out.run["spec"]


def test_dataset_change_trigger_trains_every_new_version() -> None:
    out = decide(deployment(policy(triggers={"datasetChange": True})), dataset=dataset(V1))
    assert out.run is not None
    assert out.status["lastTrigger"]["reason"] == "DatasetChanged"
    assert [e[1] for e in out.events] == ["RetrainingStarted"]


def test_a_new_version_without_a_trigger_is_not_trained() -> None:
    out = decide(deployment(policy()), dataset=dataset(V1))
    assert out.run is None and out.refresh is None


def test_data_already_trained_on_starts_nothing() -> None:
    dep = deployment(policy(triggers={"datasetChange": True}), status=pending_drift())
    out = decide(dep, dataset=dataset(V0))
    assert out.run is None
    assert "has no new data" in out.status["message"]
    # Also when a retraining run (whatever its outcome) already used the version.
    out = decide(
        deployment(policy(triggers={"datasetChange": True})),
        dataset=dataset(V1),
        runs=[run("iris-retrain-x", V1, "False", age=7200)],
    )
    assert out.run is None


def test_the_templates_own_run_on_the_version_counts_as_trained_on() -> None:
    # The template is still training on V1 (no ModelVersion yet): low live accuracy
    # must not start a second run on the same data.
    busy = {**TEMPLATE, "status": {"datasetVersion": V1}}
    dep = deployment(policy(triggers={"datasetChange": True}), status=pending_drift())
    out = decide(dep, dataset=dataset(V1), template=busy)
    assert out.run is None
    assert "already trained on" in out.status["message"]
    # The same Dataset version without the template on it is trained.
    assert decide(dep, dataset=dataset(V1)).run is not None


def test_one_run_at_a_time() -> None:
    dep = deployment(policy(triggers={"datasetChange": True}))
    out = decide(dep, dataset=dataset(V1), runs=[run("r1", "c" * 64, None)], drift=drifted(3))
    assert out.run is None and out.refresh is None
    assert out.status["activeRun"] == "r1"
    assert out.status["message"] == "retraining run r1 is running"


def test_runs_respect_the_cooldown() -> None:
    dep = deployment(policy(triggers={"datasetChange": True}))
    out = decide(dep, dataset=dataset(V1), runs=[run("r1", "c" * 64, "True", age=600)])
    assert out.run is None and "cooldown" in out.status["message"]


def test_schedule_asks_for_data_once_per_tick() -> None:
    dep = deployment(policy(triggers={"drift": False, "schedule": "0 * * * *"}))
    out = decide(dep)
    assert out.refresh == "iris" and out.status["lastTrigger"]["reason"] == "Schedule"
    again = deployment(
        policy(triggers={"drift": False, "schedule": "0 * * * *"}, cooldownSeconds=0),
        status={"retraining": out.status},
    )
    assert decide(again).refresh is None


def test_a_passing_run_is_promoted_once() -> None:
    versions = [version(1, aliases=("champion",)), version(2, V1)]
    runs = [run("iris-retrain-b", V1, "True", mv="iris-v2")]
    out = decide(deployment(policy()), versions=versions, runs=runs)
    assert out.aliases == {"iris-v2": ["champion"]}
    promo = out.status["lastPromotion"]
    assert promo == {
        "run": "iris-retrain-b",
        "modelVersion": "iris-v2",
        "alias": "champion",
        "previous": "iris-v1",
        "time": ts(),
    }
    again = decide(
        deployment(policy(), status={"retraining": out.status}), versions=versions, runs=runs
    )
    assert again.aliases == {} and not any(e[1] == "Promoted" for e in again.events)


def test_a_failed_run_is_not_promoted() -> None:
    runs = [run("iris-retrain-b", V1, "False")]
    out = decide(deployment(policy()), runs=runs)
    assert out.aliases == {} and "lastPromotion" not in out.status


def serving_status(mv: str, degraded: bool) -> dict[str, Any]:
    return {
        "stable": {"modelVersion": mv, "version": int(mv[-1])},
        "conditions": [
            {
                "type": "Degraded",
                "status": "True" if degraded else "False",
                "reason": "ArtifactMismatch" if degraded else "AsExpected",
                "message": "sha256 differs" if degraded else "",
            }
        ],
    }


@pytest.mark.parametrize("degraded", [True, False])
def test_a_promoted_version_that_cannot_serve_is_rolled_back(degraded: bool) -> None:
    promo = {
        "run": "iris-retrain-b",
        "modelVersion": "iris-v2",
        "alias": "champion",
        "previous": "iris-v1",
        "time": ts(-timedelta(minutes=3)),
    }
    status = {**serving_status("iris-v2", degraded), "retraining": {"lastPromotion": promo}}
    versions = [version(1), version(2, V1, aliases=("champion",))]
    runs = [run("iris-retrain-b", V1, "True", mv="iris-v2")]
    out = decide(deployment(policy(), status=status), versions=versions, runs=runs)
    if degraded:
        assert out.aliases == {"iris-v1": ["champion"]}
        assert out.status["lastPromotion"]["rolledBackTime"] == ts()
        assert out.events[0][:2] == ("Warning", "RolledBack")
        assert "ArtifactMismatch" in out.events[0][2]
        # Once: a rolled-back promotion is not rolled back again, nor re-promoted.
        again = decide(
            deployment(policy(), status={**status, "retraining": out.status}),
            versions=versions,
            runs=runs,
        )
        assert again.aliases == {}
    else:
        assert out.aliases == {} and "rolledBackTime" not in out.status["lastPromotion"]


def test_drift_is_the_highest_psi_any_pod_reports() -> None:
    page = (
        "# HELP kubeml_feature_drift_psi PSI\n# TYPE kubeml_feature_drift_psi gauge\n"
        'kubeml_feature_drift_psi{{model="iris",version="1",feature="a"}} {a}\n'
        'kubeml_feature_drift_psi{{model="iris",version="1",feature="b"}} {b}\n'
        "# HELP kubeml_requests_total n\n# TYPE kubeml_requests_total counter\n"
        'kubeml_requests_total{{code="200"}} 7.0\n'
    )
    reading = drift_from_metrics([page.format(a=0.1, b=0.5), page.format(a=0.7, b="NaN")])
    assert reading.pods == 2
    assert reading.psi == {"a": 0.7, "b": 0.5}
    assert reading.worst() == ("a", 0.7)
    assert drift_from_metrics([]).worst() is None


def test_drift_is_read_only_when_the_plan_gets_to_it() -> None:
    # Phase one decides whether the pods must be scraped at all.
    def first_phase(dep: dict[str, Any], runs: list[dict[str, Any]]) -> Any:
        return plan(
            dep, template=TEMPLATE, dataset=dataset(), runs=runs, versions=[version(1)],
            drift=None, now=NOW,
        )  # fmt: skip

    assert not first_phase(deployment(policy()), [run("r1", V1, None)]).needs_drift  # busy
    assert first_phase(deployment(policy()), []).needs_drift
    assert not first_phase(deployment(policy(triggers={"drift": False})), []).needs_drift


def test_the_plan_says_when_to_look_again() -> None:
    # Time-based work asks to be looked at when it is due, not at the next resync.
    dep = deployment(policy(triggers={"datasetChange": True}, cooldownSeconds=3600))
    cooling = decide(dep, dataset=dataset(V1), runs=[run("r1", "c" * 64, "True", age=600)])
    assert cooling.requeue_after == 3000
    hourly = deployment(
        policy(triggers={"drift": False, "schedule": "0 * * * *"}),
        status={"retraining": {"refreshRequestedTime": ts()}},
    )
    assert decide(hourly).requeue_after == 3600  # NOW is on the hour: the next tick
    polled = decide(deployment(policy()), drift=drifted(0.01))
    assert polled.requeue_after == 60.0


def live(*pods: tuple[float, float]) -> DriftReading:
    return DriftReading(psi={}, pods=len(pods), live=tuple(pods))


def live_deployment(threshold: float | None = 0.9, min_rows: int = 50) -> dict[str, Any]:
    dep = deployment(policy(triggers={"drift": False, "liveQuality": True}))
    alerts = dep["spec"]["monitoring"]["alerts"]
    alerts["minLabelledRows"] = min_rows
    if threshold is not None:
        alerts["liveAccuracy"] = threshold
    return dep


def test_low_live_accuracy_asks_the_dataset_for_new_data() -> None:
    out = decide(live_deployment(), drift=live((0.95, 400), (0.6, 120)))
    assert out.refresh == "iris"
    trigger = out.status["lastTrigger"]
    assert trigger["reason"] == "LiveQuality"
    assert "live accuracy 0.600 < 0.9 on 120 labelled rows" in trigger["message"]


def test_live_accuracy_needs_enough_labels_and_a_threshold() -> None:
    assert decide(live_deployment(), drift=live((0.2, 49))).refresh is None
    assert decide(live_deployment(), drift=live((0.95, 500))).refresh is None
    assert decide(live_deployment(threshold=None), drift=live((0.1, 500))).refresh is None
    off = deployment(policy(triggers={"drift": False}))
    off["spec"]["monitoring"]["alerts"]["liveAccuracy"] = 0.9
    assert decide(off, drift=live((0.1, 500))).refresh is None


def test_live_accuracy_is_read_from_each_pods_metrics() -> None:
    page = (
        "# HELP kubeml_live_accuracy a\n# TYPE kubeml_live_accuracy gauge\n"
        'kubeml_live_accuracy{{model="iris",version="1"}} {acc}\n'
        "# HELP kubeml_live_labelled_rows r\n# TYPE kubeml_live_labelled_rows gauge\n"
        'kubeml_live_labelled_rows{{model="iris",version="1"}} {rows}\n'
    )
    reading = drift_from_metrics(
        [page.format(acc=0.8, rows=100), page.format(acc=0.5, rows=10), "# nothing\n"]
    )
    assert reading.pods == 3
    assert reading.live == ((0.8, 100.0), (0.5, 10.0))
    assert reading.lowest_accuracy(50) == (0.8, 100.0)
    assert reading.lowest_accuracy(5) == (0.5, 10.0)


def test_a_promotion_its_rollout_rolled_back_is_neither_promoted_nor_trained_again() -> None:
    promo = {
        "run": "iris-retrain-b",
        "modelVersion": "iris-v2",
        "alias": "champion",
        "previous": "iris-v1",
        "time": ts(-timedelta(minutes=3)),
    }
    rolled_back = {
        "phase": "RolledBack",
        "from": {"version": 1, "modelVersion": "iris-v1"},
        "to": {"version": 2, "modelVersion": "iris-v2"},
        "message": "rolled back to v1: v2 failed errorRate 0.5 above 0.01 over 40 requests",
    }
    status = {
        **serving_status("iris-v1", degraded=True),
        "rollout": rolled_back,
        # Drift is still there: the loop asked for data and got V1 (trained on).
        "retraining": {
            "lastPromotion": promo,
            "lastTrigger": {"reason": "Drift", "message": "PSI 0.9", "time": ts()},
        },
    }
    # The rollout already moved the alias back to v1.
    versions = [version(1, aliases=("champion",)), version(2, V1)]
    runs = [run("iris-retrain-b", V1, "True", mv="iris-v2")]
    out = decide(
        deployment(policy(), status=status),
        versions=versions,
        runs=runs,
        dataset=dataset(V1),
        drift=drifted(0.9),
    )
    last = out.status["lastPromotion"]
    assert last["rolledBackTime"] == ts() and "errorRate 0.5" in last["rolledBackMessage"]
    assert out.aliases == {} and out.run is None
    assert not any(e[1] in ("Promoted", "RolledBack") for e in out.events)
    again = decide(
        deployment(policy(), status={**status, "retraining": out.status}),
        versions=versions,
        runs=runs,
        dataset=dataset(V1),
        drift=drifted(0.9),
    )
    assert again.aliases == {} and again.run is None
    assert again.status["lastPromotion"] == last

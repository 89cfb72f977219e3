"""Progressive rollout decisions (spec.rollout), step by step, as pure functions of
what was observed: start, wait for the weight, judge, advance, succeed, roll back."""

from __future__ import annotations

import math
from typing import Any

from kubeml.reconcile import deployment as dep
from kubeml.reconcile.analysis import Sample
from tests.support.outcomes import Seen
from tests.unit.test_reconcile_deployment import CANARY_SVC, S, _env, app, body, cond, mv

ROLLOUT = {
    "steps": [
        {"setWeight": 10, "pause": {"duration": "30s"}},
        {"setWeight": 50, "pause": {"duration": "30s"}},
    ],
    "analysis": {"interval": "10s", "minRequests": 20, "maxErrorRate": 0.05},
}
GOOD = Sample(100, 0, ((0.005, 100.0), (math.inf, 100.0)), pods=1)
BAD = Sample(100, 100, ((0.005, 100.0), (math.inf, 100.0)), pods=1)


def t(seconds: int) -> str:
    return f"2026-11-26T12:{seconds // 60:02d}:{seconds % 60:02d}Z"


def serving_app(version: int, percent: int = 0) -> dict[str, Any]:
    a = app(version, 1, 1)
    env = (
        [
            {"name": "KUBEML_CANARY_URL", "value": "http://10.0.0.7:80"},
            {"name": "KUBEML_CANARY_PERCENT", "value": str(percent)},
        ]
        if percent
        else []
    )
    a["spec"]["template"]["spec"] = {"containers": [{"name": "server", "env": env}]}
    return a


def view(
    status: dict[str, Any],
    apps: dict[str, Any],
    sample: Sample | None = None,
    champion: int = 3,
    rollout: dict[str, Any] | None = None,
) -> dep.DeploymentView:
    b = body(replicas=1, rollout=rollout or ROLLOUT)
    b["status"] = status
    versions = [
        mv(2, ["champion"] if champion == 2 else []),
        mv(3, ["champion"] if champion == 3 else []),
    ]
    for v in versions:
        v["metadata"]["resourceVersion"] = f"rv{v['spec']['version']}"
    return dep.DeploymentView(b, versions, apps, canary_service=CANARY_SVC, sample=sample)


def decide(v: dep.DeploymentView, now: str) -> Seen:
    return Seen(dep.decide(v, S, now=now))


def started() -> dict[str, Any]:
    """The status after the alias moved from v2 to v3 while v2 served."""
    d = decide(
        view(
            {"stable": {"version": 2, "modelVersion": "iris-classifier-v2"}},
            {"stable": serving_app(2)},
        ),
        t(0),
    )
    return d.status


def test_a_new_alias_holder_starts_a_rollout_at_the_first_weight() -> None:
    d = decide(
        view(
            {"stable": {"version": 2, "modelVersion": "iris-classifier-v2"}},
            {"stable": serving_app(2)},
        ),
        t(0),
    )
    ro = d.status["rollout"]
    assert (ro["phase"], ro["step"], ro["weight"]) == ("Progressing", 0, 10)
    assert (ro["from"]["version"], ro["to"]["version"]) == (2, 3)
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    canary = next(
        o for o in d.apply if o["metadata"]["name"] == "iris-canary" and o["kind"] == "Deployment"
    )
    # Stable keeps serving the old version and forwards the step's weight to the new one.
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "2"
    assert canary["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "3"
    # Forwarding starts once a server of the new version is ready.
    assert "KUBEML_CANARY_PERCENT" not in _env(stable)
    ready = decide(view(d.status, {"stable": serving_app(2), "canary": app(3, 1, 1)}), t(1))
    stable = next(o for o in ready.apply if o["metadata"]["name"] == "iris-stable")
    assert _env(stable)["KUBEML_CANARY_PERCENT"] == "10"
    assert cond(d, "Progressing")["status"] == "True"
    assert ("Normal", "RolloutStarted") in [(e.type, e.reason) for e in d.outcome.events]


def _in_effect(status: dict[str, Any], weight: int) -> dict[str, Any]:
    return {"stable": serving_app(2, weight), "canary": app(3, 1, 1)}


def test_a_step_is_judged_once_its_weight_is_in_effect_then_advances_after_its_pause() -> None:
    st = started()
    # Not in effect yet (stable pods not forwarding): nothing judged.
    v = view(st, {"stable": serving_app(2), "canary": app(3, 1, 1)})
    assert not dep.wants_sample(v, S, now=t(1))
    v = view(st, _in_effect(st, 10))
    assert dep.wants_sample(v, S, now=t(2))
    d = decide(view(st, _in_effect(st, 10), GOOD), t(2))
    st = d.status
    ro = st["rollout"]
    assert ro["lastAnalysis"]["result"] == "Pass" and ro["stepPassed"] and ro["step"] == 0
    assert st["canary"]["trafficPercent"] == 10
    # Within the interval: no new judgement wanted.
    assert not dep.wants_sample(view(st, _in_effect(st, 10)), S, now=t(5))
    # Pause over (30 s from t(2)), judged again: the next step.
    d = decide(view(st, _in_effect(st, 10), GOOD), t(33))
    ro = d.status["rollout"]
    assert (ro["step"], ro["weight"], ro["phase"]) == (1, 50, "Progressing")
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert _env(stable)["KUBEML_CANARY_PERCENT"] == "50"


def test_the_last_step_passed_makes_the_new_version_stable() -> None:
    st = started()
    st["rollout"].update(step=1, weight=50)
    d = decide(view(st, _in_effect(st, 50), GOOD), t(2))
    d = decide(view(d.status, _in_effect(d.status, 50), GOOD), t(40))
    assert d.status["rollout"]["phase"] == "Succeeded"
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "3"
    assert "KUBEML_CANARY_URL" not in _env(stable)
    assert ("apps/v1", "Deployment", "iris-canary") in d.delete
    assert ("Normal", "RolloutSucceeded") in [(e.type, e.reason) for e in d.outcome.events]


def test_a_failed_judgement_past_the_limit_rolls_back_and_moves_the_alias_back() -> None:
    st = started()
    d = decide(view(st, _in_effect(st, 10), BAD), t(2))
    ro = d.status["rollout"]
    assert ro["phase"] == "RolledBack" and ro["failures"] == 1
    assert "errorRate 1 above 0.05 over 100 requests" in ro["message"]
    checks = {c["name"]: c for c in ro["lastAnalysis"]["checks"]}
    assert checks["errorRate"]["value"] == 1.0 and checks["errorRate"]["passed"] is False
    # All traffic back to the old version at once: no canary, no forwarding.
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "2"
    assert "KUBEML_CANARY_URL" not in _env(stable)
    assert ("apps/v1", "Deployment", "iris-canary") in d.delete
    patches = {p.ref.name: (p.patch, p.resource_version) for p in d.outcome.patches}
    assert patches["iris-classifier-v3"] == ({"spec": {"aliases": []}}, "rv3")
    assert patches["iris-classifier-v2"] == ({"spec": {"aliases": ["champion"]}}, "rv2")
    degraded = cond(d, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
    assert "errorRate" in degraded["message"]
    events = [(e.type, e.reason, e.message) for e in d.outcome.events]
    assert any(r == "RolledBack" and "errorRate 1" in m for _, r, m in events)
    # The alias is back on v2: v2 keeps serving, the rollback stays visible (Degraded).
    d2 = decide(view(d.status, {"stable": serving_app(2)}, champion=2), t(5))
    assert d2.status["rollout"]["phase"] == "RolledBack"
    assert cond(d2, "Degraded")["status"] == "True"
    assert cond(d2, "Ready")["status"] == "True"


def test_inconclusive_metrics_neither_fail_nor_advance() -> None:
    st = started()
    few = Sample(5, 5, (), pods=1)
    d = decide(view(st, _in_effect(st, 10), few), t(2))
    d = decide(view(d.status, _in_effect(d.status, 10), few), t(40))
    ro = d.status["rollout"]
    assert ro["lastAnalysis"]["result"] == "Inconclusive"
    assert (ro["phase"], ro["step"], ro["failures"]) == ("Progressing", 0, 0)
    assert "fewer than minRequests 20" in ro["message"]
    assert (
        ro["lastAnalysis"]["message"] == "5 requests answered by the new version, fewer "
        "than minRequests 20"
    )
    assert ro["lastAnalysis"]["source"] == "pods"


def test_an_unreadable_prometheus_holds_the_step_and_says_why() -> None:
    st = started()
    down = Sample(0, 0, source="prometheus", error="Prometheus at http://p:9090: refused")
    d = decide(view(st, _in_effect(st, 10), down), t(2))
    d = decide(view(d.status, _in_effect(d.status, 10), down), t(40))
    ro = d.status["rollout"]
    assert ro["lastAnalysis"]["source"] == "prometheus"
    assert ro["lastAnalysis"]["message"] == "Prometheus at http://p:9090: refused"
    assert (ro["phase"], ro["step"], ro["failures"], ro["stepPassed"]) == (
        "Progressing",
        0,
        0,
        False,
    )
    assert "inconclusive: Prometheus at http://p:9090: refused" in ro["message"]
    assert not d.outcome.events or all(e.reason != "RolledBack" for e in d.outcome.events)


def _health(d: Seen) -> str:
    from kubeml.health import health

    obj = {**d.outcome.statuses[-1].seen, "status": d.status}
    obj["metadata"] = {**obj["metadata"], "generation": obj["metadata"].get("generation")}
    return health("Deployment", obj)[0]


def test_argo_cd_and_kstatus_read_progressing_during_steps_and_degraded_after_rollback() -> None:
    st = started()
    running = decide(view(st, _in_effect(st, 10), GOOD), t(2))
    assert _health(running) == "Progressing"
    failed = decide(view(st, _in_effect(st, 10), BAD), t(2))
    assert _health(failed) == "Degraded"


GATED = {
    "steps": [{"setWeight": 20, "pause": {}}, {"setWeight": 60, "pause": {"duration": "10s"}}],
    "analysis": {"interval": "10s", "minRequests": 20},
}


def gated_view(
    status: dict[str, Any],
    apps: dict[str, Any],
    sample: Sample | None = None,
    approval: dict[str, int] | None = None,
    annotation: str | None = None,
) -> dep.DeploymentView:
    v = view(status, apps, sample)
    b = dict(v.body)
    b["spec"] = {**b["spec"], "rollout": {**GATED, **({"approval": approval} if approval else {})}}
    if annotation is not None:
        b["metadata"] = {**b["metadata"], "annotations": {"kubeml.io/approved-step": annotation}}
    return dep.DeploymentView(b, v.versions, apps, canary_service=CANARY_SVC, sample=sample)


def _gated_and_passed() -> dict[str, Any]:
    st = decide(
        gated_view(
            {"stable": {"version": 2, "modelVersion": "iris-classifier-v2"}},
            {"stable": serving_app(2)},
        ),
        t(0),
    ).status
    assert st["rollout"]["weight"] == 20
    return st


def test_a_manual_gate_waits_for_approval_and_says_how_to_give_it() -> None:
    st = _gated_and_passed()
    d = decide(gated_view(st, _in_effect(st, 20), GOOD), t(2))
    # Long after any pause: still waiting, and status says for what.
    d = decide(gated_view(d.status, _in_effect(d.status, 20), GOOD), t(600))
    ro = d.status["rollout"]
    assert (ro["step"], ro["waitingFor"]) == (0, "Approval")
    assert "spec.rollout.approval to {version: 3, step: 1}" in ro["message"]
    assert "kubeml.io/approved-step=3/1" in ro["message"]
    progressing = cond(d, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "WaitingForApproval")
    # An approval for another version (a stale one in the GitOps repo) does not count.
    d2 = decide(
        gated_view(d.status, _in_effect(d.status, 20), GOOD, approval={"version": 9, "step": 5}),
        t(620),
    )
    assert d2.status["rollout"]["waitingFor"] == "Approval"


def test_the_spec_field_approves_the_gate() -> None:
    st = _gated_and_passed()
    d = decide(gated_view(st, _in_effect(st, 20), GOOD), t(2))
    d = decide(
        gated_view(d.status, _in_effect(d.status, 20), GOOD, approval={"version": 3, "step": 1}),
        t(15),
    )
    ro = d.status["rollout"]
    assert (ro["step"], ro["weight"]) == (1, 60) and "waitingFor" not in ro


def test_the_annotation_shortcut_approves_the_gate() -> None:
    st = _gated_and_passed()
    d = decide(gated_view(st, _in_effect(st, 20), GOOD), t(2))
    d = decide(gated_view(d.status, _in_effect(d.status, 20), GOOD, annotation="3/1"), t(15))
    assert d.status["rollout"]["step"] == 1


# Retraining promotions: progressive by default, without spec.rollout.
LOOP = {"template": {"name": "iris-train"}, "promoteAlias": "champion"}


def loop_view(
    status: dict[str, Any],
    apps: dict[str, Any],
    sample: Sample | None = None,
    champion: int = 3,
    **loop: Any,
) -> dep.DeploymentView:
    v = view(status, apps, sample, champion)
    b = dict(v.body)
    spec = {k: val for k, val in b["spec"].items() if k != "rollout"}
    b["spec"] = {**spec, "retraining": {**LOOP, **loop}}
    return dep.DeploymentView(b, v.versions, apps, canary_service=CANARY_SVC, sample=sample)


SERVING_V2 = {"stable": {"version": 2, "modelVersion": "iris-classifier-v2"}}


def test_a_promoted_version_rolls_out_in_the_default_steps_without_spec_rollout() -> None:
    d = decide(loop_view(SERVING_V2, {"stable": serving_app(2)}), t(0))
    ro = d.status["rollout"]
    # The Rollout model's defaults: 10% then 50%, 30 s each, judged every 10 s.
    assert (ro["phase"], ro["steps"], ro["weight"]) == ("Progressing", 2, 10)
    assert (ro["from"]["version"], ro["to"]["version"]) == (2, 3)
    assert cond(d, "Progressing")["reason"] == "RollingOut"
    st = d.status
    assert dep.wants_sample(loop_view(st, _in_effect(st, 10)), S, now=t(1))
    d = decide(loop_view(st, _in_effect(st, 10), GOOD), t(1))
    # A judgement within the 10 s interval is not wanted; the 30 s pause holds the step.
    assert not dep.wants_sample(loop_view(d.status, _in_effect(d.status, 10)), S, now=t(9))
    d = decide(loop_view(d.status, _in_effect(d.status, 10), GOOD), t(29))
    assert d.status["rollout"]["step"] == 0
    d = decide(loop_view(d.status, _in_effect(d.status, 10), GOOD), t(31))
    assert (d.status["rollout"]["step"], d.status["rollout"]["weight"]) == (1, 50)
    st = d.status
    d = decide(loop_view(st, _in_effect(st, 50), GOOD), t(40))
    d = decide(loop_view(d.status, _in_effect(d.status, 50), GOOD), t(71))
    assert d.status["rollout"]["phase"] == "Succeeded"
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "3"


def test_a_breach_in_a_promoted_versions_rollout_gives_the_alias_back() -> None:
    st = decide(loop_view(SERVING_V2, {"stable": serving_app(2)}), t(0)).status
    st["retraining"] = {
        "lastPromotion": {
            "run": "iris-retrain-b",
            "modelVersion": "iris-classifier-v3",
            "alias": "champion",
            "previous": "iris-classifier-v2",
            "time": t(0),
        }
    }
    d = decide(loop_view(st, _in_effect(st, 10), BAD), t(2))
    assert d.status["rollout"]["phase"] == "RolledBack"
    patches = {p.ref.name: p.patch for p in d.outcome.patches}
    assert patches["iris-classifier-v2"] == {"spec": {"aliases": ["champion"]}}
    assert patches["iris-classifier-v3"] == {"spec": {"aliases": []}}
    promo = d.status["retraining"]["lastPromotion"]
    assert promo["rolledBackTime"] == t(2)
    assert "errorRate 1 above 0.01" in promo["rolledBackMessage"]
    # Alias back on v2: v2 serves, the rollback stays visible (Degraded), and nothing
    # is promoted or rolled again by itself.
    back = decide(loop_view(d.status, {"stable": serving_app(2)}, champion=2), t(5))
    assert back.status["rollout"]["phase"] == "RolledBack"
    assert cond(back, "Degraded")["status"] == "True"
    assert cond(back, "Ready")["status"] == "True"
    assert back.outcome.patches == []
    assert back.status["retraining"]["lastPromotion"]["rolledBackTime"] == t(2)


def test_immediate_promotions_take_all_traffic_at_once() -> None:
    d = decide(loop_view(SERVING_V2, {"stable": serving_app(2)}, rollout="Immediate"), t(0))
    assert "rollout" not in d.status
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "3"


def test_default_steps_only_when_the_loop_promotes_the_alias_served() -> None:
    d = decide(loop_view(SERVING_V2, {"stable": serving_app(2)}, promoteAlias="challenger"), t(0))
    assert "rollout" not in d.status


def test_moving_away_from_a_version_that_cannot_serve_is_immediate() -> None:
    v = loop_view(SERVING_V2, {"stable": serving_app(2)})
    broken = mv(2, [], ready="False", reason="ArtifactMismatch")
    versions = [broken if x["spec"]["version"] == 2 else x for x in v.versions]
    d = decide(dep.DeploymentView(v.body, versions, v.apps, canary_service=CANARY_SVC), t(0))
    assert "rollout" not in d.status or d.status["rollout"]["phase"] != "Progressing"
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert stable["spec"]["template"]["metadata"]["labels"]["kubeml.io/version"] == "3"


def test_a_new_version_that_cannot_serve_is_rolled_back_not_waited_for() -> None:
    # Its server never becomes ready (the artifact failed verification): without this
    # the rollout would wait for its weight forever, the alias on a broken version.
    st = decide(loop_view(SERVING_V2, {"stable": serving_app(2)}), t(0)).status
    v = loop_view(st, {"stable": serving_app(2), "canary": app(3, 1, 0)})
    broken = mv(3, ["champion"], ready="False", reason="ArtifactMismatch")
    versions = [broken if x["spec"]["version"] == 3 else x for x in v.versions]
    d = decide(dep.DeploymentView(v.body, versions, v.apps, canary_service=CANARY_SVC), t(20))
    ro = d.status["rollout"]
    assert ro["phase"] == "RolledBack"
    assert "v3 cannot serve: ArtifactMismatch" in ro["message"]
    patches = {p.ref.name: p.patch for p in d.outcome.patches}
    assert patches["iris-classifier-v2"] == {"spec": {"aliases": ["champion"]}}
    assert ("apps/v1", "Deployment", "iris-canary") in d.delete
    degraded = cond(d, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")


def test_a_rollout_judged_on_agreement_mirrors_to_the_new_version_and_rolls_back_below_it() -> None:
    policy = {
        **ROLLOUT,
        "analysis": {**ROLLOUT["analysis"], "minAgreement": 0.9, "mirrorWeight": 25},
    }
    st = started()
    # No ready canary yet: neither forwarding nor mirroring.
    apps = {"stable": serving_app(2), "canary": app(3, 1, 0)}
    d = decide(view(st, apps, rollout=policy), t(1))
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert "KUBEML_SHADOW_URL" not in _env(stable)
    d = decide(view(st, _in_effect(st, 10), rollout=policy), t(1))
    env = _env(next(o for o in d.apply if o["metadata"]["name"] == "iris-stable"))
    assert (env["KUBEML_SHADOW_URL"], env["KUBEML_SHADOW_PERCENT"]) == ("http://10.0.0.7:80", "25")
    assert env["KUBEML_SHADOW_VERSION"] == "3" and env["KUBEML_CANARY_PERCENT"] == "10"
    disagreeing = Sample(100, 0, GOOD.buckets, pods=1, compared=200, agreed=100)
    d = decide(view(st, _in_effect(st, 10), disagreeing, rollout=policy), t(2))
    ro = d.status["rollout"]
    assert ro["phase"] == "RolledBack"
    assert "agreement 0.5 below 0.9 over 100 requests" in ro["message"]
    stable = next(o for o in d.apply if o["metadata"]["name"] == "iris-stable")
    assert "KUBEML_SHADOW_URL" not in _env(stable)

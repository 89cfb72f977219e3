"""Deployment (kubeml.io) decisions and the manifests they produce."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeml.conditions import find
from kubeml.reconcile import deployment as dep
from kubeml.reconcile import server_objects
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml
from tests.support.outcomes import Seen
from tests.support.podsecurity import violations

S = Settings(
    bucket="kubeml",
    s3_endpoint="http://127.0.0.1:9000",
    runtime_image="ghcr.io/kubeml/runtime:0.1.0",
)
NOW = "2026-11-26T12:00:00Z"
GOLDEN = Path(__file__).parent / "golden"


def body(**spec: Any) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "iris" / "deployment.yaml")
    doc["metadata"].update(namespace="ml", uid="dep-uid", generation=1)
    doc["spec"].update(spec)
    return doc


def mv(
    version: int,
    aliases: list[str] | None = None,
    ready: str | None = "True",
    reason: str = "Verified",
) -> dict[str, Any]:
    doc = load_yaml(ROOT / "examples" / "modelversion.yaml")
    doc["metadata"]["name"] = f"iris-classifier-v{version}"
    doc["metadata"]["namespace"] = "ml"
    doc["spec"]["artifact"]["uri"] = doc["spec"]["artifact"]["uri"].replace("/default/", "/ml/")
    doc["spec"]["version"] = version
    doc["spec"]["aliases"] = aliases or []
    if ready:
        doc["status"] = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": reason,
                    "message": "sha256 of s3://kubeml/x is 00, expected ff",
                    "lastTransitionTime": NOW,
                }
            ]
        }
    return doc


def app(
    track_version: int,
    replicas: int,
    ready: int,
    updated: int | None = None,
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": {"kubeml.io/version": str(track_version)}}},
        },
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
        },
    }


def decide(
    b: dict[str, Any],
    versions: list[dict[str, Any]],
    apps: dict[str, Any] | None = None,
    prom: bool = False,
    canary_service: dict[str, Any] | None = None,
) -> Seen:
    view = dep.DeploymentView(
        b, versions, apps or {}, prometheus_operator=prom, canary_service=canary_service
    )
    return Seen(dep.decide(view, S, now=NOW))


def cond(d: Seen, t: str) -> dict[str, Any]:
    c = find(d.status["conditions"], t)
    assert c is not None
    return dict(c)


def kinds(d: Seen) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in d.apply]


def test_alias_resolves_to_its_holder_and_builds_server_and_service() -> None:
    d = decide(body(), [mv(1), mv(2, ["champion"])])
    assert kinds(d) == ["Deployment/iris-stable", "Service/iris"]
    env = {
        e["name"]: e.get("value")
        for e in d.apply[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBEML_MODEL_VERSION"] == "2"
    assert d.apply[0]["spec"]["replicas"] == 2
    assert d.status["stable"]["modelVersion"] == "iris-classifier-v2"
    assert d.status["endpoint"] == "http://iris.ml.svc:80"


def test_missing_alias_is_waited_for_not_failed_and_nothing_is_built() -> None:
    d = decide(body(), [mv(1)])
    assert d.apply == []
    assert cond(d, "Ready")["reason"] == "AliasNotFound"
    assert "champion" in cond(d, "Ready")["message"]
    # A pipeline applied at once waits for training: Progressing, not Degraded.
    assert (cond(d, "Progressing")["status"], cond(d, "Degraded")["status"]) == ("True", "False")
    assert "lastFailure" not in d.status


def test_rollout_complete_is_ready() -> None:
    d = decide(body(), [mv(2, ["champion"])], {"stable": app(2, 2, 2)})
    assert (cond(d, "Ready")["status"], cond(d, "Progressing")["status"]) == ("True", "False")
    assert cond(d, "Degraded")["status"] == "False"
    assert d.status["readyReplicas"] == 2


def test_alias_move_shows_old_and_new_until_done() -> None:
    b = body()
    b["status"] = {"stable": {"version": 1, "modelVersion": "iris-classifier-v1"}}
    rolling = decide(
        b,
        [mv(1), mv(2, ["champion"])],
        {"stable": app(1, 2, 2, updated=1, generation=2, observed=2)},
    )
    assert rolling.status["previous"]["version"] == 1
    assert rolling.status["stable"]["version"] == 2
    assert cond(rolling, "Progressing")["status"] == "True"
    assert "from v1 to v2" in cond(rolling, "Progressing")["message"]
    b["status"] = rolling.status
    done = decide(b, [mv(1), mv(2, ["champion"])], {"stable": app(2, 2, 2)})
    assert "previous" not in done.status
    assert cond(done, "Ready")["status"] == "True"
    assert [e[1] for e in done.events] == ["RolledOut"]


@pytest.mark.parametrize(
    ("total", "percent", "split"),
    [(4, 25, (4, 1)), (2, 50, (2, 1)), (1, 5, (1, 1)), (10, 0, (10, 0)), (3, 100, (3, 3))],
)
def test_stable_keeps_its_replicas_and_the_canary_gets_capacity_for_its_share(
    total: int, percent: int, split: tuple[int, int]
) -> None:
    assert server_objects.split_replicas(total, percent) == split


CANARY_SVC = {"metadata": {"name": "iris-canary"}, "spec": {"clusterIP": "10.0.0.7"}}


def _env(app: dict[str, Any]) -> dict[str, str]:
    container = app["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_clients_reach_only_stable_which_forwards_the_share_to_the_canary_service() -> None:
    d = decide(
        body(replicas=4, canary={"version": 3, "trafficPercent": 25}),
        [mv(2, ["champion"]), mv(3)],
        {"canary": app(3, 1, 1)},
        canary_service=CANARY_SVC,
    )
    stable, svc, canary_svc, canary = d.apply
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (4, 1)
    assert canary["metadata"]["name"] == canary_svc["metadata"]["name"] == "iris-canary"
    assert svc["metadata"]["name"] == "iris"
    # The client-facing Service selects stable pods only; the canary's its own.
    pod_labels = [a["spec"]["template"]["metadata"]["labels"] for a in (stable, canary)]
    assert svc["spec"]["selector"].items() <= pod_labels[0].items()
    assert not svc["spec"]["selector"].items() <= pod_labels[1].items()
    assert canary_svc["spec"]["selector"].items() <= pod_labels[1].items()
    env = _env(stable)
    assert env["KUBEML_CANARY_URL"] == "http://10.0.0.7:80"
    assert (env["KUBEML_CANARY_PERCENT"], env["KUBEML_CANARY_VERSION"]) == ("25", "3")
    assert "KUBEML_CANARY_URL" not in _env(canary)
    # Stable servers do not forward it yet: no share is in effect, and status says so.
    assert d.status["canary"]["trafficPercent"] == 0
    assert d.status["canary"]["desiredTrafficPercent"] == 25


def test_stable_forwards_nothing_until_the_canary_service_has_an_address() -> None:
    d = decide(
        body(replicas=1, canary={"version": 3, "trafficPercent": 25}),
        [mv(2, ["champion"]), mv(3)],
        {"canary": app(3, 1, 1)},
    )
    assert "KUBEML_CANARY_URL" not in _env(d.apply[0])


def test_stable_forwards_nothing_until_a_canary_server_is_ready_then_keeps_forwarding() -> None:
    b = body(replicas=1, canary={"version": 3, "trafficPercent": 25})
    versions = [mv(2, ["champion"]), mv(3)]
    # Forwarding to a canary still starting would count its start as its failures.
    d = decide(b, versions, {"canary": app(3, 1, 0)}, canary_service=CANARY_SVC)
    assert "KUBEML_CANARY_URL" not in _env(d.apply[0])
    # Already forwarding: a canary pod restarting does not restart the stable servers.
    apps = {"stable": _forwarding_app(2, 25, 1), "canary": app(3, 1, 0)}
    d = decide(b, versions, apps, canary_service=CANARY_SVC)
    assert _env(d.apply[0])["KUBEML_CANARY_PERCENT"] == "25"


def _forwarding_app(version: int, percent: int, ready: int, **kw: Any) -> dict[str, Any]:
    a = app(version, 1, ready, **kw)
    env = [{"name": "KUBEML_CANARY_URL", "value": "http://10.0.0.7:80"}] if percent else []
    env += [{"name": "KUBEML_CANARY_PERCENT", "value": str(percent)}] if percent else []
    a["spec"]["template"]["spec"] = {"containers": [{"name": "server", "env": env}]}
    return a


@pytest.mark.parametrize(
    ("stable_percent", "canary_ready", "rolled", "reported", "effective"),
    [
        (25, 1, True, 0, 25),  # stable runs with the share, canary serves: in effect
        (25, 0, True, 25, 0),  # no ready canary: stable answers everything
        (10, 1, False, 25, 25),  # stable still rolling: the old servers' share
        (0, 1, True, 25, 0),  # stable pods not (yet) told to forward
    ],
)
def test_status_reports_the_share_in_effect_not_the_one_asked_for(
    stable_percent: int, canary_ready: int, rolled: bool, reported: int, effective: int
) -> None:
    b = body(replicas=1, canary={"version": 3, "trafficPercent": 10})
    b["status"] = {"canary": {"version": 3, "trafficPercent": reported}}
    stable = _forwarding_app(
        2, stable_percent, 1, **({} if rolled else {"generation": 2, "observed": 1})
    )
    d = decide(
        b,
        [mv(2, ["champion"]), mv(3)],
        {"stable": stable, "canary": app(3, 1, canary_ready)},
        canary_service=CANARY_SVC,
    )
    assert d.status["canary"]["trafficPercent"] == effective
    assert d.status["canary"]["desiredTrafficPercent"] == 10
    if rolled and canary_ready:
        ready = cond(d, "Ready")["message"]
        assert f"at {effective}%" in ready
        assert ("going to 10%" in ready) == (effective != 10)


def test_no_canary_deletes_a_leftover_one() -> None:
    d = decide(body(), [mv(2, ["champion"])])
    assert ("apps/v1", "Deployment", "iris-canary") in d.delete
    assert ("v1", "Service", "iris-canary") in d.delete


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    spec = body(autoscaling={"minReplicas": 2, "maxReplicas": 5})
    spec["spec"].pop("replicas")
    d = decide(spec, [mv(2, ["champion"])])
    assert "replicas" not in d.apply[0]["spec"]
    hpa = next(o for o in d.apply if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "iris-stable"


def test_tampered_version_is_degraded_with_its_reason() -> None:
    d = decide(
        body(),
        [mv(2, ["champion"], ready="False", reason="ArtifactMismatch")],
        {"stable": app(2, 2, 0)},
    )
    assert (cond(d, "Degraded")["status"], cond(d, "Degraded")["reason"]) == (
        "True",
        "ArtifactMismatch",
    )
    assert cond(d, "Ready")["reason"] == "ArtifactMismatch"
    assert d.status["lastFailure"]["reason"] == "ArtifactMismatch"


def test_monitoring_objects_only_with_the_prometheus_operator() -> None:
    without = decide(body(), [mv(2, ["champion"])])
    assert not [o for o in without.apply if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    annotations = without.apply[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    with_op = decide(body(), [mv(2, ["champion"])], prom=True)
    assert {"ServiceMonitor/iris", "PrometheusRule/iris"} <= set(kinds(with_op))
    rule = next(o for o in with_op.apply if o["kind"] == "PrometheusRule")
    names = [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]
    assert names == [
        "KubeMLHighErrorRate",
        "KubeMLHighLatency",
        "KubeMLFeatureDrift",
        "KubeMLServerDown",
    ]
    assert "0.25" in rule["spec"]["groups"][0]["rules"][1]["expr"]


def test_server_pods_are_restricted_and_probe_readiness() -> None:
    d = decide(
        body(replicas=4, canary={"version": 3, "trafficPercent": 25}), [mv(2, ["champion"]), mv(3)]
    )
    for obj in d.apply:
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert violations(pod) == []
            (c,) = pod["containers"]
            assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            env = {e["name"]: e for e in c["env"]}
            assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    strategy = d.apply[0]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}


def test_manifests_match_the_golden_files() -> None:
    d = decide(
        body(replicas=4, canary={"alias": "challenger", "trafficPercent": 25}),
        [mv(2, ["champion"]), mv(3, ["challenger"])],
        {"canary": app(3, 1, 1)},
        prom=True,
        canary_service=CANARY_SVC,
    )
    rendered = yaml.safe_dump_all(d.apply, sort_keys=True)
    path = GOLDEN / "deployment-iris-canary.yaml"
    if os.environ.get("KUBEML_UPDATE_GOLDEN") or not path.exists():
        path.write_text(rendered)
    assert rendered == path.read_text(), "KUBEML_UPDATE_GOLDEN=1 pytest ... to accept changes"


def test_a_served_version_being_deleted_keeps_serving_and_says_so() -> None:
    # Bug: deleting the champion's version was blocked, serving went on, and yet the
    # Deployment said Ready=False AliasNotFound for as long as the deletion was blocked.
    leaving = mv(2, ["champion"], ready="False", reason="DeletionBlocked")
    leaving["metadata"]["deletionTimestamp"] = NOW
    d = decide(body(), [mv(1), leaving], {"stable": app(2, 2, 2)})
    ready = cond(d, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Serving")
    assert "iris-classifier-v2 is being deleted" in ready["message"]
    assert "another version holds alias champion" in ready["message"]
    assert cond(d, "Degraded")["status"] == "False"
    assert kinds(d)[0] == "Deployment/iris-stable"


def test_a_version_whose_artifact_is_another_namespaces_is_never_served() -> None:
    theirs = mv(2, ["champion"])
    theirs["spec"]["artifact"]["uri"] = theirs["spec"]["artifact"]["uri"].replace(
        "/ml/", "/victim/"
    )
    d = decide(body(), [theirs])
    assert d.apply == []
    assert (cond(d, "Ready")["reason"], cond(d, "Degraded")["status"]) == (
        "ArtifactNotAllowed",
        "True",
    )
    assert "victim" in cond(d, "Ready")["message"]


SHADOW_SVC = {"metadata": {"name": "iris-shadow"}, "spec": {"clusterIP": "10.0.0.8"}}


def _shadow(apps: dict[str, Any], status: dict[str, Any] | None = None, **shadow: Any) -> Seen:
    b = body(replicas=4, shadow={"version": 3, "percent": 30, **shadow})
    if status is not None:
        b["status"] = status
    view = dep.DeploymentView(
        b, [mv(2, ["champion"]), mv(3)], apps, canary_service=None, shadow_service=SHADOW_SVC
    )
    return Seen(dep.decide(view, S, now=NOW))


def _mirroring_app(version: int, percent: int) -> dict[str, Any]:
    a = app(2, 4, 4)
    env = [
        {"name": "KUBEML_SHADOW_URL", "value": "http://10.0.0.8:80"},
        {"name": "KUBEML_SHADOW_PERCENT", "value": str(percent)},
        {"name": "KUBEML_SHADOW_VERSION", "value": str(version)},
    ]
    a["spec"]["template"]["spec"] = {"containers": [{"name": "server", "env": env}]}
    return a


def test_a_shadow_runs_beside_stable_and_stable_mirrors_to_it_once_it_is_ready() -> None:
    # Not ready yet: its start would only count as its failures.
    d = _shadow({"shadow": app(3, 2, 0)})
    assert kinds(d) == [
        "Deployment/iris-stable",
        "Service/iris",
        "Service/iris-shadow",
        "Deployment/iris-shadow",
    ]
    stable, svc, shadow_svc, shadow = d.apply
    assert "KUBEML_SHADOW_URL" not in _env(stable)
    # Capacity for its share of what reaches stable; it is never behind the client Service.
    assert shadow["spec"]["replicas"] == 2
    labels_ = shadow["spec"]["template"]["metadata"]["labels"]
    assert not svc["spec"]["selector"].items() <= labels_.items()
    assert shadow_svc["spec"]["selector"].items() <= labels_.items()
    assert "KUBEML_SHADOW_URL" not in _env(shadow) and "KUBEML_CANARY_URL" not in _env(shadow)
    assert d.status["shadow"] == {
        "version": 3,
        "modelVersion": "iris-classifier-v3",
        "replicas": 2,
        "readyReplicas": 0,
        "percent": 0,
        "desiredPercent": 30,
    }
    d = _shadow({"shadow": app(3, 2, 1)}, tolerance=0.5)
    env = _env(d.apply[0])
    assert (env["KUBEML_SHADOW_URL"], env["KUBEML_SHADOW_PERCENT"]) == ("http://10.0.0.8:80", "30")
    assert (env["KUBEML_SHADOW_VERSION"], env["KUBEML_SHADOW_TOLERANCE"]) == ("3", "0.5")
    # Stable servers do not run with it yet: nothing is mirrored in effect.
    assert d.status["shadow"]["percent"] == 0
    d = _shadow({"stable": _mirroring_app(3, 30), "shadow": app(3, 2, 1)})
    assert d.status["shadow"]["percent"] == 30
    assert d.status["readyReplicas"] == 5 and d.status["replicas"] == 6
    # Mirroring already: a shadow pod restarting does not restart the stable servers.
    d = _shadow({"stable": _mirroring_app(3, 30), "shadow": app(3, 2, 0)})
    assert _env(d.apply[0])["KUBEML_SHADOW_PERCENT"] == "30"
    assert d.status["shadow"]["percent"] == 0


def test_a_shadow_of_the_stable_version_or_none_runs_nothing() -> None:
    d = decide(body(shadow={"alias": "champion", "percent": 10}), [mv(2, ["champion"])])
    assert kinds(d) == ["Deployment/iris-stable", "Service/iris"]
    assert ("apps/v1", "Deployment", "iris-shadow") in d.delete
    assert ("v1", "Service", "iris-shadow") in d.delete
    assert "shadow" not in d.status
    d = decide(body(shadow={"alias": "challenger", "percent": 10}), [mv(2, ["champion"])])
    assert "shadow" not in d.status
    assert (
        "AliasNotFound",
        "shadow: no version of model iris-classifier holds alias challenger",
    ) in [(e.reason, e.message) for e in d.outcome.events]


def test_status_shadow_reports_agreement_read_from_the_stable_servers() -> None:
    from kubeml.reconcile.analysis import Sample

    apps = {"stable": _mirroring_app(3, 30), "shadow": app(3, 2, 1)}
    b = body(replicas=4, shadow={"version": 3, "percent": 30})
    b["status"] = {"shadow": {"version": 3, "percent": 30}}
    view = dep.DeploymentView(b, [mv(2, ["champion"]), mv(3)], apps, shadow_service=SHADOW_SVC)
    # Mirroring in effect, never read: due now; the reading goes into status.
    assert dep.wants_shadow_reading(view, now=NOW) == 3
    reading = Sample(0, 0, pods=1, compared=400, agreed=300)
    d = Seen(
        dep.decide(dep.DeploymentView(**{**view.__dict__, "shadow_reading": reading}), S, now=NOW)
    )
    shadow = d.status["shadow"]
    assert (shadow["rowsCompared"], shadow["rowsAgreed"], shadow["agreement"]) == (400, 300, 0.75)
    assert shadow["measuredTime"] == NOW and d.outcome.requeue_after == dep.SHADOW_READ_SECONDS
    # Read again only after the interval; without a reading the last one is kept.
    b["status"] = d.status
    assert dep.wants_shadow_reading(view, now="2026-11-26T12:00:10Z") is None
    assert dep.wants_shadow_reading(view, now="2026-11-26T12:00:31Z") == 3
    d = Seen(dep.decide(view, S, now="2026-11-26T12:00:10Z"))
    assert d.status["shadow"]["agreement"] == 0.75
    assert d.status["shadow"]["measuredTime"] == NOW

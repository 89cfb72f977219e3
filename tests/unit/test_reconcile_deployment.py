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
) -> dep.Decision:
    return dep.decide(b, versions, apps or {}, prometheus_operator=prom, settings=S, now=NOW)


def cond(d: dep.Decision, t: str) -> dict[str, Any]:
    c = find(d.status["conditions"], t)
    assert c is not None
    return dict(c)


def kinds(d: dep.Decision) -> list[str]:
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
    [(4, 25, (3, 1)), (2, 50, (1, 1)), (1, 10, (1, 1)), (10, 0, (10, 0)), (3, 100, (0, 3))],
)
def test_replica_split_follows_the_percent(
    total: int, percent: int, split: tuple[int, int]
) -> None:
    assert server_objects.split_replicas(total, percent) == split


def test_canary_gets_its_own_deployment_behind_the_same_service() -> None:
    d = decide(
        body(replicas=4, canary={"version": 3, "trafficPercent": 25}), [mv(2, ["champion"]), mv(3)]
    )
    stable, svc, canary = d.apply
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (3, 1)
    assert canary["metadata"]["name"] == "iris-canary"
    sel = svc["spec"]["selector"]
    for a in (stable, canary):
        assert sel.items() <= a["spec"]["template"]["metadata"]["labels"].items()
    assert d.status["canary"]["trafficPercent"] == 25


def test_no_canary_deletes_a_leftover_one() -> None:
    d = decide(body(), [mv(2, ["champion"])])
    assert ("apps/v1", "Deployment", "iris-canary") in d.delete


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
        prom=True,
    )
    rendered = yaml.safe_dump_all(d.apply, sort_keys=True)
    path = GOLDEN / "deployment-iris-canary.yaml"
    if os.environ.get("KUBEML_UPDATE_GOLDEN") or not path.exists():
        path.write_text(rendered)
    assert rendered == path.read_text(), "KUBEML_UPDATE_GOLDEN=1 pytest ... to accept changes"

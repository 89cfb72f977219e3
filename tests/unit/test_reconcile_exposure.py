"""spec.exposure: the HTTPRoute and Ingress built for a Deployment, and what status says."""

from __future__ import annotations

from typing import Any

from kubeml.conditions import find
from kubeml.reconcile import deployment as dep
from kubeml.reconcile import exposure
from kubeml.reconcile.outcome import Ref
from tests.support.outcomes import Seen
from tests.unit.test_reconcile_deployment import NOW, S, app, body, mv

GATEWAY = {
    "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
    "hostnames": ["iris.example.com"],
}
INGRESS = {
    "className": "nginx",
    "host": "iris.example.com",
    "tlsSecretName": "iris-tls",
    "annotations": {"nginx.ingress.kubernetes.io/limit-rps": "50"},
}
PATHS = [
    ("PathPrefix", "/v2/models/iris-classifier"),
    ("Exact", "/v1/models/iris-classifier"),
    ("Exact", "/v1/models/iris-classifier:predict"),
]


def decide(b: dict[str, Any], seen: exposure.Observed) -> Seen:
    view = dep.DeploymentView(b, [mv(2, ["champion"])], {"stable": app(2, 2, 2)}, exposed=seen)
    return Seen(dep.decide(view, S, now=NOW))


def applied(d: Seen, kind: str) -> dict[str, Any]:
    [obj] = [o for o in d.outcome.apply if o["kind"] == kind]
    return obj


def cond(d: Seen) -> dict[str, Any] | None:
    c = find(d.status["conditions"], "Exposed")
    return dict(c) if c is not None else None


def test_gateway_exposure_builds_an_httproute_to_the_stable_service() -> None:
    d = decide(body(exposure={"gateway": GATEWAY}), exposure.Observed(True))
    route = applied(d, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "iris" and route["metadata"]["namespace"] == "ml"
    assert route["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"
    assert route["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubeml"
    assert route["spec"]["parentRefs"] == GATEWAY["parentRefs"]
    assert route["spec"]["hostnames"] == ["iris.example.com"]
    [rule] = route["spec"]["rules"]
    assert [(m["path"]["type"], m["path"]["value"]) for m in rule["matches"]] == PATHS
    # The stable Service (named after the Deployment), its http port.
    assert rule["backendRefs"] == [{"name": "iris", "port": 80}]
    assert not [o for o in d.outcome.apply if o["kind"] == "Ingress"]
    # No Gateway answered yet: published, and looked at again until one accepts it.
    assert d.status["exposure"]["httpRoute"] == {
        "name": "iris",
        "hostnames": ["iris.example.com"],
        "parents": [],
    }
    assert cond(d) is not None and cond(d)["status"] == "True"  # type: ignore[index]
    assert d.outcome.requeue_after == S.discovery_seconds


def test_ingress_exposure_builds_an_ingress_with_tls_class_and_annotations() -> None:
    d = decide(body(exposure={"ingress": INGRESS}), exposure.Observed(False))
    ing = applied(d, "Ingress")
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    assert ing["metadata"]["annotations"] == INGRESS["annotations"]
    assert ing["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["iris.example.com"], "secretName": "iris-tls"}]
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "iris.example.com"
    paths = rule["http"]["paths"]
    assert [(p["pathType"], p["path"]) for p in paths] == [
        ("Prefix" if t == "PathPrefix" else t, v) for t, v in PATHS
    ]
    assert {str(p["backend"]) for p in paths} == {
        str({"service": {"name": "iris", "port": {"name": "http"}}})
    }
    # The Gateway API is not needed for an Ingress, nor looked for.
    assert cond(d)["reason"] == "Published"  # type: ignore[index]
    assert d.status["exposure"]["ingress"] == {"name": "iris", "hostnames": ["iris.example.com"]}


def test_gateway_without_the_gateway_api_says_which_crd_is_missing_and_waits() -> None:
    d = decide(body(exposure={"gateway": GATEWAY}), exposure.Observed(False))
    assert not [o for o in d.outcome.apply if o["kind"] == "HTTPRoute"]
    c = cond(d)
    assert c is not None
    assert (c["status"], c["reason"]) == ("False", "GatewayAPINotInstalled")
    assert "httproutes.gateway.networking.k8s.io" in c["message"]
    assert "spec.exposure.gateway" in d.status["exposure"]["message"]
    # Looked at again later, not at once; serving is not affected.
    assert d.outcome.requeue_after == S.discovery_seconds
    assert find(d.status["conditions"], "Ready")["status"] == "True"  # type: ignore[index]


def test_status_carries_the_gateways_verdicts_and_a_refusal_is_named() -> None:
    route = exposure.http_route(
        body(),
        "iris-classifier",
        dep.DeploymentSpec.model_validate(
            {"model": "iris-classifier", "alias": "champion", "exposure": {"gateway": GATEWAY}}
        ).exposure.gateway,  # type: ignore[union-attr]
    )
    route["status"] = {
        "parents": [
            {
                "parentRef": {"name": "public", "namespace": "gateways", "sectionName": "https"},
                "controllerName": "example.com/gateway",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "False",
                        "reason": "NotAllowedByListeners",
                        "message": "namespace ml is not allowed",
                        "lastTransitionTime": NOW,
                    },
                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
                ],
            }
        ]
    }
    d = decide(body(exposure={"gateway": GATEWAY}), exposure.Observed(True, route=route))
    [parent] = d.status["exposure"]["httpRoute"]["parents"]
    assert parent["parent"] == "gateways/public/https"
    assert parent["controller"] == "example.com/gateway"
    assert parent["conditions"][0] == {
        "type": "Accepted",
        "status": "False",
        "reason": "NotAllowedByListeners",
        "message": "namespace ml is not allowed",
    }
    c = cond(d)
    assert c is not None and (c["status"], c["reason"]) == ("False", "RouteNotAccepted")
    assert "gateways/public/https" in c["message"] and "not allowed" in c["message"]
    assert not exposure.accepted_by_all(route)
    route["status"]["parents"][0]["conditions"][0]["status"] = "True"
    assert exposure.accepted_by_all(route)
    d = decide(body(exposure={"gateway": GATEWAY}), exposure.Observed(True, route=route))
    assert cond(d)["status"] == "True"  # type: ignore[index]
    assert "accepted by 1 of 1" in cond(d)["message"]  # type: ignore[index]
    assert d.outcome.requeue_after is None or d.outcome.requeue_after > S.discovery_seconds


def test_removing_exposure_deletes_what_it_published_and_its_status() -> None:
    b = body(exposure={"gateway": GATEWAY, "ingress": INGRESS})
    d = decide(b, exposure.Observed(True))
    assert {o["kind"] for o in d.outcome.apply} >= {"HTTPRoute", "Ingress"}
    b = body()
    b["status"] = d.status
    route, ing = applied(d, "HTTPRoute"), applied(d, "Ingress")
    d = decide(b, exposure.Observed(False, route=route, ingress=ing))
    assert Ref("gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "iris") in d.outcome.delete
    assert Ref("networking.k8s.io/v1", "Ingress", "ml", "iris") in d.outcome.delete
    assert "exposure" not in d.status and cond(d) is None
    # Nothing published, nothing to delete (an unchanged reconcile makes no request).
    d = decide(body(), exposure.Observed(False))
    assert not [r for r in d.outcome.delete if r.kind in ("HTTPRoute", "Ingress")]


OURS = {"name": "iris", "namespace": "ml", "ownerReferences": [{"uid": "dep-uid"}]}


def test_dropping_one_of_two_keeps_the_other() -> None:
    d = decide(
        body(exposure={"ingress": INGRESS}), exposure.Observed(True, route={"metadata": OURS})
    )
    assert Ref("gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "iris") in d.outcome.delete
    assert applied(d, "Ingress")["spec"]["rules"][0]["host"] == "iris.example.com"


def test_someone_elses_object_under_the_name_is_neither_taken_over_nor_deleted() -> None:
    theirs = {"metadata": {"name": "iris", "namespace": "ml", "ownerReferences": []}}
    d = decide(body(exposure={"gateway": GATEWAY}), exposure.Observed(True, route=theirs))
    assert not [o for o in d.outcome.apply if o["kind"] == "HTTPRoute"]
    assert not [r for r in d.outcome.delete if r.kind == "HTTPRoute"]
    c = cond(d)
    assert c is not None and (c["status"], c["reason"]) == ("False", "NameTaken")
    assert "HTTPRoute ml/iris" in c["message"]
    d = decide(body(), exposure.Observed(True, route=theirs, ingress=theirs))
    assert not [r for r in d.outcome.delete if r.kind in ("HTTPRoute", "Ingress")]

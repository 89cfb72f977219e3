"""spec.exposure on the real control plane: the HTTPRoute and Ingress the operator
generates are accepted by the real apiserver, with the Gateway API's own
standard-channel CRDs installed (hack/gateway-api/fetch.sh) and validating them.

The CRDs are cluster-scoped, so this module owns them: they are absent at its start
(the missing-API case is tested first), installed by the test that needs them, and
removed at the end. Nothing here runs server pods (replicas: 0): what is tested is
what the operator writes, not traffic (no gateway controller runs locally; the test
writes a route's status as one would).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeml.k8s import objects
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.binaries import gateway_api_crds
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
INGRESS = ("networking.k8s.io/v1", "Ingress")
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MODEL = "iris-classifier"
PATHS = [
    ("PathPrefix", f"/v2/models/{MODEL}"),
    ("Exact", f"/v1/models/{MODEL}"),
    ("Exact", f"/v1/models/{MODEL}:predict"),
]


def _crds(directory: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]


def _crd_gone(api: client.ApiClient, name: str) -> bool:
    try:
        objects.request(api, "GET", f"{CRD_API}/{name}")
    except ApiException as err:
        if err.status == 404:
            return True
        raise
    return False


def uninstall(api: client.ApiClient, crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            objects.request(api, "DELETE", f"{CRD_API}/{name}")
        except ApiException as err:
            if err.status != 404:
                raise
    # Removal waits for the apiserver's own cleanup of each kind's objects, which
    # took minutes on a loaded machine once.
    for crd in crds:
        name = crd["metadata"]["name"]
        poll(lambda n=name: _crd_gone(api, n) or None, timeout=300, what=f"CRD {name} removed")


def install(api: client.ApiClient, crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        objects.request(api, "POST", CRD_API, body=crd)

    def established(name: str) -> bool | None:
        got = objects.request(api, "GET", f"{CRD_API}/{name}")
        conds = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds) or None

    for crd in crds:
        name = crd["metadata"]["name"]
        poll(lambda n=name: established(n), timeout=180, what=f"CRD {name} established")


@pytest.fixture(scope="module")
def gateway_crds(kube_api: client.ApiClient) -> Iterator[list[dict[str, Any]]]:
    """The Gateway API CRDs, absent when the module starts (a crashed run's leftovers
    are removed) and removed again when it ends."""
    crds = _crds(gateway_api_crds())
    assert "httproutes.gateway.networking.k8s.io" in {c["metadata"]["name"] for c in crds}
    uninstall(kube_api, crds)
    yield crds
    uninstall(kube_api, crds)


def _model_version(ns: str, bucket: str) -> dict[str, Any]:
    """A registered version in the namespace's own model space (never served here:
    the Deployments run no pods)."""
    doc = load_yaml(ROOT / "examples" / "modelversion.yaml")
    doc["metadata"]["namespace"] = ns
    art = doc["spec"]["artifact"]
    art["uri"] = f"s3://{bucket}/namespaces/{ns}/models/{MODEL}/{art['sha256']}.skops"
    doc["spec"]["deletionPolicy"] = "Retain"
    return doc


def _deployment(example: str) -> dict[str, Any]:
    """An example from examples/, pinned to version 1 and no pods."""
    doc = load_yaml(ROOT / "examples" / example)
    doc["spec"].pop("alias")
    doc["spec"].update(version=1, replicas=0)
    return doc


def _get(api: client.ApiClient, kind: tuple[str, str], ns: str, name: str) -> Any:
    return objects.get(api, *kind, ns, name)


def _exposure(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    return ((kube.get(api, ns, "Deployment", name) or {}).get("status") or {}).get("exposure") or {}


@pytest.fixture
def served_ns(ml_namespace: str, kube_api: client.ApiClient, s3_env: dict[str, str]) -> str:
    kube.create(kube_api, ml_namespace, _model_version(ml_namespace, s3_env["KUBEML_BUCKET"]))
    return ml_namespace


def test_a_bad_hostname_is_rejected_at_admission_naming_the_field(
    kube_api: client.ApiClient, namespace: str
) -> None:
    for patch, field in (
        (
            {"gateway": {"parentRefs": [{"name": "public"}], "hostnames": ["Iris_Example.com"]}},
            "spec.exposure.gateway.hostnames[0]",
        ),
        (
            {"gateway": {"parentRefs": [{"name": "public"}], "hostnames": ["10.0.0.1"]}},
            "spec.exposure.gateway.hostnames[0]",
        ),
        ({"ingress": {"host": "192.168.1.1"}}, "spec.exposure.ingress.host"),
        ({}, "spec.exposure"),
    ):
        doc = _deployment("deployment-gateway.yaml")
        doc["spec"]["exposure"] = patch
        with pytest.raises(ApiException) as err:
            kube.create(kube_api, namespace, doc)
        assert err.value.status == 422, err.value.body
        assert field in json.loads(err.value.body)["message"], (field, err.value.body)


def test_someone_elses_ingress_under_the_name_is_left_alone(
    operator: OperatorProcess, kube_api: client.ApiClient, served_ns: str
) -> None:
    ns = served_ns
    theirs = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "iris-web", "namespace": ns, "labels": {"team": "web"}},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
    }
    objects.create(kube_api, theirs)
    kube.create(kube_api, ns, _deployment("deployment-ingress.yaml"))
    got = kube.wait_condition(
        kube_api, ns, "Deployment", "iris-web", "Exposed", reasons=("NameTaken",), timeout=60
    )
    assert f"Ingress {ns}/iris-web" in kube.condition(got, "Exposed")["message"]  # type: ignore[index]
    # Still theirs after the operator looked at it, and after the exposure went away.
    objects.merge_patch(
        kube_api,
        {
            "apiVersion": "kubeml.io/v1alpha1",
            "kind": "Deployment",
            "metadata": {"namespace": ns, "name": "iris-web"},
        },
        {"spec": {"exposure": None}},
    )
    poll(
        lambda: (
            kube.condition(kube.get(kube_api, ns, "Deployment", "iris-web"), "Exposed") is None
            or None
        ),
        timeout=60,
        what="exposure withdrawn",
    )
    ing = _get(kube_api, INGRESS, ns, "iris-web")
    assert ing is not None
    assert ing["metadata"].get("ownerReferences") is None
    assert ing["metadata"]["labels"] == {"team": "web"}
    assert "rules" not in ing["spec"]


def test_exposure_through_ingress_and_gateway(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    served_ns: str,
    gateway_crds: list[dict[str, Any]],
) -> None:
    ns = served_ns
    gw = _deployment("deployment-gateway.yaml")
    web = _deployment("deployment-ingress.yaml")
    kube.create(kube_api, ns, gw)
    kube.create(kube_api, ns, web)

    # No Gateway API yet: said by condition and status, naming the CRD; the rest of
    # the Deployment (its Service) is made all the same, and the operator keeps running.
    got = kube.wait_condition(
        kube_api, ns, "Deployment", "iris", "Exposed", reasons=("GatewayAPINotInstalled",)
    )
    assert kube.condition(got, "Exposed")["status"] == "False"  # type: ignore[index]
    message = got["status"]["exposure"]["message"]
    assert "spec.exposure.gateway" in message
    assert "httproutes.gateway.networking.k8s.io" in message
    core = client.CoreV1Api(kube_api)
    poll(lambda: core.read_namespaced_service("iris", ns), timeout=60, what="Service iris")
    assert operator.alive(), operator.logs()

    # The Ingress, accepted by the real apiserver.
    kube.wait_condition(kube_api, ns, "Deployment", "iris-web", "Exposed", status="True")
    ing = poll(lambda: _get(kube_api, INGRESS, ns, "iris-web"), timeout=60, what="Ingress")
    owner = kube.get(kube_api, ns, "Deployment", "iris-web")
    assert owner is not None
    [ref] = ing["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == (
        "Deployment",
        "iris-web",
        owner["metadata"]["uid"],
    )
    spec = ing["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["iris.example.com"], "secretName": "iris-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "iris.example.com"
    assert [(p["pathType"], p["path"]) for p in rule["http"]["paths"]] == [
        ("Prefix" if t == "PathPrefix" else t, v) for t, v in PATHS
    ]
    for p in rule["http"]["paths"]:
        assert p["backend"] == {"service": {"name": "iris-web", "port": {"name": "http"}}}
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rps"] == "50"
    assert _exposure(kube_api, ns, "iris-web")["ingress"]["hostnames"] == ["iris.example.com"]

    # Installing the Gateway API is noticed without a restart: the HTTPRoute,
    # validated by the Gateway API's own schema and rules.
    install(kube_api, gateway_crds)
    route = poll(lambda: _get(kube_api, ROUTE, ns, "iris"), timeout=90, what="HTTPRoute")
    kube.wait_condition(kube_api, ns, "Deployment", "iris", "Exposed", status="True")
    owner = kube.get(kube_api, ns, "Deployment", "iris")
    assert owner is not None
    assert route["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert route["metadata"]["labels"]["kubeml.io/deployment"] == "iris"
    assert [
        (p["name"], p.get("namespace"), p.get("sectionName")) for p in route["spec"]["parentRefs"]
    ] == [("public", "gateways", "https")]
    assert route["spec"]["hostnames"] == ["iris.example.com"]
    [rule] = route["spec"]["rules"]
    assert [(m["path"]["type"], m["path"]["value"]) for m in rule["matches"]] == PATHS
    [backend] = rule["backendRefs"]
    assert (backend["name"], backend["port"]) == ("iris", 80)
    service = core.read_namespaced_service("iris", ns)
    assert {(p.name, p.port) for p in service.spec.ports} >= {("http", 80)}
    assert "message" not in _exposure(kube_api, ns, "iris")

    # A Gateway's verdict (written here as a gateway controller would) reaches status.
    verdict = {
        "parents": [
            {
                "parentRef": {"name": "public", "namespace": "gateways", "sectionName": "https"},
                "controllerName": "example.com/gateway-controller",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "False",
                        "reason": "NotAllowedByListeners",
                        "message": f"routes from {ns} are not allowed",
                        "lastTransitionTime": "2026-12-06T08:00:00Z",
                        "observedGeneration": route["metadata"]["generation"],
                    }
                ],
            }
        ]
    }
    objects.patch_status(kube_api, route, verdict)
    got = kube.wait_condition(
        kube_api, ns, "Deployment", "iris", "Exposed", reasons=("RouteNotAccepted",), timeout=60
    )
    [parent] = got["status"]["exposure"]["httpRoute"]["parents"]
    assert parent["parent"] == "gateways/public/https"
    assert parent["controller"] == "example.com/gateway-controller"
    assert "not allowed" in kube.condition(got, "Exposed")["message"]  # type: ignore[index]

    # Removing exposure withdraws what it published.
    for name in ("iris", "iris-web"):
        objects.merge_patch(
            kube_api,
            {
                "apiVersion": "kubeml.io/v1alpha1",
                "kind": "Deployment",
                "metadata": {"namespace": ns, "name": name},
            },
            {"spec": {"exposure": None}},
        )
    poll(lambda: _get(kube_api, ROUTE, ns, "iris") is None or None, timeout=60, what="route gone")
    poll(
        lambda: _get(kube_api, INGRESS, ns, "iris-web") is None or None,
        timeout=60,
        what="ingress gone",
    )

    def withdrawn(name: str) -> bool | None:
        obj = kube.get(kube_api, ns, "Deployment", name)
        st = (obj or {}).get("status") or {}
        return ("exposure" not in st and kube.condition(obj, "Exposed") is None) or None

    poll(lambda: withdrawn("iris"), timeout=60, what="iris status without exposure")
    poll(lambda: withdrawn("iris-web"), timeout=60, what="iris-web status without exposure")
    assert operator.alive(), operator.logs()

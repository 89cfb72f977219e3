"""The Helm chart, rendered by the real helm binary (built by hack/helm/build.sh).

Fast: `helm lint` and `helm template` only, no cluster. The chart installed into a
real apiserver with its RBAC enforced is tests/integration/test_helm_install.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.cases import ROOT
from tests.support.podsecurity import violations

CHART = ROOT / "charts" / "kubeml"
RELEASE, NAMESPACE = "kml", "kubeml-system"
CREDS = [
    "s3.credentials.create=true",
    "s3.credentials.accessKeyId=AKIDEXAMPLE",
    "s3.credentials.secretAccessKey=wJalrXUtnFEMIEXAMPLEKEY",
]
# Named value sets every structural test runs against: the default install and
# each optional part switched on.
CASES: dict[str, list[str]] = {
    "default": [],
    "watch-namespaces": ["watchNamespaces={ml,ml-staging}"],
    "minio": ["minio.enabled=true", "minio.rootPassword=change-me-please"],
    "service-monitor": ["metrics.serviceMonitor.enabled=true"],
    "grafana-dashboard": ["grafana.dashboard.enabled=true"],
    "s3-secret": [*CREDS, "s3.credentials.namespaces={ml}", "s3.endpoint=https://s3.example"],
    "everything": [
        "watchNamespaces={ml}",
        "minio.enabled=true",
        "minio.rootPassword=change-me-please",
        "minio.service.type=NodePort",
        "minio.service.nodePort=30900",
        "metrics.serviceMonitor.enabled=true",
        "grafana.dashboard.enabled=true",
        "argocd.healthChecks.enabled=true",
        "operator.bindToPodIP=false",
        "image.tag=0.2.0",
        "prometheus.url=http://prometheus-operated.monitoring:9090",
    ],
}
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary, built from the Go module proxy once and cached."""
    out = subprocess.run(
        [str(ROOT / "hack" / "helm" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, f"hack/helm/build.sh failed:\n{out.stderr[-4000:]}"
    return out.stdout.strip().splitlines()[-1]


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, sets: list[str], *extra: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    for s in sets:
        args += ["--set", s]
    out = helm_run(helm, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, sets) for name, sets in CASES.items()}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        label = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Pod":
            yield label, d["spec"]
        elif d["kind"] in POD_TEMPLATE_KINDS:
            yield label, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield label, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


# -- CRDs ---------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_to_the_generated_ones() -> None:
    generated = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    shipped = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    hint = (
        "charts/kubeml/crds/ must be byte-identical to crds/: run `make chart-crds` "
        "(after `kubeml crds` if the API models changed)"
    )
    assert generated, "no CRDs in crds/"
    assert sorted(shipped) == sorted(generated), hint
    stale = [n for n in generated if shipped[n] != generated[n]]
    assert not stale, f"{hint}; differing: {', '.join(stale)}"


# -- lint and schema ----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_passes(helm: str, case: str) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    for s in CASES[case]:
        args += ["--set", s]
    out = helm_run(helm, *args)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ("operator.healthPort=not-a-port", "/operator/healthPort"),
        ("image.tag=latest", "/image/tag"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("s3.credentials.create=true", "/s3/credentials"),
        ("minio.enabled=true", "/minio/rootPassword"),
        ("minio.service.type=Ingress", "/minio/service/type"),
        ("operatr.healthPort=1", "operatr"),
        ("s3.endpoint=ftp://example", "/s3/endpoint"),
        ("grafana.dashboard.label=not a label", "/grafana/dashboard/label"),
    ],
)
def test_schema_rejects_bad_values(helm: str, bad: str, complaint: str) -> None:
    lint = helm_run(helm, "lint", str(CHART), "--set", bad)
    assert lint.returncode != 0, f"helm lint accepted {bad}"
    assert complaint in lint.stdout + lint.stderr
    template = helm_run(helm, "template", RELEASE, str(CHART), "--set", bad)
    assert template.returncode != 0, f"helm template accepted {bad}"


def test_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


# -- what every rendering must satisfy ----------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pod_passes_pod_security_restricted(
    rendered: dict[str, list[dict[str, Any]]], case: str
) -> None:
    specs = list(pod_specs(rendered[case]))
    assert specs
    for label, spec in specs:
        assert violations(spec) == [], label
        for c in spec.get("initContainers", []) + spec["containers"]:
            # Stricter than "restricted": nothing of ours writes to its image.
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{label} {c['name']}"
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{label} {c['name']}"


def _rules(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", rule)
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
        for rule in d.get("rules") or []
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rbac_has_no_wildcards_and_no_secrets(
    rendered: dict[str, list[dict[str, Any]]], case: str
) -> None:
    rules = _rules(rendered[case])
    assert rules
    for label, rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            for item in rule.get(key) or []:
                assert "*" not in item, f"{label}: wildcard {item!r} in {key}"
        for resource in rule.get("resources") or []:
            assert resource.split("/")[0] != "secrets", f"{label} grants access to Secrets"
        assert not rule.get("nonResourceURLs"), f"{label}: non-resource URLs"
    for d in rendered[case]:
        if d["kind"] in ("ClusterRole", "Role"):
            assert not d.get("aggregationRule"), "aggregated roles could grow beyond review"


@pytest.mark.parametrize("case", sorted(CASES))
def test_secret_values_only_reach_pods_by_reference(
    rendered: dict[str, list[dict[str, Any]]], case: str
) -> None:
    for label, spec in pod_specs(rendered[case]):
        for c in spec["containers"]:
            env = env_of(c)
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD"):
                if key in env:
                    assert "value" not in env[key], f"{label}: {key} given literally"
                    assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_against_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], case: str
) -> None:
    for d in rendered[case]:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD of the Prometheus Operator, not in the bundled schemas
        kubernetes_validate.validate(d, "1.36", strict=True)


# -- the operator Deployment --------------------------------------------------------------


def operator_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    dep = one(docs, "Deployment")
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


def test_operator_deployment_shape(rendered: dict[str, list[dict[str, Any]]]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    dep, c = operator_container(rendered["default"])
    spec = dep["spec"]
    # Two replicas, one active: a rolling update starts the new pod before the old goes.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "kml-kubeml"
    assert one(rendered["default"], "ServiceAccount", "kml-kubeml")
    assert c["command"] == ["kubeml", "operator", "run"]
    assert c["image"] == f"ghcr.io/kubeml/operator:{chart['appVersion']}"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = env_of(c)
    assert env["KUBEML_HEALTH_PORT"]["value"] == str(ports["health"])
    assert env["KUBEML_METRICS_PORT"]["value"] == str(ports["metrics"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env["KUBEML_BIND_ADDRESS"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["KUBEML_RUNTIME_IMAGE"]["value"] == f"ghcr.io/kubeml/runtime:{chart['appVersion']}"
    assert env["KUBEML_S3_SECRET"]["value"] == "kubeml-s3"
    assert env["KUBEML_LEADER_ELECTION"]["value"] == "true"
    assert env["KUBEML_LEASE_NAME"]["value"] == "kml-kubeml"
    assert env["KUBEML_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    pdb = one(rendered["default"], "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    lease_role = one(rendered["default"], "Role", "kml-kubeml-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert granted(lease_role) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    assert env["KUBEML_BUCKET"]["value"] == "kubeml"
    assert "KUBEML_NAMESPACES" not in env
    assert "KUBEML_PROMETHEUS_URL" not in env  # rollouts judged from the pods' /metrics
    assert "AWS_ENDPOINT_URL" not in env  # AWS S3 itself unless told otherwise
    sc = c["securityContext"]
    assert sc["runAsUser"] == 65532 and sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert c["resources"]["requests"] and c["resources"]["limits"]


def test_non_default_values_reach_the_operator(rendered: dict[str, list[dict[str, Any]]]) -> None:
    _, c = operator_container(rendered["everything"])
    env = env_of(c)
    assert c["image"] == "ghcr.io/kubeml/operator:0.2.0"
    assert env["KUBEML_NAMESPACES"]["value"] == "ml"
    assert env["KUBEML_PROMETHEUS_URL"]["value"] == "http://prometheus-operated.monitoring:9090"
    assert env["KUBEML_PROMETHEUS_TIMEOUT_SECONDS"]["value"] == "5"
    assert env["KUBEML_BIND_ADDRESS"] == {"name": "KUBEML_BIND_ADDRESS", "value": "0.0.0.0"}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://kml-kubeml-minio.kubeml-system.svc:9000"
    _, c = operator_container(rendered["s3-secret"])
    assert env_of(c)["AWS_ENDPOINT_URL"]["value"] == "https://s3.example"


# -- RBAC ---------------------------------------------------------------------------------

# What the controllers do, resource by resource (see the comment in templates/rbac.yaml):
# a rule missing here fails the integration test with 403s; an extra one is a privilege
# nobody reviewed.
EXPECTED_RULES = {
    ("kubeml.io", "datasets"): {"get", "list", "watch", "patch"},
    ("kubeml.io", "trainingruns"): {"get", "list", "watch", "create", "patch"},
    ("kubeml.io", "deployments"): {"get", "list", "watch"},
    ("kubeml.io", "modelversions"): {"get", "list", "watch", "create", "patch", "promote"},
    ("kubeml.io", "datasets/status"): {"patch"},
    ("kubeml.io", "trainingruns/status"): {"patch"},
    ("kubeml.io", "modelversions/status"): {"patch"},
    ("kubeml.io", "deployments/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("", "pods"): {"list", "watch"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "create", "patch", "delete"},
    ("", "namespaces"): {"get"},
    ("monitoring.coreos.com", "servicemonitors"): {"create", "patch", "delete"},
    ("monitoring.coreos.com", "prometheusrules"): {"create", "patch", "delete"},
    ("", "events"): {"create"},
}


def granted(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_cluster_role_grants_exactly_what_the_controllers_use(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["default"]
    role = one(docs, "ClusterRole", "kml-kubeml")
    assert granted(role) == EXPECTED_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(docs, "ServiceAccount", "kml-kubeml")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    # Every kind the operator writes with server-side apply is creatable and patchable.
    from kubeml.k8s.objects import PLURALS

    applied = {"Job", "Deployment", "Service", "HorizontalPodAutoscaler"}
    applied |= {"ServiceMonitor", "PrometheusRule", "TrainingRun", "Ingress", "HTTPRoute"}
    for kind in applied:
        verbs = set().union(*(v for (_, r), v in EXPECTED_RULES.items() if r == PLURALS[kind]))
        assert {"create", "patch"} <= verbs, kind
    # Every kind the cache is fed from can be listed and watched.
    from kubeml.controllers import POLLED, WATCHES

    for w in WATCHES:
        assert {"list", "watch"} <= EXPECTED_RULES[(w.group, w.plural)], w.kind
    # Polled kinds are listed and re-read one by one.
    for w in POLLED:
        assert {"list", "get"} <= EXPECTED_RULES[(w.group, w.plural)], w.kind


def test_watch_namespaces_get_roles_not_a_cluster_role(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["watch-namespaces"]
    # The only ClusterRoles are the users' (bound by nobody here), none for the operator.
    assert {r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")} == set(USER_ROLES)
    assert not by_kind(docs, "ClusterRoleBinding")
    operator_roles = [
        r
        for r in by_kind(docs, "Role")
        if not r["metadata"]["name"].endswith(("-test", "-leader-election"))
    ]
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == ["ml", "ml-staging"]
    for role in operator_roles:
        assert granted(role) == EXPECTED_RULES
    bindings = [b for b in by_kind(docs, "RoleBinding") if b["roleRef"]["name"] == "kml-kubeml"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml", "ml-staging"]
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)
    _, c = operator_container(docs)
    assert env_of(c)["KUBEML_NAMESPACES"]["value"] == "ml,ml-staging"


def test_rbac_without_prometheus_operator_rights(helm: str) -> None:
    docs = render(helm, ["rbac.prometheusOperator=false"])
    groups = {g for r in one(docs, "ClusterRole", "kml-kubeml")["rules"] for g in r["apiGroups"]}
    assert "monitoring.coreos.com" not in groups


# -- the users' roles and the promote policy ----------------------------------------------

KINDS = ("datasets", "trainingruns", "modelversions", "deployments")
USER_ROLES = {"kubeml-view": "view", "kubeml-edit": "edit", "kubeml-admin": "admin"}
READ = {"get", "list", "watch"}
WRITE = READ | {"create", "update", "patch", "delete", "deletecollection"}


def user_roles(docs: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], set[str]]]:
    return {
        name: granted(one(docs, "ClusterRole", name))
        for name in USER_ROLES
        if any(d["metadata"]["name"] == name for d in by_kind(docs, "ClusterRole"))
    }


@pytest.mark.parametrize("reserved", [False, True])
def test_user_roles_aggregate_into_view_edit_admin(helm: str, reserved: bool) -> None:
    docs = render(helm, [f"rbac.promoteReservedToAdmins={str(reserved).lower()}"])
    for name, builtin in USER_ROLES.items():
        labels = one(docs, "ClusterRole", name)["metadata"]["labels"]
        aggregated = {k for k in labels if k.startswith("rbac.authorization.k8s.io/aggregate-to")}
        assert aggregated == {f"rbac.authorization.k8s.io/aggregate-to-{builtin}"}, name
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{builtin}"] == "true"
    roles = user_roles(docs)
    status = {("kubeml.io", f"{k}/status"): {"get"} for k in KINDS}
    assert roles["kubeml-view"] == {**{("kubeml.io", k): READ for k in KINDS}, **status}
    edit = {**{("kubeml.io", k): WRITE for k in KINDS}, **status}
    admin = {**edit, ("kubeml.io", "modelversions"): WRITE | {"promote"}}
    assert roles["kubeml-admin"] == admin
    assert roles["kubeml-edit"] == (edit if reserved else admin)


def promote_policy(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        one(docs, "ValidatingAdmissionPolicy", "kubeml-promote"),
        one(docs, "ValidatingAdmissionPolicyBinding", "kubeml-promote"),
    )


def test_promote_policy_asks_the_authorizer_when_aliases_change(helm: str) -> None:
    policy, binding = promote_policy(render(helm, []))
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    # The main resource only: the operator's status writes never need promote.
    assert rule["resources"] == ["modelversions"] and rule["apiGroups"] == ["kubeml.io"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert "spec.aliases" in spec["matchConditions"][0]["expression"]
    (check,) = spec["validations"]
    assert ".check('promote').allowed()" in check["expression"]
    assert check["reason"] == "Forbidden"
    assert "kubeml-edit" in check["messageExpression"]
    assert binding["spec"] == {"policyName": "kubeml-promote", "validationActions": ["Deny"]}


def test_reserved_promotion_names_only_the_admin_role(helm: str) -> None:
    policy, _ = promote_policy(render(helm, ["rbac.promoteReservedToAdmins=true"]))
    message = policy["spec"]["validations"][0]["messageExpression"]
    assert "kubeml-admin" in message and "kubeml-edit" not in message


def test_promote_policy_binds_to_the_watched_namespaces(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    _, binding = promote_policy(rendered["watch-namespaces"])
    (expr,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expr == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["ml", "ml-staging"],
    }


def test_user_roles_can_be_left_to_another_release(helm: str) -> None:
    docs = render(helm, ["rbac.userRoles=false"])
    assert user_roles(docs) == {}
    assert not by_kind(docs, "ValidatingAdmissionPolicy")
    assert not by_kind(docs, "ValidatingAdmissionPolicyBinding")


# -- S3 credentials, MinIO, metrics -------------------------------------------------------


def test_no_secret_is_created_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert by_kind(rendered["default"], "Secret") == []


def test_created_s3_secret_lands_in_the_release_and_workload_namespaces(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    import base64

    secrets = by_kind(rendered["s3-secret"], "Secret")
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["kubeml-system", "ml"]
    for s in secrets:
        assert s["metadata"]["name"] == "kubeml-s3"
        data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        assert data == {
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIEXAMPLEKEY",
        }


def test_secret_namespaces_default_to_the_watched_ones(helm: str) -> None:
    docs = render(helm, [*CREDS, "watchNamespaces={a,b}"])
    assert sorted(s["metadata"]["namespace"] for s in by_kind(docs, "Secret")) == [
        "a",
        "b",
        "kubeml-system",
    ]


def test_minio_is_self_contained(rendered: dict[str, list[dict[str, Any]]]) -> None:
    import base64

    docs = rendered["minio"]
    sts = one(docs, "StatefulSet")
    svc = one(docs, "Service", "kml-kubeml-minio")
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    root = one(docs, "Secret", "kml-kubeml-minio")
    creds = one(docs, "Secret", "kubeml-s3")
    # The S3 credentials default to MinIO's root user, so the pipeline works as installed.
    assert base64.b64decode(creds["data"]["AWS_ACCESS_KEY_ID"]) == base64.b64decode(
        root["data"]["MINIO_ROOT_USER"]
    )
    job = one(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://kml-kubeml-minio.kubeml-system.svc:9000"
    node_port = one(rendered["everything"], "Service", "kml-kubeml-minio")["spec"]
    assert node_port["type"] == "NodePort" and node_port["ports"][0]["nodePort"] == 30900


def test_metrics_service_and_service_monitor_agree(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["service-monitor"]
    svc = one(docs, "Service", "kml-kubeml-metrics")
    monitor = one(docs, "ServiceMonitor")
    _, c = operator_container(docs)
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert "metrics" in {p["name"] for p in c["ports"]}
    assert monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert by_kind(rendered["default"], "ServiceMonitor") == []


def test_helm_test_hook_checks_the_operator_health(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["default"]
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    env = env_of(c)
    dep, op = operator_container(docs)
    selector = dict(kv.split("=") for kv in env["SELECTOR"]["value"].split(","))
    assert selector == dep["spec"]["selector"]["matchLabels"]
    assert env["PORT"]["value"] == env_of(op)["KUBEML_HEALTH_PORT"]["value"]
    assert "/healthz" in c["command"][-1]
    role = next(r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "kml-kubeml-test")
    assert granted(role) == {("", "pods"): {"get", "list"}}


def render_notes(helm: str, tmp_path: Path, sets: list[str]) -> str:
    """NOTES.txt as `helm install` prints it.

    `helm install --dry-run` asks a cluster for its capabilities; instead a copy of the
    chart wraps NOTES.txt in a ConfigMap that `helm template` renders offline.
    """
    chart = tmp_path / "kubeml"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" -}}\n' + notes + "\n{{- end -}}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "test.notes" . | toJson }}\n'
    )
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    args += ["--show-only", "templates/zz-notes.yaml"]
    for s in sets:
        args += ["--set", s]
    out = helm_run(helm, *args)
    assert out.returncode == 0, out.stderr
    return str(yaml.safe_load(out.stdout)["data"]["notes"])


def test_notes_render_next_steps(helm: str, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path, [])
    for text in (
        "kubectl -n NAMESPACE apply -f examples/iris/",
        "kubectl -n NAMESPACE get kubeml",
        "kubectl -n NAMESPACE wait --for=condition=Ready dataset/iris",
        "helm test kml -n kubeml-system",
        "kubectl -n NAMESPACE create secret generic kubeml-s3",
    ):
        assert text in notes
    created = render_notes(helm, tmp_path / "b", [*CREDS, "s3.credentials.namespaces={ml}"])
    assert "this release created it in: kubeml-system, ml" in created


def test_argocd_health_snippet_ships_the_lua_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    cm = one(rendered["everything"], "ConfigMap", "kml-kubeml-argocd-health")
    expected = {
        f"resource.customizations.health.kubeml.io_{p.stem}": p.read_text()
        for p in sorted((CHART / "health").glob("*.lua"))
    }
    assert sorted(expected) == [
        f"resource.customizations.health.kubeml.io_{k}"
        for k in ("Dataset", "Deployment", "ModelVersion", "TrainingRun")
    ]
    assert cm["data"] == expected


def test_chart_version_and_images_are_pinned() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["appVersion"]
    # The operator and runtime images follow appVersion, which follows the package.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    for image in (values["image"], values["runtimeImage"], values["minio"]["image"]):
        assert image["tag"] != "latest"
    assert values["minio"]["image"]["tag"].startswith("RELEASE.")


def test_one_replica_without_leader_election_is_recreated(helm: str) -> None:
    docs = render(helm, ["operator.replicas=1", "operator.leaderElection=false"])
    dep, c = operator_container(docs)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "KUBEML_LEADER_ELECTION" not in env_of(c)
    assert not by_kind(docs, "PodDisruptionBudget")
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-election")]


def test_two_replicas_without_leader_election_are_refused(helm: str) -> None:
    out = subprocess.run(
        [helm, "template", "kml", str(CHART), "--set", "operator.leaderElection=false"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0 and "leaderElection" in out.stderr

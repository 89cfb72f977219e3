"""The registry under attack and under contention, on the real control plane and S3.

Regression tests for bugs found by attacking a live cluster: a namespace deleting
another's S3 objects, alias claims decided by version number instead of order,
concurrent writers, a blocked deletion that made its Deployment lie, `kubeml promote`
ignoring the kubeconfig context's namespace.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeml.k8s import aliases
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration
MV = load_yaml(ROOT / "examples" / "modelversion.yaml")
IRIS = ROOT / "examples" / "iris"


def register(
    api: client.ApiClient,
    s3: Any,
    bucket: str,
    namespace: str,
    model: str,
    number: int,
    *,
    claims: tuple[str, ...] = (),
    uri: str | None = None,
) -> dict[str, Any]:
    """A hand-made version with real bytes in the namespace's own model space."""
    data = f"{model}-{number}-{uuid.uuid4()}".encode()
    sha = hashlib.sha256(data).hexdigest()
    key = f"namespaces/{namespace}/models/{model}/{sha}.skops"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    doc = copy.deepcopy(MV)
    doc["metadata"] = {"name": f"{model}-v{number}"}
    doc["spec"].update(model=model, version=number, aliases=list(claims))
    doc["spec"]["artifact"].update(uri=uri or f"s3://{bucket}/{key}", sha256=sha, size=len(data))
    return kube.create(api, namespace, doc)


def holders(api: client.ApiClient, namespace: str, model: str, alias: str) -> dict[str, Any]:
    """Who claims ``alias`` (spec) and who the operator says holds it (status)."""
    items = [
        v
        for v in client.CustomObjectsApi(api).list_namespaced_custom_object(
            "kubeml.io", "v1alpha1", namespace, "modelversions"
        )["items"]
        if v["spec"]["model"] == model
    ]
    claimed = sorted(
        v["metadata"]["name"] for v in items if alias in (v["spec"].get("aliases") or [])
    )
    held = sorted(
        v["metadata"]["name"]
        for v in items
        if any(h["name"] == alias for h in (v.get("status") or {}).get("aliases") or [])
    )
    return {"claimed": claimed, "held": held, "items": {v["metadata"]["name"]: v for v in items}}


def settled(api: client.ApiClient, namespace: str, model: str, alias: str) -> dict[str, Any]:
    """Wait until exactly one version claims the alias and the operator agrees."""

    def probe() -> dict[str, Any] | None:
        h = holders(api, namespace, model, alias)
        return h if len(h["claimed"]) == 1 and h["held"] == h["claimed"] else None

    return poll(probe, timeout=60, what=f"alias {alias} of {model} settled on one version")


def three_versions(
    api: client.ApiClient, s3: Any, bucket: str, namespace: str, model: str, holder: int
) -> None:
    """Versions 1-3 of ``model``, ``holder`` with `champion`, settled."""
    for n in (1, 2, 3):
        register(api, s3, bucket, namespace, model, n, claims=("champion",) if n == holder else ())
    settled(api, namespace, model, "champion")


@pytest.fixture
def registry_ns(operator: OperatorProcess, ml_namespace: str) -> str:
    return ml_namespace


def test_the_later_of_two_quick_claims_wins(
    kube_api: client.ApiClient, registry_ns: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    """Bug: claiming on v3 and then on v2 within 100 ms left the alias on v3 (9 of 20
    rounds): the higher version won when both claims came before acknowledgement."""
    three_versions(kube_api, s3_client, s3_env["KUBEML_BUCKET"], registry_ns, "quick", holder=1)
    for round_ in range(20):
        aliases.claim(kube_api, registry_ns, "quick", 3, "champion")
        aliases.claim(kube_api, registry_ns, "quick", 2, "champion")
        h = settled(kube_api, registry_ns, "quick", "champion")
        assert h["claimed"] == ["quick-v2"], f"round {round_}: {h['claimed']}"
        aliases.claim(kube_api, registry_ns, "quick", 1, "champion")
        settled(kube_api, registry_ns, "quick", "champion")


def test_two_writers_moving_one_alias_leave_exactly_one_holder(
    kube_api: client.ApiClient, registry_ns: str, s3_client: Any, s3_env: dict[str, str]
) -> None:
    three_versions(kube_api, s3_client, s3_env["KUBEML_BUCKET"], registry_ns, "race", holder=3)
    for round_ in range(50):
        claims = concurrently(kube_api, registry_ns, "race", (1, 2), "champion")
        h = settled(kube_api, registry_ns, "race", "champion")
        effective = [c for c in claims.values() if c.changed]
        if effective:
            # The claim written last (the higher revision) holds the alias.
            last = max(effective, key=lambda c: int(c.resource_version))
            assert h["claimed"] == [last.name], f"round {round_}: {claims} -> {h['claimed']}"
        holder = h["items"][h["claimed"][0]]
        latest = next(e for e in holder["status"]["aliasHistory"] if e["alias"] == "champion")
        assert latest["action"] == "Assigned", f"round {round_}: {latest}"
        for name, v in h["items"].items():
            if name == holder["metadata"]["name"]:
                continue
            mine = [
                e
                for e in (v.get("status") or {}).get("aliasHistory") or []
                if e["alias"] == "champion"
            ]
            assert not mine or mine[0]["action"] == "Removed", f"round {round_}: {name} {mine[0]}"
        # Next round starts from the third version.
        aliases.claim(kube_api, registry_ns, "race", 3, "champion")
        settled(kube_api, registry_ns, "race", "champion")


def concurrently(
    api: client.ApiClient, namespace: str, model: str, numbers: tuple[int, ...], alias: str
) -> dict[int, aliases.Claim]:
    """Each version claims the alias from its own thread, released together."""
    barrier = threading.Barrier(len(numbers))
    claims: dict[int, aliases.Claim] = {}

    def writer(number: int) -> None:
        barrier.wait()
        claims[number] = aliases.claim(api, namespace, model, number, alias)

    threads = [threading.Thread(target=writer, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(claims) == set(numbers), "a writer failed"
    return claims


@pytest.fixture
def victim(operator: OperatorProcess, kube_api: client.ApiClient, ml_namespace: str) -> str:
    """A namespace with a prepared dataset and a trained, verified model version."""
    kube.create(kube_api, ml_namespace, load_yaml(IRIS / "dataset.yaml"))
    kube.create(kube_api, ml_namespace, load_yaml(IRIS / "trainingrun.yaml"))
    kube.wait_condition(
        kube_api, ml_namespace, "TrainingRun", "iris-rf", "Succeeded", status="True", timeout=300
    )
    kube.wait_condition(
        kube_api, ml_namespace, "ModelVersion", "iris-classifier-v1", "Ready", status="True"
    )
    return ml_namespace


@pytest.fixture
def attacker(kube_api: client.ApiClient, s3_env: dict[str, str]) -> Iterator[str]:
    """Another tenant: a namespace of its own, with S3 credentials like any other."""
    name = kube.new_namespace(kube_api, f"t-evil-{uuid.uuid4().hex[:6]}")
    kube.add_s3_secret(kube_api, name, s3_env)
    yield name
    client.CoreV1Api(kube_api).delete_namespace(name, propagation_policy="Background")


def exists(s3: Any, uri: str) -> bool:
    bucket, key = uri[len("s3://") :].split("/", 1)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    return any(o["Key"] == key for o in listed.get("Contents", []))


def test_another_namespace_cannot_delete_or_serve_our_artifacts(
    kube_api: client.ApiClient, victim: str, attacker: str, s3_client: Any
) -> None:
    """Bug: a user in another namespace copied a ModelVersion (or pointed one at a
    dataset file) and deleted it; the operator deleted the victim's S3 objects."""
    theirs = kube.get(kube_api, victim, "ModelVersion", "iris-classifier-v1")
    dataset = kube.get(kube_api, victim, "Dataset", "iris")
    assert theirs is not None and dataset is not None
    artifact = theirs["spec"]["artifact"]["uri"]
    train_file = dataset["status"]["uri"] + "train.parquet"
    assert exists(s3_client, artifact) and exists(s3_client, train_file)

    copied = {k: copy.deepcopy(theirs[k]) for k in ("apiVersion", "kind", "spec")}
    copied["metadata"] = {"name": "iris-classifier-v1"}
    kube.create(kube_api, attacker, copied)
    pointed = copy.deepcopy(copied)
    pointed["metadata"] = {"name": "iris-classifier-v2"}
    pointed["spec"].update(version=2, aliases=[])
    pointed["spec"]["artifact"]["uri"] = train_file
    kube.create(kube_api, attacker, pointed)
    # Refused, never read: each says whose space the artifact is in.
    for name in ("iris-classifier-v1", "iris-classifier-v2"):
        refused = kube.wait_condition(
            kube_api, attacker, "ModelVersion", name, "Ready", reasons=("ArtifactNotAllowed",)
        )
        assert (
            f"outside namespace {attacker}'s model space"
            in kube.condition(refused, "Ready")["message"]
        )  # type: ignore[index]
    # Nor served: a Deployment following the copied champion builds no server.
    deployment = load_yaml(IRIS / "deployment.yaml")
    kube.create(kube_api, attacker, deployment)
    kube.wait_condition(
        kube_api, attacker, "Deployment", "iris", "Ready", reasons=("ArtifactNotAllowed",)
    )
    apps = client.AppsV1Api(kube_api).list_namespaced_deployment(attacker)
    assert apps.items == []

    # The attack: give up the alias and delete both versions.
    kube_delete(kube_api, attacker, "Deployment", "iris")
    patch_aliases(kube_api, attacker, "iris-classifier-v1", [])
    for name in ("iris-classifier-v1", "iris-classifier-v2"):
        kube_delete(kube_api, attacker, "ModelVersion", name)
    for name in ("iris-classifier-v1", "iris-classifier-v2"):
        poll(
            lambda n=name: kube.get(kube_api, attacker, "ModelVersion", n) is None,  # type: ignore[misc]
            timeout=60,
            what=f"modelversion {attacker}/{name} deleted",
        )
    assert exists(s3_client, artifact), "the victim's model artifact was deleted"
    assert exists(s3_client, train_file), "the victim's dataset file was deleted"
    kube.wait_condition(
        kube_api, victim, "ModelVersion", "iris-classifier-v1", "Ready", status="True"
    )


def kube_delete(api: client.ApiClient, namespace: str, kind: str, name: str) -> None:
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        "kubeml.io", "v1alpha1", namespace, kube.PLURALS[kind], name
    )


def patch_aliases(api: client.ApiClient, namespace: str, name: str, value: list[str]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "kubeml.io", "v1alpha1", namespace, "modelversions", name, {"spec": {"aliases": value}}
    )


def test_deleting_the_served_champion_keeps_serving_until_another_takes_over(
    kube_api: client.ApiClient,
    victim: str,
    s3_client: Any,
    local_cluster: Any,
    tmp_path: Path,
) -> None:
    """Bug: deleting the champion's version was blocked (good) but its Deployment said
    Ready=False AliasNotFound meanwhile; after `kubeml promote` both versions showed
    the alias and the deleting one stayed stuck until patched by hand."""
    ns = victim
    kube.create(
        kube_api, ns, {**load_yaml(IRIS / "trainingrun.yaml"), "metadata": {"name": "iris-rf-2"}}
    )
    kube.wait_condition(
        kube_api, ns, "TrainingRun", "iris-rf-2", "Succeeded", status="True", timeout=300
    )
    kube.create(kube_api, ns, load_yaml(IRIS / "deployment.yaml"))
    kube.wait_condition(kube_api, ns, "Deployment", "iris", "Ready", status="True", timeout=300)

    kube_delete(kube_api, ns, "ModelVersion", "iris-classifier-v1")
    blocked = kube.wait_condition(
        kube_api, ns, "ModelVersion", "iris-classifier-v1", "Ready", reasons=("DeletionBlocked",)
    )
    assert "champion" in kube.condition(blocked, "Ready")["message"]  # type: ignore[index]
    # The Deployment keeps serving and says why.
    dep = poll(
        lambda: (
            d
            if "being deleted"
            in (
                kube.condition(d := kube.get(kube_api, ns, "Deployment", "iris"), "Ready") or {}
            ).get("message", "")
            else None
        ),
        timeout=60,
        what="deployment says its version is being deleted",
    )
    assert kube.condition(dep, "Ready")["status"] == "True"  # type: ignore[index]

    # `kubeml promote` without -n: the kubeconfig context's namespace (bug: always default).
    kubeconfig = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())
    for ctx in kubeconfig["contexts"]:
        ctx["context"]["namespace"] = ns
    own = tmp_path / "kubeconfig"
    own.write_text(yaml.safe_dump(kubeconfig))
    out = subprocess.run(
        [sys.executable, "-m", "kubeml.cli", "promote", "iris-classifier", "2"],
        env={"KUBECONFIG": str(own), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "champion -> iris-classifier-v2" in out.stdout
    # The version being deleted gives the alias up by itself, and goes once not served.
    poll(
        lambda: kube.get(kube_api, ns, "ModelVersion", "iris-classifier-v1") is None,
        timeout=300,
        what="the old champion deleted once the Deployment moved on",
    )
    h = settled(kube_api, ns, "iris-classifier", "champion")
    assert h["claimed"] == ["iris-classifier-v2"]
    served = kube.wait_condition(kube_api, ns, "Deployment", "iris", "Ready", status="True")
    assert served["status"]["stable"]["modelVersion"] == "iris-classifier-v2"

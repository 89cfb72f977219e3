"""Argo CD health checks, run by a real Lua interpreter, and the GitOps examples.

The fixtures in fixtures/health/ are real objects from a live run (see capture.py
there): for each kind, healthy, progressing, degraded and stale (a status older than the
spec). lua5.4 is required (Debian package `lua5.4`); Argo CD embeds gopher-lua, a Lua
5.1, so the scripts also avoid anything newer than 5.1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cases import ROOT

HEALTH = ROOT / "charts" / "kubeml" / "health"
FIXTURES = Path(__file__).parent / "fixtures" / "health"
GITOPS = ROOT / "examples" / "gitops"
KINDS = ("Dataset", "TrainingRun", "ModelVersion", "Deployment")
EXPECTED = {
    "healthy": "Healthy",
    "progressing": "Progressing",
    "degraded": "Degraded",
    "stale": "Progressing",
}


@pytest.fixture(scope="module")
def lua() -> str:
    path = shutil.which("lua5.4")
    # Fail, not skip: a skipped health-check test would ship untested scripts.
    assert path, "lua5.4 not found: apt-get install lua5.4 (CI installs it in .ci/run)"
    return path


def lua_value(value: Any) -> str:
    """A JSON value as a Lua literal, the way Argo CD hands objects to its scripts."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # Byte escapes: valid in every Lua version, whatever the text contains.
        out = []
        for byte in value.encode():
            ch = chr(byte)
            out.append(ch if 32 <= byte < 127 and ch not in '\\"' else f"\\{byte:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_value(str(k))}] = {lua_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(value))


def as_floats(value: Any) -> Any:
    """Numbers as gopher-lua sees JSON numbers: all floats."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: as_floats(v) for k, v in value.items()}
    return value


def health(lua: str, kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the kind's script on obj as Argo CD does: `obj` global, the chunk returns hs."""
    script = (HEALTH / f"{kind}.lua").read_text()
    lua51 = lua.endswith("5.1")
    runner = (
        f"obj = {lua_value(as_floats(obj) if lua51 else obj)}\n"
        f"local check = assert({'loadstring' if lua51 else 'load'}({lua_value(script)}))\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\n', hs.message or '')\n"
    )
    out = subprocess.run([lua, "-"], input=runner, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\n")
    return status, message


def fixture(kind: str, state: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{kind}-{state}.json").read_text())
    return data


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_health_of_captured_objects(lua: str, kind: str, state: str) -> None:
    obj = fixture(kind, state)
    assert obj["kind"] == kind
    status, message = health(lua, kind, obj)
    assert status == EXPECTED[state], message
    assert message, "Argo CD shows the message next to the status"


@pytest.mark.parametrize("kind", KINDS)
def test_health_under_lua_5_1_like_argo_cd(kind: str) -> None:
    """Argo CD embeds gopher-lua (Lua 5.1, every number a float): same verdicts there."""
    lua51 = shutil.which("lua5.1")
    assert lua51, "lua5.1 is not installed (.ci/run installs it: apt-get install lua5.1)"
    for state, expected in EXPECTED.items():
        status, message = health(lua51, kind, fixture(kind, state))
        assert status == expected, f"{state}: {message}"
        assert ".0" not in message.split(":")[0], message  # "generation 2", not "2.0"


def test_stale_fixtures_really_are_stale() -> None:
    # What makes them interesting: Ready=True on a spec the operator has not seen.
    for kind in KINDS:
        obj = fixture(kind, "stale")
        observed = (obj.get("status") or {}).get("observedGeneration")
        assert observed is None or observed < obj["metadata"]["generation"], kind
    assert fixture("Dataset", "stale")["status"]["conditions"][0]["status"] == "True"


def test_messages_name_the_reason(lua: str) -> None:
    _, message = health(lua, "Dataset", fixture("Dataset", "degraded"))
    assert "ValidationFailed" in message
    _, message = health(lua, "TrainingRun", fixture("TrainingRun", "degraded"))
    assert "GateFailed" in message
    _, message = health(lua, "Deployment", fixture("Deployment", "stale"))
    assert "generation 2" in message and "generation 1" in message


def with_conditions(kind: str, *conditions: dict[str, str]) -> dict[str, Any]:
    obj = fixture(kind, "healthy")
    obj["status"]["conditions"] = [
        {"lastTransitionTime": "2026-11-26T12:00:00Z", "message": "m", **c} for c in conditions
    ]
    return obj


@pytest.mark.parametrize(
    ("kind", "conditions", "expected"),
    [
        # The summary condition decides: Unknown is work in progress.
        ("Dataset", [{"type": "Ready", "status": "Unknown", "reason": "Pending"}], "Progressing"),
        ("TrainingRun", [{"type": "Succeeded", "status": "Unknown", "reason": "DatasetNotReady"}],
         "Progressing"),
        # TrainingRun reads Succeeded, not its Ready mirror.
        ("TrainingRun", [{"type": "Ready", "status": "True", "reason": "Succeeded"}],
         "Progressing"),
        ("ModelVersion", [{"type": "Ready", "status": "False", "reason": "DeletionBlocked"}],
         "Degraded"),
        # Deployment: Degraded wins, then Progressing, then Ready.
        ("Deployment", [
            {"type": "Ready", "status": "True", "reason": "Serving"},
            {"type": "Degraded", "status": "True", "reason": "ArtifactMismatch"},
        ], "Degraded"),
        ("Deployment", [
            {"type": "Ready", "status": "True", "reason": "Serving"},
            {"type": "Progressing", "status": "True", "reason": "RollingOut"},
        ], "Progressing"),
        ("Deployment", [{"type": "Ready", "status": "False", "reason": "Unavailable"}],
         "Degraded"),
        ("Deployment", [], "Progressing"),
    ],
)  # fmt: skip
def test_condition_combinations(
    lua: str, kind: str, conditions: list[dict[str, str]], expected: str
) -> None:
    assert health(lua, kind, with_conditions(kind, *conditions))[0] == expected


@pytest.mark.parametrize("kind", KINDS)
def test_object_without_status_is_progressing(lua: str, kind: str) -> None:
    obj = fixture(kind, "healthy")
    del obj["status"]
    assert health(lua, kind, obj)[0] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_stay_within_lua_5_1(kind: str) -> None:
    # gopher-lua (Argo CD) is Lua 5.1: no integer division, bit operators, goto or
    # attribs, and no string.format("%d") of floats (JSON numbers are floats there).
    code = "\n".join(
        line.split("--", 1)[0] for line in (HEALTH / f"{kind}.lua").read_text().splitlines()
    )
    for pattern in (r"//", r"\bgoto\b", r"<const>", r"<close>", r"[&|]", r"~(?!=)", r"%d"):
        assert not re.search(pattern, code), f"{kind}.lua uses {pattern}"


def test_argocd_cm_patch_matches_the_chart_scripts() -> None:
    cm = yaml.safe_load((GITOPS / "argocd" / "argocd-cm-health.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    expected = {
        f"resource.customizations.health.kubeml.io_{kind}": (HEALTH / f"{kind}.lua").read_text()
        for kind in KINDS
    }
    assert cm["data"] == expected, "regenerate argocd-cm-health.yaml from charts/kubeml/health"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_argocd_application_deploys_the_iris_path() -> None:
    (app,) = load_all(GITOPS / "argocd" / "application.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert (ROOT / source["path"]).is_dir() and source["path"] == "examples/iris"
    assert app["spec"]["destination"]["namespace"]
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is True


def test_flux_kustomization_deploys_the_iris_path() -> None:
    (repo,) = load_all(GITOPS / "flux" / "gitrepository.yaml")
    (ks,) = load_all(GITOPS / "flux" / "kustomization.yaml")
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1" and repo["kind"] == "GitRepository"
    assert ks["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and ks["kind"] == "Kustomization"
    assert ks["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert ks["metadata"]["namespace"] == repo["metadata"]["namespace"]
    assert (ROOT / ks["spec"]["path"]).resolve() == (ROOT / "examples" / "iris").resolve()
    # kstatus reads our status contract; waiting is what makes Flux report failures.
    assert ks["spec"]["wait"] is True and ks["spec"]["prune"] is True
    # Flux builds a kustomization from every manifest in the path: all must be ours.
    for manifest in sorted((ROOT / ks["spec"]["path"]).glob("*.yaml")):
        for doc in load_all(manifest):
            assert doc["apiVersion"] == "kubeml.io/v1alpha1", manifest


def test_gitops_docs_exist_and_link_the_examples() -> None:
    doc = (ROOT / "docs" / "gitops.md").read_text()
    for path in (
        "examples/gitops/argocd/application.yaml",
        "examples/gitops/argocd/argocd-cm-health.yaml",
        "examples/gitops/flux/kustomization.yaml",
        "examples/gitops/flux/gitrepository.yaml",
        "charts/kubeml/health",
    ):
        assert path in doc, path
        assert (ROOT / path).exists(), path


# Deployments captured from real progressive rollouts: the retraining e2e's default
# steps (Progressing while steps run, also while the stable servers restart to take a
# step's weight and Ready is briefly False) and the faulty-version e2e's rollback
# (Degraded, though the stable servers are still restarting: Progressing=True too).
ROLLOUT_STATES = {
    "rollout-step": "Progressing",
    "rollout-weight-change": "Progressing",
    "rollout-rolled-back": "Degraded",
}


@pytest.mark.parametrize("state", sorted(ROLLOUT_STATES))
def test_health_during_a_real_rollout(lua: str, state: str) -> None:
    from kubeml import health as rules
    from kubeml.conditions import find

    obj = fixture("Deployment", state)
    expected = ROLLOUT_STATES[state]
    lua51 = shutil.which("lua5.1")
    assert lua51, "lua5.1 is not installed (.ci/run installs it: apt-get install lua5.1)"
    for interpreter in (lua, lua51):
        status, message = health(interpreter, "Deployment", obj)
        assert (status, message) == rules.health("Deployment", obj), interpreter
        assert status == expected, message
    # kstatus (Flux): the conditions the operator wrote in that run say the same.
    conds = obj["status"]["conditions"]
    reconciling, stalled = find(conds, "Reconciling"), find(conds, "Stalled")
    assert reconciling is not None and stalled is not None
    assert reconciling["status"] == ("True" if expected == "Progressing" else "False")
    assert stalled["status"] == ("True" if expected == "Degraded" else "False")
    assert rules.kstatus_conditions("Deployment", obj, now="2026-12-06T08:00:00Z") == conds

"""The registry of one model: its versions' artifacts, aliases and deletion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..driver.engine import Controller
from ..driver.world import World
from ..k8s import objects
from ..reconcile import modelversion as decide
from ..reconcile.outcome import Outcome
from ..storage import KeyNotFound, StorageError, parse_uri, sha256_bytes
from .common import KUBEML, deleting
from .trainingrun import versions_of


def check_artifact(world: World, mv: Mapping[str, Any]) -> decide.ArtifactCheck:
    """HEAD the artifact; hash it only if its ETag or size changed since verification."""
    artifact = mv["spec"]["artifact"]
    bucket, key = parse_uri(artifact["uri"])
    store = world.store_for(bucket)
    try:
        info = store.head(key)
        if not decide.needs_hash(mv, info.etag, info.size):
            return decide.ArtifactCheck(artifact["sha256"], info.size, info.etag)
        data = store.get_bytes(key)
    except KeyNotFound:
        return decide.ArtifactCheck(
            reason="ArtifactMissing", message=f"{artifact['uri']} does not exist"
        )
    except StorageError as err:
        return decide.ArtifactCheck(reason=err.reason, message=str(err), transient=err.transient)
    return decide.ArtifactCheck(sha256_bytes(data), len(data), info.etag)


def serving(world: World, namespace: str) -> dict[str, list[str]]:
    """Version name -> kubeml.io Deployments serving it (stable, canary, shadow, or leaving)."""
    out: dict[str, list[str]] = {}
    for d in world.cache.list(KUBEML, "Deployment", namespace):
        st = d.get("status") or {}
        for track in ("stable", "canary", "shadow", "previous"):
            mv = (st.get(track) or {}).get("modelVersion")
            if mv and d["metadata"]["name"] not in out.setdefault(mv, []):
                out[mv].append(d["metadata"]["name"])
    return out


def reconcile(world: World, namespace: str, model: str) -> Outcome | None:
    versions = versions_of(world, namespace, model)
    if not versions:
        return None
    now = world.clock()
    checked = world.memory("artifact-checked")
    last = {
        v["metadata"]["name"]: checked[v["metadata"]["uid"]]
        for v in versions
        if v["metadata"]["uid"] in checked
    }
    due, wait = decide.checks_due(versions, last, world.settings, now)
    checks = {}
    for mv in versions:
        if mv["metadata"]["name"] in due:
            checks[mv["metadata"]["name"]] = check_artifact(world, mv)
            checked[mv["metadata"]["uid"]] = now
    others = world.cache.list(
        KUBEML,
        "ModelVersion",
        namespace,
        lambda v: (v.get("spec") or {}).get("model") != model and not deleting(v),
    )
    in_use = serving(world, namespace)
    view = decide.ModelView(
        versions,
        checks,
        in_use,
        frozenset(str(v["spec"]["artifact"]["uri"]) for v in others),
        namespace_terminating=_terminating(world, namespace, versions, in_use),
        reports=reports(world, namespace, model),
    )
    outcome = decide.decide(view, world.settings, now=world.now())
    outcome.look_again(wait)
    return outcome


def reports(world: World, namespace: str, model: str) -> dict[str, dict[str, Any]]:
    """Run uid -> the model report each of the model's runs recorded."""
    out: dict[str, dict[str, Any]] = {}
    for run in world.cache.list(
        KUBEML, "TrainingRun", namespace, lambda r: (r.get("spec") or {}).get("model") == model
    ):
        report = (run.get("status") or {}).get("report")
        if isinstance(report, dict) and run["metadata"].get("uid"):
            out[str(run["metadata"]["uid"])] = report
    return out


def _terminating(
    world: World, namespace: str, versions: list[dict[str, Any]], in_use: dict[str, list[str]]
) -> bool:
    """Read the namespace only when a deletion would otherwise be blocked."""
    blocked = any(
        deleting(v) and decide.deletion_blockers(v, in_use.get(v["metadata"]["name"], []))
        for v in versions
    )
    if not blocked:
        return False
    ns = objects.get(world.api, "v1", "Namespace", None, namespace)
    return ns is None or bool(ns["metadata"].get("deletionTimestamp"))


def subjects(world: World, namespace: str, model: str) -> list[dict[str, Any]]:
    return versions_of(world, namespace, model)


CONTROLLER = Controller("Model", reconcile, subjects)

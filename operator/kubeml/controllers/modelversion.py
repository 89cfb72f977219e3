"""ModelVersion controller: verify artifacts, keep aliases unique, guard deletion."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import kopf

from .. import metrics
from ..k8s import client, objects
from ..reconcile import modelversion as decide_mv
from ..reconcile import registry
from ..storage import ArtifactStore, KeyNotFound, StorageError, parse_uri, sha256_bytes
from . import common

GROUP, VERSION, PLURAL = "kubeml.io", "v1alpha1", "modelversions"
API_VERSION = f"{GROUP}/{VERSION}"


def _store_for(bucket: str) -> ArtifactStore:
    base: ArtifactStore = common.store()
    if bucket == base.bucket:
        return base
    return ArtifactStore(dataclasses.replace(base.settings, bucket=bucket))


def check_artifact(body: dict[str, Any]) -> decide_mv.ArtifactCheck:
    artifact = body["spec"]["artifact"]
    bucket, key = parse_uri(artifact["uri"])
    store = _store_for(bucket)
    try:
        info = store.head(key)
        if not decide_mv.needs_hash(body, info.etag, info.size):
            return decide_mv.ArtifactCheck(artifact["sha256"], info.size, info.etag)
        data = store.get_bytes(key)
    except KeyNotFound:
        return decide_mv.ArtifactCheck(
            reason="ArtifactMissing", message=f"{artifact['uri']} does not exist"
        )
    except StorageError as err:
        return decide_mv.ArtifactCheck(reason=err.reason, message=str(err), transient=err.transient)
    return decide_mv.ArtifactCheck(sha256_bytes(data), len(data), info.etag)


def serving_deployments(namespace: str, name: str) -> list[str]:
    items = client.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, "deployments")[
        "items"
    ]
    out = []
    for d in items:
        st = d.get("status") or {}
        tracks = [st.get("stable") or {}, st.get("canary") or {}, st.get("previous") or {}]
        if any(t.get("modelVersion") == name for t in tracks):
            out.append(d["metadata"]["name"])
    return out


def reconcile_sync(namespace: str, name: str) -> list[tuple[str, str, str]]:
    api = client.api_client()
    body = objects.get(api, API_VERSION, "ModelVersion", namespace, name)
    if body is None:
        return []
    model = body["spec"]["model"]
    siblings = [
        i
        for i in client.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        if i["spec"].get("model") == model and not i["metadata"].get("deletionTimestamp")
    ]
    now = common.now()
    changes = registry.reconcile_aliases(siblings, now)
    events: list[tuple[str, str, str]] = []
    # Aliases are a property of the whole model: settle every sibling first,
    # the losers of a move before the winner.
    for other in sorted(siblings, key=lambda b: b["metadata"]["name"] == name):
        oname = other["metadata"]["name"]
        change = changes.get(oname)
        if change is None or oname == name:
            continue
        if change.spec_aliases is not None or change.history:
            if change.spec_aliases is not None:
                other = objects.merge_patch(api, other, {"spec": {"aliases": change.spec_aliases}})
            st = dict(other.get("status") or {})
            st["aliases"] = change.status_aliases
            names = sorted(a["name"] for a in change.status_aliases)
            st["aliasList"] = ",".join(names) if names else None
            st["aliasHistory"] = ([*reversed(change.history), *(st.get("aliasHistory") or [])])[
                : decide_mv.HISTORY_LIMIT
            ]
            objects.patch_status(api, other, {k: v for k, v in st.items() if v is not None})
            events += [(t, r, f"{oname}: {m}") for t, r, m in change.events]
    deployments = serving_deployments(namespace, name)
    if body["metadata"].get("deletionTimestamp"):
        return events
    decision = decide_mv.decide(body, check_artifact(body), changes.get(name), deployments, now=now)
    seen = body
    if decision.spec_aliases is not None:
        body = objects.merge_patch(api, body, {"spec": {"aliases": decision.spec_aliases}})
    # Judged on the object the decision saw: the alias patch bumps the generation.
    common.write_status(api, "ModelVersion", body, decision.status, seen=seen)
    return events + decision.events


async def reconcile(namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
    async def work() -> None:
        with metrics.measured("ModelVersion"):
            events = await asyncio.to_thread(reconcile_sync, namespace, name)
        if events and body is not None:
            await common.post_events(body, events)

    # One lock per model: alias moves touch every version of it.
    model = ((body or {}).get("spec") or {}).get("model", name)
    await common.serialised("ModelVersion", namespace, model, work)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_version_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    common.touch()
    if type == "DELETED" or namespace is None:
        return
    await reconcile(namespace, name, dict(body))


common.register_resync("ModelVersion", API_VERSION, PLURAL, reconcile)


def _namespace_terminating(namespace: str) -> bool:
    ns = client.core().read_namespace(namespace)
    return ns.metadata.deletion_timestamp is not None


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_version_delete(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """The artifact is external state: remove it (per deletionPolicy) before the object.

    A version that holds an alias or is being served is kept, with a condition
    saying why, until that changes.
    """
    assert namespace is not None
    api = client.api_client()
    deployments = serving_deployments(namespace, name)
    blockers = decide_mv.deletion_blockers(dict(body), deployments)
    if blockers and _namespace_terminating(namespace):
        blockers = []  # the whole namespace goes: nothing is left to protect it for
    if blockers:
        message = f"modelversion {name} cannot be deleted yet: " + "; ".join(blockers)
        status = dict(body.get("status") or {})
        from ..conditions import set_condition

        status["conditions"] = set_condition(
            status.get("conditions"), "Ready", "False", "DeletionBlocked", message, now=common.now()
        )
        objects.patch_status(api, dict(body), status)
        raise kopf.TemporaryError(message, delay=15)
    spec = body["spec"]
    if spec.get("deletionPolicy", "Delete") != "Delete":
        return
    uri = spec["artifact"]["uri"]
    others = [
        i
        for i in client.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        if i["metadata"]["name"] != name and i["spec"]["artifact"]["uri"] == uri
    ]
    if others:
        return  # content-addressed: another version shares these bytes
    bucket, key = parse_uri(uri)
    try:
        _store_for(bucket).client.delete_object(Bucket=bucket, Key=key)
    except Exception as err:
        raise kopf.TemporaryError(f"deleting {uri}: {err}", delay=30) from err

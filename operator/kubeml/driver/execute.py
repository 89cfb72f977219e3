"""Carrying out an Outcome: the only place the operator writes to the API and to S3.

- Status is written here and nowhere else, with kstatus's Reconciling and Stalled
  added, only when it changed, and conditional on the resourceVersion it was
  decided from: a decision made on a stale view conflicts instead of undoing
  someone's newer write.
- Spec and metadata patches are conditional in the same way.
- Server-side applies are skipped when the object as last applied (its
  ``kubeml.io/applied-hash`` annotation) already matches, so an unchanged
  reconcile makes no request.
- What the API answers goes back into the cache, so the next decision starts from
  the object as written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Collection
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .. import health, metrics
from ..k8s import events, objects
from ..labels import APPLIED_HASH
from ..reconcile.outcome import Outcome, Patch, Ref, StatusWrite
from ..storage import ArtifactStore, KeyNotFound
from .cache import ObjectCache

log = logging.getLogger("kubeml")
StoreFor = Callable[[str], ArtifactStore]


class Conflict(Exception):
    """A conditional write lost a race: ``ref`` changed since the decision saw it."""

    def __init__(self, ref: Ref, what: str) -> None:
        super().__init__(f"{ref} changed while deciding ({what}); deciding again")
        self.ref = ref


def applied_hash(obj: dict[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class Executor:
    def __init__(
        self,
        api: ApiClient,
        cache: ObjectCache,
        store_for: StoreFor,
        watched: Collection[tuple[str, str]],
        now: Callable[[], str],
    ) -> None:
        self.api, self.cache, self.store_for = api, cache, store_for
        self.watched = set(watched)
        self.now = now
        # Hashes applied to objects the cache does not watch (ServiceMonitors, ...).
        self._applied: dict[Ref, str] = {}

    def run(self, outcome: Outcome) -> None:
        written: dict[Ref, str] = {}  # resourceVersions our own writes produced
        for d in outcome.s3_deletes:
            with contextlib.suppress(KeyNotFound):  # gone already: the goal
                self.store_for(d.bucket).delete(d.key)
            log.info("deleted s3://%s/%s (%s)", d.bucket, d.key, d.why)
        for c in outcome.create:
            self._create(c.obj, c.exists_ok)
        for obj in outcome.apply:
            self._apply(obj)
        for ref in outcome.delete:
            self._delete(ref)
        for p in outcome.patches:
            self._patch(p, written)
        for s in outcome.statuses:
            self._status(s, written)
        for done in outcome.finished:
            metrics.pipeline_finished(done)
        for e in outcome.events:
            events.post(self.api, e.regarding, e.type, e.reason, e.message)

    def _remember(self, obj: dict[str, Any] | None) -> None:
        if obj and (obj.get("apiVersion"), obj.get("kind")) in self.watched:
            self.cache.put(obj)

    def _create(self, obj: dict[str, Any], exists_ok: bool) -> None:
        try:
            self._remember(objects.create(self.api, obj))
        except ApiException as err:
            if err.status != 409:
                raise
            if not exists_ok:
                ref = Ref.of(obj)
                self.refresh(ref)
                raise Conflict(ref, "name already taken") from err

    def _apply(self, obj: dict[str, Any]) -> None:
        ref = Ref.of(obj)
        digest = applied_hash(obj)
        watched = (ref.api_version, ref.kind) in self.watched
        if watched:
            live = self.cache.get(ref.api_version, ref.kind, ref.namespace, ref.name)
            current = ((live or {}).get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
        else:
            current = self._applied.get(ref)
        if current == digest:
            metrics.WRITES_SKIPPED.labels("apply").inc()
            return
        meta = obj["metadata"]
        stamped = {
            **obj,
            "metadata": {
                **meta,
                "annotations": {**(meta.get("annotations") or {}), APPLIED_HASH: digest},
            },
        }
        self._remember(objects.apply(self.api, stamped))
        if not watched:
            self._applied[ref] = digest

    def _delete(self, ref: Ref) -> None:
        if (ref.api_version, ref.kind) in self.watched and self.cache.get(
            ref.api_version, ref.kind, ref.namespace, ref.name
        ) is None:
            metrics.WRITES_SKIPPED.labels("delete").inc()
            return
        objects.delete(self.api, ref.api_version, ref.kind, ref.namespace, ref.name)
        self._applied.pop(ref, None)
        self.cache.remove(ref.api_version, ref.kind, ref.namespace, ref.name)

    def _patch(self, p: Patch, written: dict[Ref, str]) -> None:
        target = _stub(p.ref)
        try:
            result = objects.merge_patch(
                self.api, target, p.patch, resource_version=written.get(p.ref, p.resource_version)
            )
        except ApiException as err:
            if err.status == 409:
                self.refresh(p.ref)
                raise Conflict(p.ref, p.why or "patch") from err
            raise
        written[p.ref] = result["metadata"]["resourceVersion"]
        self._remember(result)

    def _status(self, s: StatusWrite, written: dict[Ref, str]) -> None:
        seen = dict(s.seen)
        kind = str(seen["kind"])
        status = dict(s.status)
        if kind in health.RULES:
            status["conditions"] = health.kstatus_conditions(
                kind, {**seen, "status": status}, now=self.now()
            )
        if status == (seen.get("status") or {}):
            metrics.WRITES_SKIPPED.labels("status").inc()
            return
        ref = s.ref
        version = written.get(ref, str(seen["metadata"].get("resourceVersion") or ""))
        try:
            result = objects.patch_status(self.api, seen, status, resource_version=version)
        except ApiException as err:
            if err.status == 409:
                self.refresh(ref)
                raise Conflict(ref, "status") from err
            if err.status == 404:
                self.cache.remove(ref.api_version, ref.kind, ref.namespace, ref.name)
                return
            raise
        written[ref] = result["metadata"]["resourceVersion"]
        self._remember(result)

    def refresh(self, ref: Ref) -> None:
        """Re-read one object after a conflict, so the next decision sees it."""
        live = objects.get(self.api, ref.api_version, ref.kind, ref.namespace, ref.name)
        if live is None:
            self.cache.remove(ref.api_version, ref.kind, ref.namespace, ref.name)
        else:
            live.setdefault("apiVersion", ref.api_version)
            live.setdefault("kind", ref.kind)
            self._remember(live)


def _stub(ref: Ref) -> dict[str, Any]:
    return {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "metadata": {"namespace": ref.namespace, "name": ref.name},
    }

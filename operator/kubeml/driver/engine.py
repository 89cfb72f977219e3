"""The reconcile driver: one loop that turns queued keys into executed outcomes.

    watch events ──► cache ──► keys ──► queue ──► worker: observe (cache, S3)
                                          ▲                 │
                                          │                 ▼
                         requeue_after /  │        decide (kubeml.reconcile, pure)
                         backoff / 409 ───┴──────── execute (kubeml.driver.execute)

- One reconcile per key at a time (the queue guarantees it); keys that have run and
  are not wanted again leave nothing behind.
- An error is retried with exponential backoff per key; after a few failures in a row
  the objects concerned get a ``Synced=False`` condition saying what fails, removed by
  the next successful reconcile. A conflict (409) re-reads the object and decides again.
- Time-based work asks to be looked at again (``requeue_after``); a slow resync over the
  cache (no LIST) is only a safety net.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from .. import metrics
from ..conditions import set_condition
from ..reconcile.outcome import Outcome, StatusWrite
from .execute import Conflict, Executor
from .queue import Backoff, WorkQueue
from .world import World

log = logging.getLogger("kubeml")
SYNCED = "Synced"
REPORT_AFTER_FAILURES = 3


@dataclass(frozen=True)
class Key:
    kind: str  # a controller's name: Dataset, TrainingRun, Model, Deployment
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


Reconcile = Callable[[World, str, str], Outcome | None]
Subjects = Callable[[World, str, str], list[dict[str, Any]]]


@dataclass(frozen=True)
class Controller:
    kind: str
    reconcile: Reconcile  # observe + decide; None when the object is gone
    subjects: Subjects  # the objects whose status reports this key's failures


class Driver:
    def __init__(
        self,
        world: World,
        executor: Executor,
        controllers: Mapping[str, Controller],
        *,
        workers: int = 4,
    ) -> None:
        self.world, self.executor = world, executor
        self.controllers = dict(controllers)
        self.queue: WorkQueue[Key] = WorkQueue()
        self.backoff: Backoff[Key] = Backoff()
        self.conflicts: Backoff[Key] = Backoff(base=0.05, cap=5.0)
        self.workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        # Reconciles block on the API; each worker gets a thread of its own (asyncio's
        # default pool has only a few per core, and would queue them behind each other).
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        metrics.QUEUE_DEPTH.set_function(self.queue.due_now)
        metrics.QUEUE_SCHEDULED.set_function(lambda: len(self.queue) - self.queue.due_now())
        metrics.start_series(self.controllers)

    def enqueue(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        if kind in self.controllers and namespace and name:
            self.queue.add(Key(kind, namespace, name), delay)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            metrics.RECONCILING.inc()
            try:
                await self.reconcile(key)
            finally:
                metrics.RECONCILING.dec()
                self.queue.done(key)

    async def reconcile(self, key: Key) -> None:
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self._threads, self._run, key)
        except Conflict as err:
            _, delay = self.conflicts.failure(key)
            metrics.RECONCILES.labels(key.kind, "conflict").inc()
            log.info("%s: %s", key, err)
            self.queue.add(key, delay)
        except Exception as err:
            await self._failed(key, err)
        else:
            self.conflicts.success(key)
            self.backoff.success(key)
            metrics.RECONCILES.labels(key.kind, "ok").inc()
            if outcome is not None and outcome.requeue_after is not None:
                self.queue.add(key, outcome.requeue_after)
        finally:
            metrics.RECONCILE_SECONDS.labels(key.kind).observe(time.perf_counter() - started)

    def _run(self, key: Key) -> Outcome | None:
        outcome = self.controllers[key.kind].reconcile(self.world, key.namespace, key.name)
        if outcome is None:
            return None
        # A reconcile that gets this far is in sync: drop any earlier failure report.
        outcome.statuses = [_without_synced(s) for s in outcome.statuses]
        self.executor.run(outcome)
        return outcome

    async def _failed(self, key: Key, err: Exception) -> None:
        if namespace_terminating(err):
            # Nothing can be created there any more, and the object goes with its
            # namespace: not a failure to retry or report.
            self.backoff.success(key)
            metrics.RECONCILES.labels(key.kind, "ok").inc()
            log.info("%s: its namespace is being deleted; leaving it", key)
            return
        attempt, delay = self.backoff.failure(key)
        metrics.RECONCILES.labels(key.kind, "error").inc()
        metrics.ERRORS.labels(key.kind, type(err).__name__).inc()
        what = describe_error(err)
        if attempt == 1 or attempt % 10 == 0:
            log.warning("%s failed (attempt %d, retrying in %.1fs): %s", key, attempt, delay, what)
            log.debug("%s: traceback", key, exc_info=err)
        if attempt == 1 and not isinstance(err, ApiException | OSError):
            log.error("%s: unexpected error", key, exc_info=err)
        self.queue.add(key, delay)
        if attempt >= REPORT_AFTER_FAILURES:
            # Nothing in it may change from one attempt to the next: a different
            # message is a status write, whose watch event would reconcile the object
            # again at once, past its backoff (a hot loop on a lasting error).
            message = f"{what} (failed {REPORT_AFTER_FAILURES}+ times; retrying with backoff)"
            await asyncio.get_running_loop().run_in_executor(
                self._threads, self._report, key, message
            )

    def _report(self, key: Key, message: str) -> None:
        """Say on the objects concerned that reconciling them keeps failing (best effort:
        the API itself may be what fails)."""
        try:
            for obj in self.controllers[key.kind].subjects(self.world, key.namespace, key.name):
                status = dict(obj.get("status") or {})
                status["conditions"] = set_condition(
                    status.get("conditions"), SYNCED, "False", "ReconcileError", message[:1024]
                )
                self.executor.run(Outcome(statuses=[StatusWrite(obj, status)]))
        except Exception as err:
            log.debug("%s: could not report the failure: %s", key, err)


def _without_synced(write: StatusWrite) -> StatusWrite:
    conds = write.status.get("conditions")
    if not conds or not any(c.get("type") == SYNCED for c in conds):
        return write
    status = {**write.status, "conditions": [c for c in conds if c.get("type") != SYNCED]}
    return StatusWrite(write.seen, status)


def _api_message(err: ApiException) -> str:
    """The message of the Status the API answered with, or ""."""
    try:
        doc = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        return ""
    return str(doc.get("message") or "") if isinstance(doc, dict) else ""


def namespace_terminating(err: Exception) -> bool:
    """Whether the API refused a write because the namespace is being deleted."""
    return (
        isinstance(err, ApiException)
        and err.status == 403
        and "because it is being terminated" in _api_message(err)
    )


def describe_error(err: Exception) -> str:
    if isinstance(err, ApiException):
        said = _api_message(err)
        tail = f": {said[:300]}" if said else ""
        return f"Kubernetes API answered {err.status} {err.reason}{tail}"
    return f"{type(err).__name__}: {err}"

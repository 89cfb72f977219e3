"""Micro-batching of concurrent requests onto one predict worker thread.

A random forest's predict costs nearly the same for 1 row as for 32 (its time is
per-tree Python overhead), so throughput under concurrency comes from predicting
many requests' rows in one call. The rules:

- While the worker is busy, requests queue up; the moment it finishes, everything
  queued (up to ``max_rows`` rows and ``max_requests`` requests) goes out as the
  next batch. Both bounds matter: a bound in rows alone lets one multi-row request
  fill a batch by itself, a bound in requests alone lets a batch's predict grow
  without limit. Nobody sleeps: the
  batch is whatever arrived during the previous predict.
- When the worker is idle, a new request is dispatched at the end of the current
  event-loop iteration (``call_soon``): requests parsed from the same burst of
  socket reads join it, and a lone request adds no delay at all.
- Only if more requests are known to be on their way does a dispatch wait for them,
  and never longer than ``max_delay`` seconds. The transport tells (``expected``):
  requests whose body is still arriving, and keep-alive clients answered moments
  ago that have not sent their next request yet. Under closed-loop load (N clients,
  each sending again as soon as it is answered) those are the clients of the batch
  that just finished; waiting the ~0.1 ms they take to return fills the next batch
  instead of splitting it in two, which halves the predict calls per request. With
  one client, it is already back when its request is dispatched: nothing to wait for.

The worker is a single thread so predict never blocks the event loop (health
checks and metrics stay responsive) and the model is never called concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .worker import PredictWorker

log = logging.getLogger("kubeml.serve")


@dataclass(slots=True)
class Job:
    """One request's rows and the callback that receives its outcome on the loop."""

    rows: Any
    n: int
    want_proba: bool
    done: Callable[[Any], None]
    # The request's protocol when it is captured: its batch's predict captures it
    # before any answer leaves.
    capture: str | None = None
    id: str = ""  # the request's id (feedback finds its prediction by it)


RunBatch = Callable[[Sequence[Job]], list[Any]]


class Batcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_batch: RunBatch,
        worker: PredictWorker,
        *,
        max_rows: int,
        max_delay: float,
        max_requests: int = 64,
        expected: Callable[[], int] = lambda: 0,
        on_crash: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self._loop = loop
        self._run = run_batch
        self._worker = worker
        self.max_rows = max(1, max_rows)
        self.max_requests = max(1, max_requests)
        self.max_delay = max(0.0, max_delay)
        self._expected = expected
        self._on_crash = on_crash
        self._pending: deque[Job] = deque()
        self._pending_rows = 0
        self._busy = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0  # dispatched batches, for tests and logs

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, job: Job) -> None:
        """Queue a job; called on the loop thread."""
        self._pending.append(job)
        self._pending_rows += job.n
        if not self._busy and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self, force: bool = False) -> None:
        self._scheduled = False
        if self._busy or not self._pending:
            return
        if not force and self._should_wait():
            if self._timer is None:
                self._timer = self._loop.call_later(self.max_delay, self._timer_fired)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        jobs = self._take()
        self._busy = True
        self.batches += 1
        self._worker.submit(self._run, jobs, self._loop, partial(self._finished, jobs))

    def _should_wait(self) -> bool:
        return (
            self.max_delay > 0
            and self._pending_rows < self.max_rows
            and len(self._pending) < self.max_requests
            and self._expected() > 0
        )

    def _timer_fired(self) -> None:
        self._timer = None
        self._dispatch(force=True)

    def _take(self) -> list[Job]:
        """Jobs in arrival order up to max_rows rows and max_requests requests; a job
        bigger than max_rows goes alone (requests are never split: each gets its
        answer from one predict call)."""
        jobs = [self._pending.popleft()]
        rows = jobs[0].n
        while (
            self._pending
            and len(jobs) < self.max_requests
            and rows + self._pending[0].n <= self.max_rows
        ):
            job = self._pending.popleft()
            rows += job.n
            jobs.append(job)
        self._pending_rows -= rows
        return jobs

    def _finished(
        self, jobs: list[Job], outcomes: list[Any] | None, err: BaseException | None
    ) -> None:
        self._busy = False
        if err is not None or outcomes is None:
            # run_batch catches model errors itself: reaching here is a bug
            log.error("batch of %d requests failed outside predict", len(jobs), exc_info=err)
            err = err or RuntimeError("no outcomes")
            outcomes = [err] * len(jobs)
            if self._on_crash is not None:
                self._on_crash(err)
        for job, outcome in zip(jobs, outcomes, strict=True):
            try:
                job.done(outcome)
            except Exception:  # one broken callback must not strand the others
                log.exception("delivering a prediction failed")
        if self._pending and not self._scheduled:
            # Not at once: one more loop iteration first reads requests that reached
            # the sockets during the predict, so they join this batch.
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

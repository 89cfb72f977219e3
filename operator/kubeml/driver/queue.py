"""Keys waiting to be reconciled, each at most once at a time.

The same shape as controller-runtime's work queue: adding a key that is already
waiting keeps one entry (the sooner of the two times); adding a key that is being
reconciled marks it to run again once that reconcile ends, so one object is never
reconciled by two workers at once and no change is missed. Nothing is kept for a
key once it has run and is not wanted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[K, float] = {}  # waiting keys -> when they are wanted
        self._heap: list[tuple[float, int, K]] = []
        self._active: set[K] = set()
        self._again: dict[K, float] = {}  # wanted again while active
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def add(self, key: K, delay: float = 0.0) -> None:
        self._add_at(key, self._clock() + max(0.0, delay))

    def _add_at(self, key: K, due: float) -> None:
        if key in self._active:
            if key not in self._again or due < self._again[key]:
                self._again[key] = due
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._wake.set()

    async def get(self) -> K:
        """The next key whose time has come; the caller must call ``done`` with it."""
        while True:
            now = self._clock()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:  # superseded by a sooner add, or taken
                    heapq.heappop(self._heap)
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._active.add(key)
                return key
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def done(self, key: K) -> None:
        self._active.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self._add_at(key, again)

    def forget(self, key: K) -> None:
        """Drop a waiting key (its object is gone)."""
        self._due.pop(key, None)
        self._again.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    def due_now(self) -> int:
        """Keys whose time has come (waiting for a worker), not those asked for later."""
        now = self._clock()
        return sum(1 for due in self._due.values() if due <= now)

    @property
    def active(self) -> int:
        return len(self._active)


class Backoff(Generic[K]):
    """Exponential delays per key after consecutive failures, with jitter so that
    many objects failing together (an API outage) do not retry in lockstep."""

    def __init__(self, base: float = 0.5, cap: float = 300.0, jitter: float = 0.1) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self._failures: dict[K, int] = {}

    def failure(self, key: K) -> tuple[int, float]:
        """(consecutive failures so far, seconds to wait before the next attempt)."""
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        delay = min(self.cap, self.base * 2 ** (n - 1))
        return n, delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    def success(self, key: K) -> int:
        """Forget the key's failures; returns how many there were."""
        return self._failures.pop(key, 0)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

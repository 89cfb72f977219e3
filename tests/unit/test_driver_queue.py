"""The driver's work queue, backoff and cache: pure bookkeeping, tested without a cluster."""

from __future__ import annotations

import asyncio

import pytest

from kubeml.driver.cache import ObjectCache, newer_or_same
from kubeml.driver.queue import Backoff, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_key_waits_once_and_the_sooner_wish_wins() -> None:
    async def scenario() -> list[str]:
        clock = Clock()
        q: WorkQueue[str] = WorkQueue(clock)
        q.add("a", delay=50)
        q.add("a", delay=5)  # sooner: replaces
        q.add("a", delay=60)  # later: ignored
        q.add("b")
        assert len(q) == 2 and q.due_now() == 1
        first = await q.get()
        q.done(first)
        clock.now += 5
        second = await q.get()
        q.done(second)
        assert len(q) == 0
        return [first, second]

    assert run(scenario()) == ["b", "a"]


def test_a_key_added_while_it_runs_runs_again_after_not_alongside() -> None:
    async def scenario() -> None:
        q: WorkQueue[str] = WorkQueue(Clock())
        q.add("a")
        key = await q.get()
        q.add("a")  # an event arrives during the reconcile
        assert q.due_now() == 0 and q.active == 1  # not handed to a second worker
        q.done(key)
        assert await asyncio.wait_for(q.get(), 1) == "a"

    run(scenario())


def test_nothing_is_kept_for_a_key_that_ran_and_is_not_wanted() -> None:
    async def scenario() -> None:
        q: WorkQueue[str] = WorkQueue(Clock())
        q.add("a")
        q.done(await q.get())
        assert len(q) == 0 and q.active == 0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(q.get(), 0.05)

    run(scenario())


def test_a_waiting_worker_wakes_when_a_key_is_added() -> None:
    async def scenario() -> str:
        q: WorkQueue[str] = WorkQueue()
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("late")
        return await asyncio.wait_for(getter, 1)

    assert run(scenario()) == "late"


def test_backoff_doubles_up_to_a_cap_and_resets() -> None:
    b: Backoff[str] = Backoff(base=1.0, cap=8.0, jitter=0.0)
    assert [b.failure("k")[1] for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.failures("k") == 6
    assert b.success("k") == 6 and b.failures("k") == 0
    assert b.failure("k") == (1, 1.0)


def obj(name: str, rv: str, **extra: object) -> dict[str, object]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": rv, **extra},
    }


def test_the_cache_never_goes_back_to_an_older_version() -> None:
    c = ObjectCache()
    assert c.put(obj("d", "10"))
    assert not c.put(obj("d", "9"))  # a late watch event after our own write
    assert c.put(obj("d", "10", labels={"x": "y"}))
    assert newer_or_same(obj("d", "x"), obj("d", "10"))  # not etcd: trust the newcomer
    got = c.get("kubeml.io/v1alpha1", "Dataset", "ml", "d")
    assert got is not None and got["metadata"]["labels"] == {"x": "y"}


def test_the_cache_hands_out_copies_and_lists_by_namespace() -> None:
    c = ObjectCache()
    c.put(obj("b", "1"))
    c.put(obj("a", "1"))
    c.put(
        {**obj("c", "1"), "metadata": {"name": "c", "namespace": "other", "resourceVersion": "1"}}
    )
    listed = c.list("kubeml.io/v1alpha1", "Dataset", "ml")
    assert [o["metadata"]["name"] for o in listed] == ["a", "b"]
    listed[0]["metadata"]["name"] = "changed"
    assert c.get("kubeml.io/v1alpha1", "Dataset", "ml", "a") is not None
    assert c.count("kubeml.io/v1alpha1", "Dataset") == 3
    c.remove("kubeml.io/v1alpha1", "Dataset", "other", "c")
    assert c.keys("kubeml.io/v1alpha1", "Dataset") == [("ml", "b"), ("ml", "a")]

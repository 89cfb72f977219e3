"""The batcher: results reach the right requests in order, batches respect the row
limit, an idle server adds no delay, and the delay bound holds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from kubeml.serving.batcher import Batcher, Job
from kubeml.serving.worker import PredictWorker


class Recorder:
    """A run_batch that records each batch and answers each job with its rows doubled."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, jobs: Sequence[Job]) -> list[Any]:
        self.gate.wait(5)
        self.batches.append([j.n for j in jobs])
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and any(j.rows == self.fail_on for j in jobs):
            raise RuntimeError("boom")
        return [[r * 2 for r in j.rows] if isinstance(j.rows, list) else j.rows * 2 for j in jobs]


async def _run(
    recorder: Recorder,
    sizes: list[int],
    *,
    max_rows: int = 8,
    max_requests: int = 64,
    max_delay: float = 0.0,
    expected: int = 0,
) -> tuple[list[Any], Batcher]:
    loop = asyncio.get_running_loop()
    with PredictWorker() as pool:
        b = Batcher(
            loop,
            recorder,
            pool,
            max_rows=max_rows,
            max_requests=max_requests,
            max_delay=max_delay,
            expected=lambda: expected,
        )
        futures = []
        for i, n in enumerate(sizes):
            fut: asyncio.Future[Any] = loop.create_future()
            b.submit(Job(list(range(i * 100, i * 100 + n)), n, False, fut.set_result))
            futures.append(fut)
        results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    return results, b


def test_results_go_to_the_right_requests() -> None:
    sizes = [1, 3, 2, 5, 1, 1, 4, 2, 7, 1]
    results, _ = asyncio.run(_run(Recorder(), sizes))
    for i, (n, got) in enumerate(zip(sizes, results, strict=True)):
        assert got == [2 * v for v in range(i * 100, i * 100 + n)]


def test_a_burst_is_batched_up_to_the_row_limit_in_order() -> None:
    rec = Recorder()
    asyncio.run(_run(rec, [1] * 20, max_rows=8))
    assert [sum(b) for b in rec.batches] == [8, 8, 4]


def test_a_batch_is_bounded_by_requests_as_well_as_rows() -> None:
    rec = Recorder()
    asyncio.run(_run(rec, [32] * 5 + [1] * 5, max_rows=1024, max_requests=3))
    assert rec.batches == [[32, 32, 32], [32, 32, 1], [1, 1, 1], [1]]
    # Multi-row requests share predict calls: the rows bound alone would not split them.
    rec = Recorder()
    asyncio.run(_run(rec, [32] * 8, max_rows=1024, max_requests=64))
    assert rec.batches == [[32] * 8]


def test_a_request_larger_than_the_limit_goes_alone_and_is_not_split() -> None:
    rec = Recorder()
    results, _ = asyncio.run(_run(rec, [2, 50, 3], max_rows=8))
    assert rec.batches == [[2], [50], [3]]
    assert len(results[1]) == 50


def test_requests_arriving_during_a_predict_form_the_next_batch() -> None:
    async def scenario() -> list[list[int]]:
        rec = Recorder(delay=0.05)
        loop = asyncio.get_running_loop()
        with PredictWorker() as pool:
            b = Batcher(loop, rec, pool, max_rows=32, max_delay=0.0)
            first: asyncio.Future[Any] = loop.create_future()
            b.submit(Job([1], 1, False, first.set_result))
            await asyncio.sleep(0.01)  # the first batch is now predicting
            assert b.busy
            later = []
            for _ in range(5):
                f: asyncio.Future[Any] = loop.create_future()
                b.submit(Job([1], 1, False, f.set_result))
                later.append(f)
            await asyncio.wait_for(asyncio.gather(first, *later), 10)
        return rec.batches

    assert asyncio.run(scenario()) == [[1], [1, 1, 1, 1, 1]]


def test_an_idle_server_dispatches_a_lone_request_without_waiting() -> None:
    async def scenario() -> float:
        rec = Recorder()
        loop = asyncio.get_running_loop()
        with PredictWorker() as pool:
            # a large delay bound that must NOT be waited for: nothing else is arriving
            b = Batcher(loop, rec, pool, max_rows=32, max_delay=1.0)
            f: asyncio.Future[Any] = loop.create_future()
            start = time.perf_counter()
            b.submit(Job([1], 1, False, f.set_result))
            await asyncio.wait_for(f, 10)
            return time.perf_counter() - start

    assert asyncio.run(scenario()) < 0.5


def test_waits_for_expected_requests_but_only_up_to_the_delay() -> None:
    async def scenario() -> float:
        rec = Recorder()
        loop = asyncio.get_running_loop()
        with PredictWorker() as pool:
            b = Batcher(loop, rec, pool, max_rows=32, max_delay=0.05, expected=lambda: 1)
            f: asyncio.Future[Any] = loop.create_future()
            start = time.perf_counter()
            b.submit(Job([1], 1, False, f.set_result))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not f.done()  # held back: someone is mid-request
            await asyncio.wait_for(f, 10)
            return time.perf_counter() - start

    took = asyncio.run(scenario())
    assert 0.04 <= took < 2.0


def test_a_failing_batch_answers_every_request_and_the_batcher_goes_on() -> None:
    async def scenario() -> list[Any]:
        def broken(jobs: Sequence[Job]) -> list[Any]:
            raise RuntimeError("bug")

        loop = asyncio.get_running_loop()
        with PredictWorker() as pool:
            b = Batcher(loop, broken, pool, max_rows=8, max_delay=0.0)
            futures = []
            for _ in range(3):
                f: asyncio.Future[Any] = loop.create_future()
                b.submit(Job([1], 1, False, f.set_result))
                futures.append(f)
            out = await asyncio.wait_for(asyncio.gather(*futures), 10)
            assert not b.busy and b.queued == 0
            return out

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, RuntimeError) for o in outcomes)


@pytest.mark.parametrize("max_rows", [1, 3, 32])
def test_many_concurrent_producers(max_rows: int) -> None:
    async def scenario() -> None:
        rec = Recorder(delay=0.001)
        loop = asyncio.get_running_loop()
        with PredictWorker() as pool:
            b = Batcher(loop, rec, pool, max_rows=max_rows, max_delay=0.0)

            async def client(k: int) -> None:
                for i in range(10):
                    f: asyncio.Future[Any] = loop.create_future()
                    b.submit(Job([k * 1000 + i], 1, False, f.set_result))
                    assert await asyncio.wait_for(f, 10) == [2 * (k * 1000 + i)]

            await asyncio.gather(*(client(k) for k in range(16)))
        assert all(sum(batch) <= max_rows for batch in rec.batches)
        assert sum(sum(batch) for batch in rec.batches) == 160

    asyncio.run(scenario())

"""The predict worker: one thread that runs batches off the event loop.

Not a ThreadPoolExecutor: an executor's future relays the result through its own
bookkeeping (and, with run_in_executor, one more loop iteration) while the worker
still holds the GIL, so the woken loop thread first blocks on the GIL and must be
woken a second time. Here handing the result to the loop is the last thing the
thread does before it blocks on its queue (releasing the GIL): one wake-up per
batch, which matters most at concurrency 1 and on a busy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kubeml.serve")

Task = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, Callable[[Any, Any], None]]


class PredictWorker:
    def __init__(self, init: Callable[[], None] | None = None, name: str = "kubeml-predict"):
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._init = init
        # daemon: a predict stuck in native code must not keep a stopping pod alive
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[Any, BaseException | None], None],
    ) -> None:
        """Run ``fn(arg)`` on the worker; ``callback(result, error)`` then runs on ``loop``."""
        self._queue.put((fn, arg, loop, callback))

    def close(self, timeout: float | None = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> PredictWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _main(self) -> None:
        if self._init is not None:
            try:
                self._init()
            except Exception:
                log.exception("predict worker initialisation failed (continuing)")
        while (task := self._queue.get()) is not None:
            fn, arg, loop, callback = task
            try:
                result, error = fn(arg), None
            except BaseException as err:  # delivered to the loop, which answers 500s
                result, error = None, err
            # RuntimeError: the loop is closed (shutting down), nobody left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, result, error)
            del task, arg, result, error

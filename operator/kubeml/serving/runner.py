"""Running the server: listen at once, load the model in the background, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .app import ModelServer
from .capture import DEFAULT_MAX_BUFFER_VALUES, Capture
from .config import ServerConfig
from .errors import NotReady
from .feedback import Feedback
from .worker import PredictWorker
from .writer import WriterProcess

if TYPE_CHECKING:
    from .http import HttpProtocol
    from .loader import Loaded, Source

log = logging.getLogger("kubeml.serve")

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
DRAIN_POLL_S = 0.05


def single_threaded_env() -> None:
    """One predict thread is the design; BLAS/OpenMP pools would only fight it (and
    the event loop) for the pod's cores. Effective for libraries not yet loaded;
    ``_worker_init`` covers the ones already are."""
    for name in THREAD_ENV:
        os.environ.setdefault(name, "1")


# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def bounded_malloc() -> None:
    """Give memory back after a burst. glibc raises its mmap threshold each time a
    large block is freed, so after a few big request bodies later ones come from the
    heap, which rarely shrinks: a server that survived an attack kept its memory. A
    fixed threshold keeps large buffers in their own mappings (returned on free);
    two arenas stop each thread (loop, predict, loader, gRPC) from growing its own."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 256 << 10)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 20)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: its defaults stand
        pass


def _worker_init() -> None:
    try:
        from threadpoolctl import threadpool_limits

        # OpenMP's thread count is per calling thread: set it in the worker itself.
        threadpool_limits(limits=1)
    except Exception as err:  # threadpoolctl missing or a library it cannot control
        log.warning("could not limit BLAS/OpenMP threads: %s", err)


def write_termination_log(path: str | None, reason: str, message: str) -> None:
    if not path:
        return
    try:
        Path(path).write_text(f"{reason}: {message}\n")
    except OSError as err:
        log.warning("cannot write termination log %s: %s", path, err)


class Runner:
    def __init__(self, cfg: ServerConfig, store_for: Source | None = None) -> None:
        self.cfg = cfg
        # None: each object read by a child process (serving/object_fetch.py), so
        # boto3 never enters the server's memory.
        self.store_for = store_for
        self.server = ModelServer(cfg)
        self.worker = PredictWorker(init=_worker_init)
        self.stop = asyncio.Event()
        self._loader_stop = threading.Event()
        # Captures and feedback are written by one child process (serving/writer.py):
        # their encoding and PUTs never hold this process's GIL.
        self.writer: WriterProcess | None = None
        if cfg.capture is not None or cfg.feedback is not None:
            limit = cfg.capture.max_buffer_values if cfg.capture else DEFAULT_MAX_BUFFER_VALUES
            # About as many bytes as the writer holds float64 values: a JSON value is
            # a few bytes more, and this buffer only bridges a feed interval.
            self.writer = WriterProcess(max_bytes=8 * limit)
        self.server.writer = self.writer
        self.capture = self._capture(cfg)
        self.server.capture = self.capture
        self.feedback = self._feedback(cfg)
        self.server.feedback = self.feedback
        if self.feedback is not None:
            self.server.metrics.live.live = self.feedback.live

    def _feedback(self, cfg: ServerConfig) -> Feedback | None:
        if cfg.feedback is None:
            return None
        sig = cfg.signature
        return Feedback(
            cfg.feedback,
            task=sig.task,
            classes=sig.classes,
            model=cfg.model,
            version=cfg.version,
            writer_id=cfg.capture.writer_id if cfg.capture else "server",
            process=self.writer,
            stats=self.server.metrics.feedback_writer,
            max_values=cfg.max_request_rows,
        )

    def _capture(self, cfg: ServerConfig) -> Capture | None:
        if cfg.capture is None:
            return None
        sig = cfg.signature
        return Capture(
            cfg.capture,
            model=cfg.model,
            version=cfg.version,
            modelversion=cfg.modelversion,
            features=sig.features,
            dtypes=sig.dtypes,
            classes=sig.classes,
            process=self.writer,
            stats=self.server.metrics.capture,
        )

    async def run(self, http: str = "native", install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        self.server.attach(loop, self.worker)
        if self.writer is not None:
            # Before the model loads (a smaller process to fork); it imports pyarrow
            # and boto3 meanwhile.
            self.writer.start(loop)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop.set)
        load = loop.create_task(self._load())
        grpc_server = await self._start_grpc()
        try:
            if http == "uvicorn":
                await self._run_uvicorn()
            else:
                await self._run_native()
        finally:
            if grpc_server is not None:
                # Calls in flight get the drain's time to finish, new ones are refused.
                await grpc_server.stop(self.cfg.drain_timeout_s)
            self._loader_stop.set()
            load.cancel()
            self.worker.close(timeout=5.0)
            # After the drain: every answered request is in the buffer by now.
            if self.writer is not None:
                await asyncio.to_thread(self.writer.close, self.cfg.capture_flush_timeout_s)
        return 0

    async def _start_grpc(self) -> Any:
        if not self.cfg.grpc_port:
            return None
        from . import grpc_api

        srv = await grpc_api.start(self.server, self.cfg.host, self.cfg.grpc_port)
        log.info(
            "gRPC (inference.GRPCInferenceService) on %s:%d", self.cfg.host, self.cfg.grpc_port
        )
        return srv

    async def _run_native(self) -> None:
        from . import http

        srv, connections = await http.start(self.server, self.cfg.host, self.cfg.port)
        self._listening()
        await self.stop.wait()
        await self._drain(srv, connections)

    async def _run_uvicorn(self) -> None:
        import uvicorn

        from .asgi import AsgiApp

        config = uvicorn.Config(
            AsgiApp(self.server),
            host=self.cfg.host,
            port=self.cfg.port,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        self._listening()
        await server.serve()

    def _listening(self) -> None:
        c = self.cfg
        log.info(
            "serving model %s version %s (%s) on http://%s:%d; batches of up to %d rows, "
            "at most %.1f ms wait",
            c.model, c.version, c.modelversion, c.host, c.port,
            c.max_batch_size, c.max_batch_delay_ms,
        )  # fmt: skip

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        def on_retry(reason: str, message: str) -> None:
            loop.call_soon_threadsafe(self.server.set_unready, reason, f"retrying: {message}")
            write_termination_log(self.cfg.termination_log, reason, message)

        def load() -> Loaded:
            from .loader import load_with_retries

            loaded = load_with_retries(self.cfg, self.store_for, self._loader_stop, on_retry)
            return loaded

        # Not the predict thread: a slow S3 must not hold up anything else.
        try:
            loaded = await asyncio.to_thread(load)
        except NotReady as err:
            log.error("model not served: %s: %s", err.reason, err.message)
            self.server.set_unready(err.reason, err.message)
            write_termination_log(self.cfg.termination_log, err.reason, err.message)
            return
        except Exception as err:  # a bug or an unforeseen failure: say so, stay unready
            log.exception("loading the model failed")
            self.server.set_unready("LoadFailed", f"{type(err).__name__}: {err}")
            write_termination_log(self.cfg.termination_log, "LoadFailed", str(err))
            return
        # Everything loaded so far (the model, the libraries, boto3's service models
        # when capture is on) lives as long as the process: out of the collector's
        # sight, a full collection no longer walks it on the request path.
        gc.collect()
        gc.freeze()
        self.server.set_loaded(loaded)
        log.info(
            "model ready in %.1fs: sha256 %s verified, %s predict%s",
            time.monotonic() - started,
            self.cfg.artifact_sha256,
            loaded.predictor.mode,
            ", drift monitoring on" if loaded.drift is not None else "",
        )

    async def _drain(self, srv: asyncio.Server, connections: set[HttpProtocol]) -> None:
        """Unready first (endpoints drop the pod), keep serving a moment for clients
        that have not noticed, then stop accepting and finish what is in flight."""
        log.info("shutting down: unready for %.1fs, then draining", self.cfg.shutdown_delay_s)
        self.server.set_shutting_down()
        await asyncio.sleep(self.cfg.shutdown_delay_s)
        srv.close()
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline:
            for conn in list(connections):
                conn.close_if_idle()
            if not connections and self.server.inflight == 0:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        if self.server.inflight:
            log.warning("stopped with %d requests still in flight", self.server.inflight)

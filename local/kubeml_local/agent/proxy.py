"""The service proxy: Services answer on their ClusterIPs, like kube-proxy's userspace mode.

:class:`Relay` is the I/O engine: one listening socket per ``clusterIP:port`` (ClusterIPs
are loopback addresses, which Linux lets any process bind without configuration), and for
each accepted connection a TCP connection to an endpoint chosen round-robin, retrying the
next endpoint when one refuses (a pod that just stopped). It bounds what clients can make
it hold: a cap on open connections and an idle timeout on each.

:class:`ServiceProxy` runs a Relay on an event loop of its own, in its own thread, so pod
work in the agent's loop (process starts, probes) never delays a connection. Two
reflectors (Services of all namespaces, pods of this node) feed it; every change re-plans
the listeners and endpoints (:func:`.services.plan`). Pods on other nodes would have
loopback addresses of their own machine, so only this node's pods can be endpoints.

It also serves the environment variables of Services to the pods the agent starts
(:meth:`ServiceProxy.env_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeml_local.agent import services as svc
from kubeml_local.agent.kubeapi import Kube, PodReflector
from kubeml_local.agent.podspec import ConfigError
from kubeml_local.agent.services import Address, Endpoint, Listener

log = logging.getLogger(__name__)

Json = dict[str, Any]
# How often listeners that could not be bound are retried.
RESYNC_S = 5.0
# How long a pod start waits for the first list of Services (the kubelet refuses to build
# a pod's environment before it has read them once).
ENV_SYNC_WAIT_S = 10.0


def default_max_connections() -> int:
    """Each relayed connection holds two descriptors; the agent's pods need the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 8))


@dataclass(frozen=True)
class Limits:
    max_connections: int = field(default_factory=default_max_connections)
    idle_timeout_s: float = 600.0
    connect_timeout_s: float = 2.0
    read_chunk: int = 64 << 10


class _Idle(Exception):
    pass


class Relay:
    """Listeners and relayed connections for a plan of listeners (see :meth:`apply`)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.table: dict[Address, Listener] = {}
        self.servers: dict[Address, asyncio.Server] = {}
        self.balancer = svc.RoundRobin()
        self.open_connections = 0
        self.refused_over_limit = 0
        self.retried = 0  # connections that went on to another endpoint after a refusal
        self._by_address: dict[Address, set[asyncio.StreamWriter]] = {}
        self._bind_errors: dict[Address, str] = {}

    async def apply(self, plan: Mapping[Address, Listener]) -> None:
        """Listen where the plan says, stop listening elsewhere; new connections use the
        new endpoints at once, established ones are left alone (as with kube-proxy),
        except on addresses no longer served."""
        self.table = dict(plan)
        changes = svc.diff(self.servers, plan)
        for address in changes.close:
            server = self.servers.pop(address)
            server.close()
            for writer in self._by_address.pop(address, set()):
                writer.transport.abort()
            log.info("service proxy: stopped listening on %s:%d", *address)
        for address in changes.open:
            await self._listen(address)
        for address in list(self._bind_errors):
            if address not in plan:
                del self._bind_errors[address]
        self.balancer.forget(listener.key for listener in plan.values())

    async def _listen(self, address: Address) -> None:
        ip, port = address

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(address, reader, writer)

        try:
            server = await asyncio.start_server(
                handle, ip, port, reuse_address=True, limit=self.limits.read_chunk
            )
        except OSError as exc:
            why = exc.strerror or str(exc)
            if self._bind_errors.get(address) != why:  # one line per address and cause
                log.warning(
                    "service proxy: cannot listen on %s:%d for %s: %s",
                    ip,
                    port,
                    self.table[address].key,
                    why,
                )
            self._bind_errors[address] = why
            return
        self._bind_errors.pop(address, None)
        self.servers[address] = server
        log.info("service proxy: %s listening on %s:%d", self.table[address].key, ip, port)

    async def close(self) -> None:
        await self.apply({})

    async def _serve(
        self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener = self.table.get(address)
        if listener is None or self.open_connections >= self.limits.max_connections:
            if listener is not None:
                self.refused_over_limit += 1
            _reset(writer)
            return
        self.open_connections += 1
        tracked = self._by_address.setdefault(address, set())
        tracked.add(writer)
        try:
            upstream = await self._connect(listener)
            if upstream is None:
                _reset(writer)  # like a connection refused: nothing ready behind it
                return
            up_reader, up_writer = upstream
            tracked.add(up_writer)
            try:
                await self._pipe(reader, writer, up_reader, up_writer)
            finally:
                tracked.discard(up_writer)
                up_writer.close()
        except (OSError, _Idle):
            _reset(writer)
        finally:
            self.open_connections -= 1
            tracked.discard(writer)
            writer.close()

    async def _connect(
        self, listener: Listener
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for ep in self.balancer.order(listener.key, listener.endpoints):
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(ep.ip, ep.port, limit=self.limits.read_chunk),
                    self.limits.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                # A pod that stopped before its readiness reached us: try the next one.
                self.retried += 1
                log.debug("service proxy: %s: %s:%d: %s", listener.key, ep.ip, ep.port, exc)
        return None

    async def _pipe(
        self,
        a_reader: asyncio.StreamReader,
        a_writer: asyncio.StreamWriter,
        b_reader: asyncio.StreamReader,
        b_writer: asyncio.StreamWriter,
    ) -> None:
        """Both directions until both ended; half-closes are passed on. A connection with
        no bytes either way for the idle timeout is closed (a peer that stops reading
        blocks its direction, which counts as idle too)."""
        loop = asyncio.get_running_loop()
        last = [loop.time()]
        idle = self.limits.idle_timeout_s

        async def one_way(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while True:
                try:
                    data = await asyncio.wait_for(src.read(self.limits.read_chunk), idle)
                except TimeoutError:
                    if loop.time() - last[0] >= idle:
                        raise _Idle from None
                    continue
                if not data:
                    if dst.can_write_eof():
                        with contextlib.suppress(OSError):
                            dst.write_eof()
                    return
                last[0] = loop.time()
                dst.write(data)
                await dst.drain()

        tasks = [
            asyncio.create_task(one_way(a_reader, b_writer)),
            asyncio.create_task(one_way(b_reader, a_writer)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: the client sees a refused/reset connection at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ServiceProxy:
    def __init__(
        self,
        kube: Kube,
        node_name: str,
        service_cidr: str | None,
        apiserver: Endpoint | None,
        limits: Limits | None = None,
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self.service_cidr = service_cidr
        self.apiserver = apiserver
        self.relay = Relay(limits)
        self._services: dict[str, Json] = {}
        self._pods: dict[str, Json] = {}
        self._synced: set[str] = set()
        # Read from the agent's loop (pod environments): replaced whole, never mutated.
        self._snapshot: tuple[Json, ...] = ()
        self.services_synced = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="service-proxy", daemon=True)

    # -- lifecycle (called from the agent's thread) ------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10.0)

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._halt)
        self._thread.join(timeout)

    def _halt(self) -> None:
        if self._stop is not None and self._dirty is not None:
            self._stop.set()
            self._dirty.set()  # wake the main loop now, not at its next resync

    # -- pod environments (called from the agent's loop) -------------------------------
    async def env_for(self, pod: Mapping[str, Any]) -> dict[str, str]:
        if not self.services_synced.is_set():
            synced = await asyncio.to_thread(self.services_synced.wait, ENV_SYNC_WAIT_S)
            if not synced:
                raise ConfigError(
                    "services have not yet been read at least once, cannot construct envvars"
                )
        spec = pod.get("spec") or {}
        links = spec.get("enableServiceLinks")
        namespace = str((pod.get("metadata") or {}).get("namespace", ""))
        return svc.service_env(self._snapshot, namespace, links is None or bool(links))

    # -- the proxy's own thread and loop -------------------------------------------------
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("service proxy stopped")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        reflectors = [
            PodReflector(
                self.kube,
                "",
                self._sink("services"),
                name="services",
                list_fn=self.kube.core.list_service_for_all_namespaces,
            ),
            PodReflector(
                self.kube,
                f"spec.nodeName={self.node_name}",
                self._sink("pods"),
                name="proxy-pods",
            ),
        ]
        for r in reflectors:
            r.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), RESYNC_S)
                self._dirty.clear()
                if {"services", "pods"} <= self._synced:
                    try:
                        await self.relay.apply(self._plan())
                    except Exception:  # an object we cannot read must not stop every Service
                        log.exception("service proxy: applying the plan; retrying")
        finally:
            for r in reflectors:
                r.stop()
            await self.relay.close()

    def _plan(self) -> dict[Address, Listener]:
        return svc.plan(
            self._services.values(), self._pods.values(), self.service_cidr, self.apiserver
        )

    def _sink(self, kind: str) -> Any:
        def put(event: str, obj: Any) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_event, kind, event, obj)

        return put

    def _on_event(self, kind: str, event: str, obj: Any) -> None:
        table = self._services if kind == "services" else self._pods
        slim = svc.slim_service if kind == "services" else svc.slim_pod
        if event == "SYNC":
            table.clear()
            table.update({o["metadata"]["uid"]: slim(o) for o in obj})
            self._synced.add(kind)
        elif event == "DELETED":
            table.pop(obj["metadata"]["uid"], None)
        else:
            table[obj["metadata"]["uid"]] = slim(obj)
        if kind == "services":
            self._snapshot = tuple(self._services.values())
            if "services" in self._synced:
                self.services_synced.set()
        assert self._dirty is not None
        self._dirty.set()

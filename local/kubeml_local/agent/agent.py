"""The node agent: registers the node, binds pending pods and runs the pods bound here."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import signal
import stat
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeml_local.agent import runtime
from kubeml_local.agent.binder import Binder
from kubeml_local.agent.credentials import endpoint_from_kubeconfig
from kubeml_local.agent.imagestore import ImageStore
from kubeml_local.agent.ipam import LoopbackIPAM
from kubeml_local.agent.kubeapi import Kube, PodReflector, describe
from kubeml_local.agent.kubelet import ContainerLog, KubeletServer, Serving
from kubeml_local.agent.memory import MemoryMonitor
from kubeml_local.agent.node import NodeAgent, NodeResources, node_labels
from kubeml_local.agent.proxy import ServiceProxy
from kubeml_local.agent.services import Endpoint, in_range
from kubeml_local.agent.worker import AgentContext, PodWorker

log = logging.getLogger(__name__)

Json = dict[str, Any]
HOST_IP = "127.0.0.1"
# On agent exit pods get this long between SIGTERM and SIGKILL (the supervisor gives the
# agent 20 s in total).
SHUTDOWN_GRACE_S = 5.0
# Host-wide, shared by all agents on this machine (see ipam.py).
IP_CLAIMS_DIR = Path("/tmp/kubeml-pod-ips")


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: Path
    node_name: str
    state_dir: Path
    resources: NodeResources
    pod_cidr: str = "127.1.0.0/16"
    kubelet: Serving | None = None  # the kubelet API (logs); None: not served
    run_dir: Path | None = None
    heartbeat_seconds: float = 10.0
    memory_interval: float = 0.1
    run_as_pod_user: str = "auto"  # auto | always | never
    # ClusterIPs the service proxy may listen on (None: no proxy).
    service_cidr: str | None = None
    # Run containers inside their images (buildah's store) instead of on the host's files.
    images: bool = False


def instance_marker(state_dir: Path, node: str) -> str:
    return hashlib.sha256(f"{state_dir.resolve()}\0{node}".encode()).hexdigest()[:16]


def reachable_by_all(path: Path) -> bool:
    """Whether any uid can traverse to ``path`` (every ancestor has o+x)."""
    path = path.resolve()
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue
    return True


def decide_switch_users(mode: str) -> bool:
    """Whether pod processes drop to their runAsUser.

    Only root can switch users, and it is only useful if that user can then run this
    Python: a venv whose interpreter lives under a private home (pyenv in /root, mode
    0700) cannot be executed by uid 1000, and every `python`/`kubeml` container would fail
    with EACCES. "auto" therefore switches only when the interpreter, the environment's
    prefix and this package are reachable by every uid, and says so in the log."""
    if mode == "never" or os.geteuid() != 0:
        return False
    if mode == "always":
        return True
    needed = [
        Path(os.path.realpath(sys.executable)),
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(__file__).resolve().parent,
    ]
    blocked = [str(p) for p in needed if not reachable_by_all(p)]
    if blocked:
        log.warning(
            "pods run as root, not as their runAsUser: %s not reachable by other "
            "users (make it world-traversable to enable user switching)",
            ", ".join(blocked),
        )
        return False
    return True


def choose_run_dir(cfg: AgentConfig, marker: str, switch_users: bool) -> Path:
    """Pod directories must be reachable by the pods' uids. The state dir is usually
    private (0700), so when processes switch users they go to /tmp/kubeml-agent-<instance>
    (0711: enterable, not listable) instead; the name is stable so a restarted agent finds
    its pods again."""
    if cfg.run_dir is not None:
        return cfg.run_dir
    inside = cfg.state_dir / "agent-run"
    if not switch_users or reachable_by_all(cfg.state_dir):
        return inside
    return Path("/tmp") / f"kubeml-agent-{marker}"


async def watch_loop_lag(period: float = 0.5, warn_after: float = 1.0) -> None:
    """Warn when the event loop stalls: probes time out spuriously while it does."""
    loop = asyncio.get_running_loop()
    while True:
        begin = loop.time()
        await asyncio.sleep(period)
        lag = loop.time() - begin - period
        if lag > warn_after:
            log.warning("event loop stalled for %.1fs", lag)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.marker = instance_marker(cfg.state_dir, cfg.node_name)
        self.kube = Kube(cfg.kubeconfig)
        self.node = NodeAgent(
            self.kube,
            cfg.node_name,
            cfg.resources,
            HOST_IP,
            cfg.heartbeat_seconds,
            cfg.kubelet.port if cfg.kubelet else 0,
        )
        self.kubelet = KubeletServer(cfg.kubelet, self) if cfg.kubelet else None
        self.binder = Binder(self.kube, cfg.node_name, node_labels(cfg.node_name))
        endpoint = endpoint_from_kubeconfig(cfg.kubeconfig)
        self.proxy = None
        if cfg.service_cidr is not None:
            apiserver = Endpoint(endpoint.host, endpoint.port, "kube-apiserver")
            self.proxy = ServiceProxy(
                self.kube,
                cfg.node_name,
                cfg.service_cidr,
                apiserver if in_range(endpoint.host, None) else None,
            )
        switch_users = decide_switch_users(cfg.run_as_pod_user)
        run_root = choose_run_dir(cfg, self.marker, switch_users)
        run_root.mkdir(parents=True, exist_ok=True)
        run_root.chmod(0o711)
        self.ctx = AgentContext(
            kube=self.kube,
            node_name=cfg.node_name,
            host_ip=HOST_IP,
            logs_root=cfg.state_dir / "pods",
            run_root=run_root,
            volumes_root=cfg.state_dir / "volumes",
            endpoint=endpoint,
            ipam=LoopbackIPAM(cfg.pod_cidr, IP_CLAIMS_DIR),
            memory=MemoryMonitor(cfg.memory_interval),
            allocatable=cfg.resources.as_dict(),
            switch_users=switch_users,
            marker=f"{self.marker}:{os.getpid()}",
            services=self.proxy,
            images=ImageStore(f"kubeml-{self.marker}") if cfg.images else None,
        )
        self.workers: dict[str, PodWorker] = {}
        self._recently_gone: deque[str] = deque(maxlen=1024)
        self._events: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        self._stop = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64, "agent-api"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        runtime.kill_strays(self.marker, mine=False)
        if self.ctx.images is not None:
            await self.ctx.images.remove_leftovers()
        self.ctx.logs_root.mkdir(parents=True, exist_ok=True)
        if self.kubelet is not None:  # listening before the Node advertises its port
            await self.kubelet.start()
        if not await self._register():
            if self.kubelet is not None:
                await self.kubelet.stop()
            return
        reflectors = [
            PodReflector(
                self.kube,
                f"spec.nodeName={self.cfg.node_name}",
                self._sink(loop, "node"),
                name="node-pods",
            ),
            PodReflector(
                self.kube, "spec.nodeName=", self._sink(loop, "unbound"), name="unbound-pods"
            ),
        ]
        tasks = [
            asyncio.create_task(self.node.heartbeat(), name="heartbeat"),
            asyncio.create_task(self.ctx.memory.run(), name="memory"),
            asyncio.create_task(self.binder.run(), name="binder"),
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(watch_loop_lag(), name="lag"),
        ]
        for r in reflectors:
            r.start()
        if self.proxy is not None:
            self.proxy.start()
        log.info("node agent for %s running (pods in %s)", self.cfg.node_name, self.ctx.run_root)
        try:
            await self._stop.wait()
        finally:
            log.info("stopping: terminating %d pods", len(self.workers))
            for r in reflectors:
                r.stop()
            for t in tasks:
                if t.get_name() != "memory":  # keep enforcing limits while pods stop
                    t.cancel()
            if self.kubelet is not None:
                await self.kubelet.stop()
            await self._stop_pods()
            if self.proxy is not None:
                await asyncio.to_thread(self.proxy.stop)
            tasks[1].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Safety net: nothing this agent started may outlive it.
            runtime.kill_strays(self.marker, mine=True)
            if self.ctx.images is not None:
                await self.ctx.images.remove_leftovers()
            self.ctx.ipam.release_all()
            log.info("node agent stopped")

    async def _register(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.node.register()
                await self.node.renew_lease()
                return True
            except Exception as exc:
                log.warning(
                    "registering node %s: %s; retrying",
                    self.cfg.node_name,
                    describe(exc),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 5.0)
        return False

    async def _stop_pods(self) -> None:
        workers = list(self.workers.values())
        for w in workers:
            w.shutdown(SHUTDOWN_GRACE_S)
        tasks = [w.task for w in workers if w.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S + 5.0)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- kubelet API -------------------------------------------------------------------
    def container_log(self, namespace: str, pod: str, container: str) -> ContainerLog | None:
        workers = [w for w in self.workers.values() if (w.namespace, w.name) == (namespace, pod)]
        if not workers:
            return None
        # Several only while a deleted pod's worker ends and a new one of the name starts.
        return workers[-1].container_log(container)

    # -- events ------------------------------------------------------------------------
    def _sink(self, loop: asyncio.AbstractEventLoop, source: str) -> Any:
        def put(kind: str, obj: Any) -> None:
            loop.call_soon_threadsafe(self._events.put_nowait, (source, kind, obj))

        return put

    async def _dispatch(self) -> None:
        while True:
            source, kind, obj = await self._events.get()
            try:
                if source == "unbound":
                    for pod in obj if kind == "SYNC" else [obj]:
                        if kind != "DELETED":
                            self.binder.offer(pod)
                elif kind == "SYNC":
                    seen = {p["metadata"]["uid"] for p in obj}
                    for pod in obj:
                        self._on_pod(pod)
                    for uid, worker in list(self.workers.items()):
                        if uid not in seen:
                            self._on_gone(uid, worker)
                elif kind == "DELETED":
                    uid = obj["metadata"]["uid"]
                    if uid in self.workers:
                        self._on_gone(uid, self.workers[uid])
                else:
                    self._on_pod(obj)
            except Exception:
                log.exception("handling %s %s event", source, kind)

    def _on_pod(self, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if uid in self._recently_gone:
            return
        worker = PodWorker(self.ctx, pod)
        self.workers[uid] = worker
        worker.start()
        assert worker.task is not None
        worker.task.add_done_callback(functools.partial(self._done, uid, worker))

    def _on_gone(self, uid: str, worker: PodWorker) -> None:
        self._recently_gone.append(uid)
        worker.gone_from_api()

    def _done(self, uid: str, worker: PodWorker, task: asyncio.Task[None]) -> None:
        if self.workers.get(uid) is worker:
            del self.workers[uid]
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "pod worker %s/%s failed", worker.namespace, worker.name, exc_info=task.exception()
            )

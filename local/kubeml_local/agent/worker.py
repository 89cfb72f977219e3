"""One pod on this node: its directories, IP, credentials, containers and status.

A :class:`PodWorker` lives from the moment the pod is bound here until it is gone from
the API. Its main task prepares the pod (IP, directories, token, volumes), runs init
containers in order and then the regular ones (one :class:`ContainerRunner` each, with
restarts, probes and the memory limit), writes the terminal status, deletes the pod once
it is being deleted, and cleans up when the API no longer has it. A status task writes
``pods/status`` whenever something changed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubeml_local.agent import runtime
from kubeml_local.agent.credentials import (
    ApiEndpoint,
    pod_kubeconfig,
    token_request_body,
    wants_token,
)
from kubeml_local.agent.imageplan import plan_in_image
from kubeml_local.agent.imagestore import ImageError, ImageStore
from kubeml_local.agent.ipam import LoopbackIPAM
from kubeml_local.agent.kubeapi import Kube, describe, status_of
from kubeml_local.agent.kubelet import ContainerLog
from kubeml_local.agent.memory import MemoryMonitor, kill_group
from kubeml_local.agent.podspec import (
    ConfigError,
    Lookups,
    PodRuntime,
    ProcessPlan,
    container_port,
    identity,
    is_sidecar,
    plan_process,
    referenced_objects,
)
from kubeml_local.agent.probes import (
    ProbeTiming,
    ProbeTracker,
    http_get,
    run_probe_loop,
    tcp_socket,
)
from kubeml_local.agent.status import (
    ContainerRecord,
    PodView,
    exit_code,
    init_policy,
    next_crash_count,
    now,
    pod_phase,
    pod_status,
    restart_allowed,
    restart_delay,
    running,
    terminated,
    termination_reason,
    waiting,
    without_times,
)
from kubeml_local.agent.volumes import (
    render_volume,
    token_audiences,
    volume_kind,
    write_atomic,
    write_files,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSTHROUGH_ENV = ("LANG", "LC_ALL", "TZ", "KUBEML_LOCAL_STATE")
# How long a pod that vanished from the API (force-deleted) gets between SIGTERM and SIGKILL.
GONE_GRACE_S = 2.0


@dataclass
class AgentContext:
    kube: Kube
    node_name: str
    host_ip: str
    logs_root: Path
    run_root: Path
    volumes_root: Path
    endpoint: ApiEndpoint
    ipam: LoopbackIPAM
    memory: MemoryMonitor
    allocatable: dict[str, str]
    switch_users: bool
    marker: str
    # The service proxy, which knows the Services for pods' environment variables.
    services: ServiceEnv | None = None
    # Set with ``--images``: containers run inside their images (imageplan.py).
    images: ImageStore | None = None

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.logs_root / namespace / pod / f"{container}.log"

    def previous_log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The previous run's log (``kubectl logs --previous``), rotated on restart."""
        return self.logs_root / namespace / pod / f"{container}.log.1"


class ServiceEnv(Protocol):
    async def env_for(self, pod: Mapping[str, Any]) -> dict[str, str]: ...


def _grace(pod: Mapping[str, Any]) -> float:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    value = meta.get("deletionGracePeriodSeconds")
    if value is None:
        value = spec.get("terminationGracePeriodSeconds")
    return float(30 if value is None else value)


class PodWorker:
    def __init__(self, ctx: AgentContext, pod: Json) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        spec = pod.get("spec") or {}
        self.policy: str = spec.get("restartPolicy") or "Always"
        self.inits = [
            ContainerRecord(c["name"], c.get("image", ""), init=True, sidecar=is_sidecar(c))
            for c in spec.get("initContainers") or []
        ]
        self.mains = [
            ContainerRecord(c["name"], c.get("image", "")) for c in spec.get("containers") or []
        ]
        if self.inits:
            for rec in self.mains:
                rec.state = waiting("PodInitializing")
        self.pod_dir = ctx.run_root / self.uid
        self.root_dir = self.pod_dir / "root"
        self.sa_dir = self.pod_dir / "serviceaccount"
        status = pod.get("status") or {}
        self.pod_ip: str | None = None
        self.start_time: dt.datetime | None = None
        self.sandbox_ready = False
        self.volume_dirs: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.token_files: list[tuple[Path, str]] = []
        self.owner: tuple[int, int] | None = None
        self.prev_conditions: list[Json] = list(status.get("conditions") or [])
        self.last_written: Json | None = None
        self.runners: list[ContainerRunner] = []
        self.stopping = False
        self.stop_deadline = float("inf")
        self.shutting_down = False
        self.gone = False
        self.deleting = asyncio.Event()
        self.gone_event = asyncio.Event()
        self.dirty = asyncio.Event()
        self.stop_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._status_failing = False
        self.task: asyncio.Task[None] | None = None
        self._adopt(status)
        if meta.get("deletionTimestamp"):  # constructed inside the running loop
            self.deleting.set()
            self.request_stop(_grace(pod))

    # -- adoption after an agent restart -----------------------------------------------
    def _adopt(self, status: Mapping[str, Any]) -> None:
        """Containers that ran under an earlier agent died with it (it kills its pods on
        exit): count them as restarts, or as final where the policy allows no rerun."""
        if status.get("startTime"):
            self.start_time = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        previous = {
            s["name"]: s
            for key in ("initContainerStatuses", "containerStatuses")
            for s in status.get(key) or []
        }
        for rec in [*self.inits, *self.mains]:
            old = previous.get(rec.name)
            if not old:
                continue
            state = old.get("state") or {}
            rec.restart_count = int(old.get("restartCount") or 0)
            rec.last_state = old.get("lastState") or {}
            policy = init_policy(self.policy, rec.sidecar) if rec.init else self.policy
            if "terminated" in state:
                code = int(state["terminated"].get("exitCode", 1))
                if not restart_allowed(policy, code) and not rec.sidecar:
                    rec.state, rec.final = state, True
                    continue
                rec.last_state = state
                rec.restart_count += 1
            elif "running" in state:
                lost = terminated(
                    137,
                    "ContainerStatusUnknown",
                    None,
                    now(),
                    message="The container was lost when the node agent restarted",
                )
                if policy == "Never":
                    rec.state, rec.final = lost, True
                    continue
                rec.last_state = lost
                rec.restart_count += 1

    def container_log(self, container: str) -> ContainerLog | None:
        runner = next((r for r in self.runners if r.record.name == container), None)
        record = runner.record if runner else None
        if record is None:
            record = next((r for r in [*self.inits, *self.mains] if r.name == container), None)
        if record is None:
            return None
        rec = record
        started = (rec.state.get("running") or {}).get("startedAt")
        current = self.ctx.log_path(self.namespace, self.name, container)
        previous = self.ctx.previous_log_path(self.namespace, self.name, container)
        if "waiting" in rec.state and rec.last_state.get("terminated"):
            # Backing off after a crash: the last run's file is not rotated yet, and, as
            # with a kubelet, it is both the current log and the previous one.
            previous = current
        return ContainerLog(
            current=current,
            previous=previous,
            running=lambda: rec.is_running and not self.gone,
            run_started=dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
            if started
            else None,
            waiting_reason=(rec.state.get("waiting") or {}).get("reason", ""),
        )

    # -- events from the agent ----------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self._main(), name=f"pod-{self.namespace}/{self.name}")

    def update(self, pod: Json) -> None:
        self.pod = pod
        conditions = (pod.get("status") or {}).get("conditions")
        if conditions:
            self.prev_conditions = list(conditions)
        if (pod.get("spec") or {}).get("readinessGates"):
            self.dirty.set()  # a gate's condition may have changed
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.deleting.set()
            self.request_stop(_grace(pod))

    def gone_from_api(self) -> None:
        self.gone = True
        self.gone_event.set()
        self.request_stop(GONE_GRACE_S)

    def shutdown(self, grace: float) -> None:
        self.shutting_down = True
        self.shutdown_event.set()
        self.request_stop(grace)

    def request_stop(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = True
        self.stop_deadline = min(self.stop_deadline, loop.time() + max(grace, 0.0))
        self.stop_event.set()

    # -- main --------------------------------------------------------------------------
    async def _main(self) -> None:
        status_task = asyncio.create_task(self._status_loop())
        token_task: asyncio.Task[None] | None = None
        try:
            if not self._all_final():
                token_task = await self._lifecycle()
            self._finalize_unstarted()
            if self.shutting_down:
                return
            if not self.gone:
                await self._flush_status()
                # Deletion, disappearance and agent shutdown all set stop_event.
                await self.stop_event.wait()
                if self.shutting_down:
                    return
                if not self.gone:
                    await self._delete()
            await _first(self.gone_event.wait(), self.shutdown_event.wait())
        finally:
            status_task.cancel()
            if token_task is not None:
                token_task.cancel()
            for runner in self.runners:
                runner.cancel()
            if not self.shutting_down:
                self._cleanup()

    def _all_final(self) -> bool:
        return pod_phase(self.inits, self.mains) in ("Succeeded", "Failed")

    async def _lifecycle(self) -> asyncio.Task[None] | None:
        self.dirty.set()
        if not await self._prepare():
            return None
        token_task = asyncio.create_task(self._refresh_tokens()) if self.tokens else None
        spec = self.pod.get("spec") or {}
        init_specs = spec.get("initContainers") or []
        main_specs = spec.get("containers") or []
        sidecars: list[ContainerRunner] = []
        for container, rec in zip(init_specs, self.inits, strict=True):
            if self.stopping:
                return token_task
            runner = ContainerRunner(self, container, rec, init_policy(self.policy, rec.sidecar))
            self.runners.append(runner)
            if rec.sidecar:
                sidecars.append(runner)
                runner.task = asyncio.create_task(runner.run_safely())
                await _first(runner.started_event.wait(), self.stop_event.wait(), runner.task)
                continue
            await runner.run_safely()
            if not (rec.final and rec.succeeded):
                return token_task
        mains = [
            ContainerRunner(self, c, r, self.policy)
            for c, r in zip(main_specs, self.mains, strict=True)
        ]
        self.runners.extend(mains)
        await asyncio.gather(*(r.run_safely() for r in mains))
        for runner in reversed(sidecars):  # sidecars stop after the main containers
            runner.stop_requested = True
            runner.wake.set()
            if runner.task is not None:
                await runner.task
        return token_task

    def _finalize_unstarted(self) -> None:
        """On deletion, containers that never ran are reported as lost, like the kubelet."""
        if not self.stopping:
            return
        for rec in [*self.inits, *self.mains]:
            if "waiting" in rec.state and not rec.final:
                rec.state = terminated(
                    137,
                    "ContainerStatusUnknown",
                    None,
                    now(),
                    message="The container could not be located when the pod was terminated",
                )
                rec.final, rec.ready, rec.started = True, False, False
        self.dirty.set()

    # -- preparation ---------------------------------------------------------------------
    async def _prepare(self) -> bool:
        """IP, directories, token and volumes; retried until it works or the pod stops."""
        delay = 1.0
        while not self.stopping:
            try:
                await self._prepare_once()
                return True
            except ConfigError as exc:
                message = exc.message
            except Exception as exc:
                log.warning("preparing %s/%s: %s", self.namespace, self.name, describe(exc))
                message = describe(exc)
            for rec in [*self.inits, *self.mains]:
                if "waiting" in rec.state:
                    rec.state = waiting("ContainerCreating", message)
            self.dirty.set()
            await _first(asyncio.sleep(delay), self.stop_event.wait())
            delay = min(delay * 2, 10.0)
        return False

    async def _prepare_once(self) -> None:
        ctx = self.ctx
        self.token_files.clear()
        preferred = (self.pod.get("status") or {}).get("podIP")
        self.pod_ip = ctx.ipam.allocate(self.uid, preferred)
        fresh = not self.pod_dir.exists()
        dirs = ((self.pod_dir, 0o711), (self.root_dir, 0o777), (self.pod_dir / "volumes", 0o711))
        for d, mode in dirs:
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(mode)  # explicit: the umask must not narrow what other uids need
        if fresh:
            # A new pod with the name of an earlier one starts with fresh logs.
            for rec in [*self.inits, *self.mains]:
                ctx.log_path(self.namespace, self.name, rec.name).unlink(missing_ok=True)
                ctx.previous_log_path(self.namespace, self.name, rec.name).unlink(missing_ok=True)
        if self.start_time is None:
            self.start_time = now()
        self.owner = self._file_owner()
        if wants_token(self.pod):
            await self._request_tokens()
            self._write_service_account()
        lookups = await self.fetch_lookups()
        runtime_info = self.runtime_info()
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            self.volume_dirs[volume["name"]] = self._materialise(volume, lookups, runtime_info)
        self.sandbox_ready = True
        self.dirty.set()

    def _file_owner(self) -> tuple[int, int] | None:
        """Files of the pod (tokens, volumes) belong to its user when all containers share
        one uid, so modes like 0400 still let it read them; else root keeps them."""
        uids: set[tuple[int, int]] = set()
        for c in [*(self.pod["spec"].get("initContainers") or []), *self.pod["spec"]["containers"]]:
            try:
                who = identity(self.pod, c, self.ctx.switch_users)
            except ConfigError:
                continue
            if who.uid is None:
                return None
            fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
            uids.add((who.uid, int(fs_group) if fs_group is not None else int(who.gid or 0)))
        return next(iter(uids)) if len(uids) == 1 else None

    async def _request_tokens(self) -> None:
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        wanted = {"": 3607, **token_audiences(self.pod)}
        for audience, expiry in wanted.items():
            body = token_request_body(self.pod, audience, expiry)
            try:
                result = await self.ctx.kube.call(
                    self.ctx.kube.core.create_namespaced_service_account_token,
                    sa,
                    self.namespace,
                    body,
                )
            except Exception as exc:
                if status_of(exc) == 404:
                    raise ConfigError(f'serviceaccount "{sa}" not found', "FailedMount") from exc
                raise
            self.tokens[audience] = result["status"]["token"]

    def _write_service_account(self) -> None:
        """token, ca.crt, namespace (the in-cluster files) and a kubeconfig using them."""
        sa = self.sa_dir
        sa.mkdir(exist_ok=True)
        private = self.owner is not None
        if private:
            assert self.owner is not None
            os.chown(sa, *self.owner)
        sa.chmod(0o700 if private else 0o755)
        file_mode = 0o600 if private else 0o644
        write_atomic(sa / "token", self.tokens[""].encode(), file_mode, self.owner)
        self.token_files.append((sa / "token", ""))
        ca_path = None
        if self.ctx.endpoint.ca_data:
            ca_path = sa / "ca.crt"
            write_atomic(ca_path, self.ctx.endpoint.ca_data, 0o644, self.owner)
        write_atomic(sa / "namespace", self.namespace.encode(), 0o644, self.owner)
        sa_name = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        config = pod_kubeconfig(self.ctx.endpoint, ca_path, sa / "token", self.namespace, sa_name)
        write_atomic(sa / "kubeconfig", config.encode(), file_mode, self.owner)

    def _materialise(self, volume: Mapping[str, Any], lookups: Lookups, rt: PodRuntime) -> str:
        kind = volume_kind(volume)
        name = volume["name"]
        if kind == "persistentVolumeClaim":
            claim = volume["persistentVolumeClaim"]["claimName"]
            target = self.ctx.volumes_root / "pvc" / self.namespace / claim
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            return str(target)
        target = self.pod_dir / "volumes" / name
        if kind in ("configMap", "secret", "downwardAPI", "projected"):
            files = render_volume(volume, self.pod, rt, self._with_ca(lookups, volume), self.tokens)
            write_files(target, files, self.owner)
            target.chmod(0o755)
            for rel, _ in files.items():
                for src in (volume.get("projected") or {}).get("sources") or []:
                    sat = src.get("serviceAccountToken")
                    if sat is not None and sat.get("path") == rel:
                        self.token_files.append((target / rel, sat.get("audience") or ""))
            return str(target)
        if kind != "emptyDir":
            log.warning(
                "%s/%s: volume %s of type %s is an empty directory here",
                self.namespace,
                self.name,
                name,
                kind,
            )
        target.mkdir(exist_ok=True)
        target.chmod(0o777)
        return str(target)

    def _with_ca(self, lookups: Lookups, volume: Mapping[str, Any]) -> Lookups:
        """kube-api-access volumes need ConfigMap kube-root-ca.crt; if its publisher has not
        run yet, the CA from our kubeconfig is the same content."""
        if not str(volume.get("name", "")).startswith("kube-api-access-"):
            return lookups
        if lookups.config_maps.get("kube-root-ca.crt") is not None or not self.ctx.endpoint.ca_data:
            return lookups
        cms = dict(lookups.config_maps)
        cms["kube-root-ca.crt"] = {"ca.crt": self.ctx.endpoint.ca_data}
        return Lookups(secrets=lookups.secrets, config_maps=cms)

    async def _refresh_tokens(self) -> None:
        """Renew tokens at a fraction of their lifetime (the kubelet: 80%)."""
        while True:
            await asyncio.sleep(0.8 * 3600)
            try:
                await self._request_tokens()
                for path, audience in self.token_files:
                    mode = path.stat().st_mode & 0o777
                    write_atomic(path, self.tokens[audience].encode(), mode, self.owner)
            except Exception as exc:
                log.warning("token refresh for %s/%s: %s", self.namespace, self.name, describe(exc))

    async def fetch_lookups(self) -> Lookups:
        refs = referenced_objects(self.pod)
        core = self.ctx.kube.core
        secrets: dict[str, Mapping[str, bytes] | None] = {}
        config_maps: dict[str, Mapping[str, bytes] | None] = {}
        for name in sorted(refs.secrets):
            obj = await self._get_or_none(core.read_namespaced_secret, name)
            secrets[name] = (
                None
                if obj is None
                else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            )
        for name in sorted(refs.config_maps):
            obj = await self._get_or_none(core.read_namespaced_config_map, name)
            if obj is None:
                config_maps[name] = None
                continue
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            config_maps[name] = data
        return Lookups(secrets=secrets, config_maps=config_maps)

    async def _get_or_none(self, fn: Callable[..., Any], name: str) -> Json | None:
        try:
            result: Json = await self.ctx.kube.call(fn, name, self.namespace)
            return result
        except Exception as exc:
            if status_of(exc) == 404:
                return None
            raise

    def runtime_info(self) -> PodRuntime:
        return PodRuntime(
            pod_ip=self.pod_ip or "",
            host_ip=self.ctx.host_ip,
            node_name=self.ctx.node_name,
            allocatable=self.ctx.allocatable,
        )

    def base_env(self) -> dict[str, str]:
        """The agent's variables for every container (the container's own env wins)."""
        spec = self.pod.get("spec") or {}
        ep = self.ctx.endpoint
        # The venv's bin first, so `kubeml` and `python` are this installation's.
        inherited = (os.environ.get("PATH") or DEFAULT_PATH).split(":")
        path = [os.path.dirname(sys.executable), *inherited]
        env = {
            "PATH": ":".join(dict.fromkeys(p for p in path if p)),
            "HOME": str(self.root_dir),
            "HOSTNAME": spec.get("hostname") or self.name,
            "KUBERNETES_SERVICE_HOST": ep.host,
            "KUBERNETES_SERVICE_PORT": str(ep.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(ep.port),
            "KUBERNETES_PORT": f"tcp://{ep.host}:{ep.port}",
            "KUBEML_POD_IP": self.pod_ip or "",
            "KUBEML_POD_NAME": self.name,
            "KUBEML_POD_NAMESPACE": self.namespace,
            "KUBEML_NODE_NAME": self.ctx.node_name,
            "KUBEML_POD_ROOT": str(self.root_dir),
        }
        if self.tokens:
            env["KUBECONFIG"] = str(self.sa_dir / "kubeconfig")
            env["KUBEML_SERVICEACCOUNT_DIR"] = str(self.sa_dir)
        for key in PASSTHROUGH_ENV:
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    async def plan_for(self, container: Mapping[str, Any]) -> ProcessPlan:
        lookups = await self.fetch_lookups()
        base_env = self.base_env()
        if self.ctx.services is not None:
            # Under the agent's own variables: KUBERNETES_SERVICE_* stay the apiserver's.
            base_env = {**await self.ctx.services.env_for(self.pod), **base_env}
        if self.ctx.images is not None:
            return await self._plan_in_image(self.ctx.images, container, lookups, base_env)
        plan = plan_process(
            self.pod,
            container,
            rt=self.runtime_info(),
            lookups=lookups,
            base_env=base_env,
            pod_root=str(self.root_dir),
            volume_dirs=self.volume_dirs,
            switch_users=self.ctx.switch_users,
        )
        for d in plan.make_dirs:
            path = Path(d)
            if not path.exists():
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
        return plan

    async def _plan_in_image(
        self,
        store: ImageStore,
        container: Mapping[str, Any],
        lookups: Lookups,
        base_env: Mapping[str, str],
    ) -> ProcessPlan:
        image = str(container.get("image") or "")
        try:
            config = await store.config(image)
        except ImageError as exc:
            raise ConfigError(f'Failed to pull image "{image}": {exc}', "ErrImagePull") from exc
        if config is None:
            raise ConfigError(
                f'Failed to pull image "{image}": not in this node\'s image store and this '
                "cluster pulls nothing (build it with `kubeml local images`)",
                "ErrImagePull",
            )
        rootfs = await store.create(store.container_name(self.uid, container["name"]), image)
        try:
            return plan_in_image(
                self.pod,
                container,
                image_ref=image,
                image=config,
                root=rootfs.path,
                passwd=rootfs.passwd,
                group=rootfs.group,
                rt=self.runtime_info(),
                lookups=lookups,
                base_env=base_env,
                volume_dirs=self.volume_dirs,
            )
        except BaseException:
            await store.remove(rootfs.name)
            raise

    async def release(self, plan: ProcessPlan, container: str) -> None:
        """After a run inside an image: its working container (and writable layer) goes."""
        if plan.sandbox is not None and self.ctx.images is not None:
            await self.ctx.images.remove(self.ctx.images.container_name(self.uid, container))

    # -- status ----------------------------------------------------------------------
    def build_status(self) -> Json:
        spec = self.pod.get("spec") or {}
        gates = tuple(g["conditionType"] for g in spec.get("readinessGates") or [])
        view = PodView(
            host_ip=self.ctx.host_ip,
            pod_ip=self.pod_ip or (self.pod.get("status") or {}).get("podIP"),
            start_time=self.start_time,
            sandbox_ready=self.sandbox_ready,
            readiness_gates=gates,
            observed_generation=(self.pod.get("metadata") or {}).get("generation"),
        )
        return pod_status(view, self.inits, self.mains, self.prev_conditions, now())

    async def _write_status(self) -> bool:
        """One attempt; True when written, unnecessary or pointless (pod gone)."""
        async with self._write_lock:
            if self.gone or self.shutting_down:
                return True
            status = self.build_status()
            comparable = without_times(status)
            if comparable == self.last_written:
                return True
            try:
                result = await self.ctx.kube.patch_pod_status(self.namespace, self.name, status)
            except Exception as exc:
                if status_of(exc) == 404:
                    return True
                # One line per failure streak, not one per retry.
                level = logging.DEBUG if self._status_failing else logging.WARNING
                log.log(level, "status of %s/%s: %s", self.namespace, self.name, describe(exc))
                self._status_failing = True
                return False
            self._status_failing = False
            self.last_written = comparable
            self.prev_conditions = list((result.get("status") or {}).get("conditions") or [])
            return True

    async def _status_loop(self) -> None:
        delay = 0.5
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            if await self._write_status():
                delay = 0.5
                continue
            await asyncio.sleep(delay)  # the apiserver may be restarting: back off
            delay = min(delay * 2, 5.0)
            self.dirty.set()

    async def _flush_status(self) -> None:
        while not await self._write_status():
            await _first(asyncio.sleep(1.0), self.gone_event.wait())

    async def _delete(self) -> None:
        """Grace 0 after our own graceful stop, with a uid precondition so a new pod of the
        same name is never hit. Finalizers (the Job controller's) are left alone."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        while not self.gone:
            try:
                await self.ctx.kube.call(
                    self.ctx.kube.core.delete_namespaced_pod,
                    self.name,
                    self.namespace,
                    body=body,
                    grace_period_seconds=0,
                )
                return
            except Exception as exc:
                if status_of(exc) in (404, 409):
                    return
                log.warning("deleting %s/%s: %s", self.namespace, self.name, describe(exc))
                await _first(asyncio.sleep(1.0), self.gone_event.wait())

    def _cleanup(self) -> None:
        self.ctx.ipam.release(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)


class ContainerRunner:
    """Runs one container until it stops for good: start, supervise, restart with back-off."""

    def __init__(
        self, worker: PodWorker, container: Mapping[str, Any], record: ContainerRecord, policy: str
    ) -> None:
        self.worker = worker
        self.container = container
        self.record = record
        self.policy = policy
        self.proc: asyncio.subprocess.Process | None = None
        self.started_event = asyncio.Event()
        self.wake = asyncio.Event()
        self.stop_requested = False  # sidecar teardown
        self.kill_reason = ""
        self.oom = False
        self.crashes = 0
        self.pull_failures = 0
        self.task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self.worker.stopping or self.stop_requested

    def cancel(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self.task is not None:
            self.task.cancel()

    def _changed(self) -> None:
        self.worker.dirty.set()

    async def run_safely(self) -> None:
        """run(), but a bug in it fails this container instead of the whole agent."""
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s/%s: runner failed", self.worker.name, self.record.name)
            if self.proc is not None and self.proc.returncode is None:
                kill_group(self.proc.pid)
            self.record.state = terminated(
                128, "StartError", None, now(), message="node agent error"
            )
            self.record.final, self.record.ready = True, False
            self._changed()

    async def run(self) -> None:
        rec = self.record
        while not rec.final:
            if self.stopping:
                return
            plan = await self._plan()
            if plan is None:
                continue
            started = now()
            try:
                log_path = self.worker.ctx.log_path(
                    self.worker.namespace, self.worker.name, rec.name
                )
                # A restart (or a run after an agent restart) keeps the last run's log
                # for `kubectl logs --previous`.
                if log_path.exists():
                    os.replace(
                        log_path,
                        self.worker.ctx.previous_log_path(
                            self.worker.namespace, self.worker.name, rec.name
                        ),
                    )
                proc = await runtime.spawn(
                    plan, log_path, {runtime.AGENT_MARKER_ENV: self.worker.ctx.marker}
                )
            except runtime.StartError as exc:
                log.warning("%s/%s: %s", self.worker.name, rec.name, exc)
                code, reason, message = 128, "StartError", str(exc)
            else:
                code = await self._supervise(proc, plan, started)
                reason, message = termination_reason(code, self.oom), ""
                if self.oom:
                    message = f"memory limit {plan.memory_limit} bytes exceeded"
            finally:
                await self.worker.release(plan, rec.name)
            finished = now()
            rec.state = terminated(code, reason, started, finished, rec.container_id, message)
            rec.ready = rec.started = False
            if self.stopping or not restart_allowed(self.policy, code):
                rec.final = True
                self._changed()
                return
            self.crashes = next_crash_count(self.crashes, (finished - started).total_seconds())
            delay = restart_delay(self.crashes)
            rec.last_state = rec.state
            rec.state = waiting(
                "CrashLoopBackOff",
                f"back-off {delay:.0f}s restarting failed container={rec.name} "
                f"pod={self.worker.name}_{self.worker.namespace}({self.worker.uid})",
            )
            self._changed()
            await self._sleep(delay)
            if self.stopping:
                rec.state, rec.final = rec.last_state, True
                self._changed()
                return
            rec.restart_count += 1

    async def _sleep(self, seconds: float) -> None:
        self.wake.clear()
        await _first(asyncio.sleep(seconds), self.wake.wait(), self.worker.stop_event.wait())

    async def _plan(self) -> ProcessPlan | None:
        """The process plan, or None after waiting out a configuration error."""
        try:
            plan = await self.worker.plan_for(self.container)
            self.pull_failures = 0
            return plan
        except ConfigError as exc:
            reason, message = exc.reason, exc.message
        except ImageError as exc:  # the store itself failed: retry like a config error
            reason, message = "CreateContainerError", str(exc)
        except Exception as exc:  # API trouble: retry like a config error
            reason, message = "CreateContainerConfigError", describe(exc)
        delay = 2.0
        if reason == "ErrImagePull":
            # Like a kubelet: the failed attempt shows ErrImagePull, the wait before the
            # next one ImagePullBackOff (10 s doubling to 5 min there; shorter here, where
            # an image appears by building it, not by a registry coming back).
            self.pull_failures += 1
            delay = min(2.0 * 2 ** (self.pull_failures - 1), 30.0)
            log.warning("%s/%s: %s: %s", self.worker.name, self.record.name, reason, message)
            self.record.state = waiting(reason, message)
            self._changed()
            await self._sleep(1.0)
            if self.stopping:
                return None
            image = self.container.get("image") or ""
            reason, message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
        elif self.record.state.get("waiting", {}).get("message") != message:
            log.warning("%s/%s: %s: %s", self.worker.name, self.record.name, reason, message)
        self.record.state = waiting(reason, message)
        self._changed()
        await self._sleep(delay)
        return None

    async def _supervise(
        self, proc: asyncio.subprocess.Process, plan: ProcessPlan, started: dt.datetime
    ) -> int:
        rec = self.record
        self.proc, self.oom, self.kill_reason = proc, False, ""
        rec.container_id = (
            "kubeml-local://"
            + hashlib.sha256(
                f"{self.worker.uid}/{rec.name}/{rec.restart_count}/{started.isoformat()}".encode()
            ).hexdigest()
        )
        rec.state = running(started)
        has_startup = bool(self.container.get("startupProbe"))
        rec.started = not has_startup
        rec.ready = self._ready_without_probe() and rec.started
        if rec.started:
            self.started_event.set()
        self._changed()
        memory = self.worker.ctx.memory
        if plan.memory_limit is not None:
            memory.watch(proc.pid, plan.memory_limit, self._on_oom)
        self.wake.clear()
        self._probe_task = asyncio.create_task(self._probes(plan))
        wait_exit = asyncio.ensure_future(proc.wait())
        try:
            while proc.returncode is None:
                await _first(wait_exit, self.wake.wait(), self.worker.stop_event.wait())
                self.wake.clear()
                if proc.returncode is not None:
                    break
                if self.stopping:
                    await self._terminate(proc, None)
                elif self.kill_reason:
                    await self._terminate(proc, self._liveness_grace())
            rc = await wait_exit
        finally:
            memory.unwatch(proc.pid)
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe_task
            if proc.returncode is None:  # cancelled: never leave the process behind
                kill_group(proc.pid)
            # Scanning /proc for stragglers takes a while on a busy host: not on the loop,
            # where it would delay probes into spurious timeouts.
            await asyncio.to_thread(runtime.reap_session, proc.pid)
        return exit_code(rc)

    def _ready_without_probe(self) -> bool:
        if self.record.init and not self.record.sidecar:
            return False
        return not self.container.get("readinessProbe")

    def _liveness_grace(self) -> float:
        for key in ("livenessProbe", "startupProbe"):
            probe = self.container.get(key) or {}
            if probe.get("terminationGracePeriodSeconds") is not None:
                return float(probe["terminationGracePeriodSeconds"])
        value = (self.worker.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return float(30 if value is None else value)

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float | None) -> None:
        """SIGTERM, then SIGKILL at the deadline; the pod's deadline may shrink meanwhile
        (a second delete with a shorter grace period), so it is re-read."""
        loop = asyncio.get_running_loop()
        own_deadline = loop.time() + grace if grace is not None else float("inf")
        kill_group(proc.pid, signal.SIGTERM)
        while proc.returncode is None:
            deadline = min(
                own_deadline, self.worker.stop_deadline if self.worker.stopping else float("inf")
            )
            remaining = deadline - loop.time()
            if remaining <= 0:
                kill_group(proc.pid)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), min(remaining, 0.5))
        await proc.wait()

    def _on_oom(self, used: int) -> None:
        self.oom = True
        log.info("%s/%s: OOMKilled (%d bytes)", self.worker.name, self.record.name, used)

    def _request_kill(self, reason: str) -> None:
        if not self.kill_reason:
            log.info("%s/%s: %s, restarting", self.worker.name, self.record.name, reason)
            self.kill_reason = reason
            self.wake.set()

    # -- probes --------------------------------------------------------------------
    async def _probes(self, plan: ProcessPlan) -> None:
        rec = self.record
        c = self.container
        startup = c.get("startupProbe")
        if startup:
            tracker = ProbeTracker("startup", ProbeTiming.of(startup))

            def on_startup(t: ProbeTracker) -> None:
                if t.result is False:
                    self._request_kill("startup probe failed")

            await run_probe_loop(
                tracker, self._attempt(startup, plan), on_startup, stop_on_success=True
            )
            rec.started = True
            rec.ready = self._ready_without_probe()
            self.started_event.set()
            self._changed()
        loops = []
        readiness = c.get("readinessProbe")
        if readiness and (not rec.init or rec.sidecar):

            def on_ready(t: ProbeTracker) -> None:
                rec.ready = bool(t.result)
                self._changed()

            loops.append(
                run_probe_loop(
                    ProbeTracker("readiness", ProbeTiming.of(readiness)),
                    self._attempt(readiness, plan),
                    on_ready,
                )
            )
        liveness = c.get("livenessProbe")
        if liveness:

            def on_live(t: ProbeTracker) -> None:
                if t.result is False:
                    self._request_kill("liveness probe failed")

            loops.append(
                run_probe_loop(
                    ProbeTracker("liveness", ProbeTiming.of(liveness)),
                    self._attempt(liveness, plan),
                    on_live,
                )
            )
        if loops:
            await asyncio.gather(*loops)

    def _attempt(
        self, probe: Mapping[str, Any], plan: ProcessPlan
    ) -> Callable[[], Awaitable[bool]]:
        timeout = ProbeTiming.of(probe).timeout
        host = self.worker.pod_ip or "127.0.0.1"
        if probe.get("httpGet"):
            port = container_port(self.container, probe["httpGet"]["port"])
            return lambda: http_get(host, port, probe, timeout)
        if probe.get("tcpSocket"):
            port = container_port(self.container, probe["tcpSocket"]["port"])
            return lambda: tcp_socket(host, port, probe, timeout)
        if probe.get("exec"):
            argv = plan.exec_argv(probe["exec"].get("command") or [])
            return lambda: runtime.run_exec(plan, argv, timeout)
        log.warning(
            "%s/%s: unsupported probe %s counts as success",
            self.worker.name,
            self.record.name,
            sorted(probe),
        )

        async def succeed() -> bool:
            return True

        return succeed


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of several awaitables finishes; cancel the others (tasks
    passed in are left running: only the wrappers made here are cancelled)."""
    futures = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]
    owned = [f for f, a in zip(futures, aws, strict=True) if f is not a]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in owned:
            if not f.done():
                f.cancel()

"""The detached process that owns one local cluster: ``python -m kubeml_local.supervisor``.

``up`` starts it in its own session, so Ctrl-C in the terminal does not reach the
components, and follows ``progress.log`` until ``status.json`` says ready. The supervisor
starts every component, waits for each with a deadline, then watches them. A component
that exits during bring-up fails it; once the cluster is ready, one that exits is started
again with the same command line after a back-off (``restarts.py``) while the others keep
running, as a node restarts what crashed; ``status.json`` records the restarts. On
SIGTERM/SIGINT/SIGHUP it stops all of them (node agent first, so it can stop its pods
while the apiserver is still there; etcd last) and exits. It is a child subreaper, so pods
that the agent detaches are re-parented to it and stopped too.

A restarted node agent does not re-attach to the pod processes of the one that died: they
are no longer its children, so it could not learn their exit codes (the supervisor, as
subreaper, reaps them). It kills them and runs the containers again, counting a restart
with ``lastState`` ContainerStatusUnknown, as a kubelet does after losing its runtime.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from kubeml_local import bootstrap, components, procs, readiness, restarts, s3
from kubeml_local.config import (
    ClusterConfig,
    ComponentPid,
    Phase,
    Status,
    read_config,
    write_json,
)
from kubeml_local.kubeconfig import write_kubeconfig
from kubeml_local.layout import Layout
from kubeml_local.pki import ADMIN_USER, CONTROLLER_MANAGER_USER, Pki, ensure_pki

WATCH_INTERVAL_S = 0.5
# Seconds each component gets between SIGTERM and SIGKILL. The agent stops its pods;
# SeaweedFS's filer waits 15 s on open metadata streams before it exits by itself, and its
# data is already written through by then, so it is not worth waiting for.
GRACE_S = {
    "node-agent": 20.0,
    "kube-controller-manager": 5.0,
    "kube-apiserver": 5.0,
    "etcd": 10.0,
    "seaweedfs": 3.0,
}
# Deadlines of the bring-up steps, in seconds.
DEADLINES = {
    "etcd": 30.0,
    "apiserver": 90.0,
    "controllers": 60.0,
    "s3": 60.0,
    "crds": 30.0,
    "node": 30.0,
}
AGENT_MODULE = "kubeml_local.agent"


class Shutdown(Exception):
    """A stop was requested by signal."""


class ComponentDied(RuntimeError):
    pass


def agent_available() -> bool:
    try:
        spec = importlib.util.find_spec(AGENT_MODULE)
        if spec is None:
            return False
        if spec.submodule_search_locations is not None:  # a package needs __main__
            return importlib.util.find_spec(f"{AGENT_MODULE}.__main__") is not None
        return True
    except ImportError:
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # A Go fatal error is followed by goroutine dumps; the message is what comes before.
    dump = next((i for i, line in enumerate(text) if line.startswith("goroutine ")), None)
    if dump is not None:
        text = text[:dump]
    return "\n".join(f"    {line}" for line in text[-lines:])


class Supervisor:
    def __init__(self, layout: Layout, cfg: ClusterConfig, *, with_agent: bool) -> None:
        self.layout = layout
        self.cfg = cfg
        self.with_agent = with_agent
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.argv: dict[str, list[str]] = {}
        self.tracks: dict[str, restarts.Track] = {}
        self.status = Status(phase="starting", supervisor_pid=os.getpid())
        self.started = time.monotonic()
        self.stopping = False
        self.agent_started = dt.datetime.now(dt.UTC)

    # -- bookkeeping ---------------------------------------------------------------------
    def progress(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {message}"
        with self.layout.progress_log.open("a") as f:
            f.write(line + "\n")
        print(line, flush=True)

    def set_phase(self, phase: Phase, message: str | None = None) -> None:
        self.status.phase = phase
        if message is not None:
            self.status.message = message
        write_json(self.layout.status_json, self.status)

    def start(self, name: str, argv: list[str]) -> None:
        proc = procs.spawn(argv, log=self.layout.log(name), root=self.layout.root)
        self.procs[name] = proc
        self.argv[name] = argv
        self.tracks[name] = restarts.Track(started_at=time.monotonic())
        self.status.components[name] = ComponentPid(pid=proc.pid, pgid=proc.pid)
        write_json(self.layout.status_json, self.status)
        self.progress(f"{name}: started (pid {proc.pid}, log {self.layout.log(name)})")

    def guard(self) -> None:
        """Raise if a component has exited; called from every wait and the watch loop."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise ComponentDied(
                    f"{name} exited with code {code}; last lines of its log:\n"
                    + log_tail(self.layout.log(name))
                )

    def wait(self, probe: Callable[[], object], what: str, deadline_key: str) -> None:
        t0 = time.monotonic()
        readiness.poll(probe, timeout=DEADLINES[deadline_key], what=what, guard=self.guard)
        self.progress(f"{what}: ready ({time.monotonic() - t0:.1f}s)")

    # -- bring-up ------------------------------------------------------------------------
    def bring_up(self) -> None:
        layout, cfg = self.layout, self.cfg
        pki = ensure_pki(layout.pki, node_name=cfg.node_name, service_ip=cfg.service_ip)
        self.write_kubeconfigs(pki)
        creds = s3.ensure_credentials(layout, cfg.s3_url)
        self.progress("pki, kubeconfigs and S3 credentials: written")

        # SeaweedFS needs several seconds to elect its master; start it first, in parallel.
        self.start("seaweedfs", components.seaweedfs(cfg, layout, s3.weed_binary()))
        self.start("etcd", components.etcd(cfg, layout))
        self.wait(lambda: readiness.etcd_healthy(cfg.etcd_url), "etcd", "etcd")

        components.write_audit_policy(layout)
        self.start("kube-apiserver", components.apiserver(cfg, layout, pki))
        ctx = readiness.client_context(pki)
        try:
            self.wait(
                lambda: readiness.apiserver_ready(cfg.apiserver_url, ctx),
                "kube-apiserver",
                "apiserver",
            )
        except readiness.NotReady as err:
            detail = readiness.apiserver_readyz_detail(cfg.apiserver_url, ctx)
            raise readiness.NotReady(f"{err}; /readyz: {detail}") from err
        self.start("kube-controller-manager", components.controller_manager(cfg, layout, pki))

        api = bootstrap.api_client(layout.kubeconfig)
        bootstrap.apply_s3_objects(api, creds)
        self.progress("namespace kubeml-system, Secret and ConfigMap kubeml-s3: applied")
        self.install_crds(api)
        self.start_agent()
        self.wait(
            lambda: bootstrap.default_service_account_exists(api),
            "kube-controller-manager (default ServiceAccount)",
            "controllers",
        )
        self.wait(lambda: s3.ensure_bucket(creds), f"S3 bucket {creds.bucket}", "s3")
        if "node-agent" in self.procs:
            # Heartbeat times have whole seconds: allow for the truncation.
            since = self.agent_started - dt.timedelta(seconds=1)
            self.wait(
                lambda: bootstrap.node_ready(api, cfg.node_name, since),
                f"node {cfg.node_name}",
                "node",
            )

    def write_kubeconfigs(self, pki: Pki) -> None:
        url = self.cfg.apiserver_url
        for path, cert, user in (
            (self.layout.kubeconfig, "admin", ADMIN_USER),
            (
                self.layout.controller_manager_kubeconfig,
                "controller-manager",
                CONTROLLER_MANAGER_USER,
            ),
            (self.layout.agent_kubeconfig, "agent", f"system:node:{self.cfg.node_name}"),
        ):
            crt, key = pki.client(cert)
            write_kubeconfig(path, server=url, ca=pki.ca_cert, cert=crt, key=key, user=user)

    def install_crds(self, api: ApiClient) -> None:
        crds_dir = Path(self.cfg.crds_dir) if self.cfg.crds_dir else None
        names, rejected = bootstrap.apply_crds(api, crds_dir)
        for name, why in rejected.items():
            self.progress(f"WARNING CRD {name} rejected by the apiserver: {why}")
        if not names:
            self.progress(f"CRDs: none applied from {crds_dir}")
            return
        self.progress(f"CRDs: applied {len(names)} from {crds_dir}")
        self.wait(lambda: bootstrap.crds_established(api, names), "CRDs established", "crds")

    def start_agent(self) -> None:
        if not self.with_agent:
            self.progress("node agent: disabled, not started")
            return
        if not agent_available():
            self.progress(
                f"WARNING node agent: module {AGENT_MODULE} not found, not started "
                "(pods will stay Pending)"
            )
            return
        self.agent_started = dt.datetime.now(dt.UTC)
        self.start("node-agent", components.agent(self.cfg, self.layout))

    # -- steady state and teardown -------------------------------------------------------
    def watch(self) -> None:
        while True:
            for name in list(self.procs):
                self.check(name, time.monotonic())
            procs.reap_zombies(keep=[p.pid for p in self.procs.values()])
            time.sleep(WATCH_INTERVAL_S)

    def check(self, name: str, now: float) -> None:
        """Notice that a component exited, and start it again once its back-off is over."""
        track = self.tracks[name]
        if track.restart_at is None:
            code = self.procs[name].poll()
            if code is None:
                return
            # Helpers it forked (none expected) must not hold its ports for the next run.
            procs.stop_popen(self.procs[name], 0.0)
            track = self.tracks[name] = restarts.on_exit(track, code, now)
            comp = self.status.components[name]
            comp.last_exit_code = code
            comp.last_exit_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            write_json(self.layout.status_json, self.status)
            wait = (track.restart_at or now) - now
            self.progress(
                f"{name}: exited with code {code}; restarting in {wait:.0f}s "
                f"(restart {track.restarts + 1}); last lines of its log:\n"
                + log_tail(self.layout.log(name), 5)
            )
        if not restarts.due(track, now):
            return
        if name == "seaweedfs":  # a killed SeaweedFS leaves its unix sockets behind
            local = [self.layout.run / "s3.sock", self.layout.run / "filer.sock"]
            for sock in [*s3.stale_sockets(self.cfg.ports.all()), *local]:
                sock.unlink(missing_ok=True)
        try:
            proc = procs.spawn(self.argv[name], log=self.layout.log(name), root=self.layout.root)
        except OSError as err:  # e.g. its binary is gone: try again later, like an exit
            self.tracks[name] = restarts.on_exit(restarts.on_restart(track, now), 127, now)
            self.status.components[name].restarts += 1
            self.progress(f"{name}: cannot be started again: {err}")
            return
        self.procs[name] = proc
        track = self.tracks[name] = restarts.on_restart(track, time.monotonic())
        comp = self.status.components[name]
        comp.pid = comp.pgid = proc.pid
        comp.restarts = track.restarts
        write_json(self.layout.status_json, self.status)
        self.progress(f"{name}: restarted (pid {proc.pid}, restart {track.restarts})")

    def teardown(self) -> None:
        self.stopping = True
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        chain = [
            n
            for n in ("node-agent", "kube-controller-manager", "kube-apiserver", "etcd")
            if n in self.procs
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:
            # SeaweedFS depends on nothing else here: stop it alongside the chain.
            if "seaweedfs" in self.procs:
                pool.submit(self.stop_one, "seaweedfs")
            pool.submit(self.stop_chain, chain)
        # Orphans (detached pods) were re-parented to us; then anything else marked ours.
        procs.stop_pids(procs.descendants(os.getpid()), 5.0)
        procs.stop_pids(procs.marked_pids(self.layout.root), 5.0)
        procs.reap_zombies()
        for sock in s3.stale_sockets(self.cfg.ports.all()):
            sock.unlink(missing_ok=True)

    def stop_chain(self, names: Sequence[str]) -> None:
        for name in names:
            self.stop_one(name)

    def stop_one(self, name: str) -> None:
        proc = self.procs[name]
        running = proc.poll() is None
        procs.stop_popen(proc, GRACE_S.get(name, 10.0))
        if running:
            self.progress(f"{name}: stopped")


def describe(err: Exception) -> str:
    if isinstance(err, ComponentDied | readiness.NotReady):
        return str(err)
    if isinstance(err, ApiException):
        return f"{bootstrap.api_error(err)}\n" + "".join(traceback.format_tb(err.__traceback__))
    return "".join(traceback.format_exception(err))


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def run(layout: Layout, *, with_agent: bool) -> int:
    cfg = read_config(layout.cluster_json)
    if cfg is None:
        print(f"no cluster config in {layout.cluster_json}", file=sys.stderr)
        return 2
    sup = Supervisor(layout, cfg, with_agent=with_agent)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_shutdown)
    procs.become_subreaper()
    sup.set_phase("starting", "")
    final: Phase = "stopped"
    code = 0
    try:
        sup.bring_up()
        sup.status.ready_seconds = round(time.monotonic() - sup.started, 1)
        sup.set_phase("ready", "")
        sup.progress(f"cluster ready in {sup.status.ready_seconds}s")
        sup.watch()
    except Shutdown as sig:
        sup.set_phase("stopping", f"stopped by {sig}")
        sup.progress(f"stopping: received {sig}")
    except Exception as err:  # every failure must still end in a full teardown
        final, code = "failed", 1
        message = describe(err)
        sup.set_phase("stopping", message)
        sup.progress(f"FAILED: {message}")
        sup.progress("stopping all components")
    finally:
        try:
            sup.teardown()
        finally:
            sup.set_phase(final)
            sup.progress(f"supervisor exiting ({final})")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeml_local.supervisor")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--no-agent", action="store_true")
    args = parser.parse_args(argv)
    return run(Layout.at(args.state_dir), with_agent=not args.no_agent)


if __name__ == "__main__":
    sys.exit(main())

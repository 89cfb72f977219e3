"""Python API of the local cluster: ``up``, ``down``, ``status``, ``connection``.

``up`` resolves the binaries (building them if needed), writes ``cluster.json``, launches
the detached supervisor (``kubeml_local.supervisor``) and prints its progress until the
cluster is ready. Ctrl-C during ``up`` stops everything it started. ``down`` asks the
supervisor to stop, waits with a deadline, then kills leftovers by recorded pids and by
the environment marker. Both are safe to repeat.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubeml_local import binaries, bootstrap, procs, readiness, service_range
from kubeml_local.config import (
    DEFAULT_NODE,
    ClusterConfig,
    Status,
    choose_ports,
    read_config,
    read_status,
    write_json,
)
from kubeml_local.layout import Layout
from kubeml_local.pki import Pki
from kubeml_local.s3 import S3Credentials, read_env_file, stale_sockets

Echo = Callable[[str], None]
UP_TIMEOUT_S = 240.0
DOWN_TIMEOUT_S = 60.0
FOLLOW_POLL_S = 0.1


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Connection:
    """What a client needs: the admin kubeconfig and the S3 endpoint/credentials."""

    state_dir: Path
    kubeconfig: Path
    apiserver: str
    s3: S3Credentials

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), **self.s3.env()}


@dataclass
class Report:
    state_dir: Path
    phase: str
    supervisor_alive: bool
    healthy: bool
    components: dict[str, bool] = field(default_factory=dict)
    detail: str = ""
    ready_seconds: float | None = None
    restarts: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"state dir:  {self.state_dir}",
            f"phase:      {self.phase}" + (f" ({self.detail})" if self.detail else ""),
            f"supervisor: {'running' if self.supervisor_alive else 'not running'}",
        ]
        for name, up in self.components.items():
            state = "running" if up else ("restarting" if self.supervisor_alive else "exited")
            out.append(f"  {name:<24} {state:<10} restarts: {self.restarts.get(name, 0)}")
        if self.ready_seconds is not None:
            out.append(f"came up in: {self.ready_seconds}s")
        return out


def _owned_alive(pid: int | None, layout: Layout) -> bool:
    return pid is not None and procs.alive(pid) and procs.has_marker(pid, layout.root)


def _apiserver_ready(layout: Layout, cfg: ClusterConfig) -> bool:
    try:
        ctx = readiness.client_context(Pki(layout.pki))
        return readiness.apiserver_ready(cfg.apiserver_url, ctx)
    except OSError:
        return False


def status(state_dir: Path | str | None = None) -> Report:
    layout = Layout.at(state_dir)
    st = read_status(layout.status_json) or Status(phase="stopped")
    cfg = read_config(layout.cluster_json)
    sup_alive = _owned_alive(st.supervisor_pid, layout)
    comps = {name: _owned_alive(c.pid, layout) for name, c in st.components.items()}
    phase = st.phase if sup_alive or st.phase in ("stopped", "failed") else "dead"
    healthy = (
        sup_alive
        and phase == "ready"
        and all(comps.values())
        and cfg is not None
        and _apiserver_ready(layout, cfg)
    )
    shown = comps if sup_alive or any(comps.values()) else {}
    return Report(
        layout.root,
        phase,
        sup_alive,
        healthy,
        shown,
        st.message.splitlines()[0] if st.message else "",
        st.ready_seconds,
        {name: c.restarts for name, c in st.components.items()},
    )


def connection(state_dir: Path | str | None = None) -> Connection:
    layout = Layout.at(state_dir)
    cfg = read_config(layout.cluster_json)
    if cfg is None or not layout.s3_env.exists():
        raise ClusterError(f"no local cluster in {layout.root}; run `kubeml local up`")
    env = read_env_file(layout.s3_env)
    creds = S3Credentials(
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        bucket=env["KUBEML_BUCKET"],
    )
    return Connection(layout.root, layout.kubeconfig, cfg.apiserver_url, creds)


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One `up` at a time per state dir; a second one waits, then finds it running."""
    with layout.lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def up(
    state_dir: Path | str | None = None,
    *,
    node_name: str | None = None,
    bin_dir: Path | None = None,
    crds_dir: Path | None = None,
    with_agent: bool = True,
    images: bool | None = None,
    timeout: float = UP_TIMEOUT_S,
    echo: Echo = print,
) -> Connection:
    """Start the cluster. ``images``: run pods inside their images (None: as last time)."""
    layout = Layout.at(state_dir)
    layout.create()
    with _locked(layout):
        report = status(layout.root)
        if report.healthy:
            running_cfg = read_config(layout.cluster_json)
            if images is not None and running_cfg and running_cfg.images != images:
                now_mode = "inside images" if running_cfg.images else "on the host"
                raise ClusterError(
                    f"the cluster in {layout.root} is running with pods {now_mode}; "
                    "run `kubeml local down` first to switch"
                )
            echo("local cluster already running")
            for line in report.lines():
                echo(line)
            return connection(layout.root)
        st = read_status(layout.status_json)
        if report.supervisor_alive and st and st.phase == "starting" and st.supervisor_pid:
            # Started by an `up` that is gone (killed, terminal closed): follow it instead.
            echo(f"a supervisor (pid {st.supervisor_pid}) is starting the cluster; following")
            _follow(layout, st.supervisor_pid, timeout, echo)
            return connection(layout.root)
        if report.supervisor_alive:
            raise ClusterError(
                f"a supervisor is running in {layout.root} but the cluster is not healthy "
                f"(phase {report.phase}); run `kubeml local down` first"
            )
        _kill_leftovers(layout, echo)
        cfg = _write_config(layout, node_name, bin_dir, crds_dir, images)
        layout.progress_log.write_text("")
        # Forget the previous run's phase and message; the supervisor fills in its own.
        write_json(layout.status_json, Status(phase="starting"))
        pid = _launch_supervisor(layout, with_agent)
        echo(f"supervisor started (pid {pid}); logs in {layout.logs}")
        try:
            _follow(layout, pid, timeout, echo)
        except BaseException:
            # Ctrl-C, a timeout or a failure: leave nothing running behind us.
            echo("stopping the partly started cluster ...")
            down(layout.root, echo=echo)
            raise
    conn = connection(layout.root)
    echo(f"apiserver:  {cfg.apiserver_url}")
    echo(f"S3:         {conn.s3.endpoint} (bucket {conn.s3.bucket})")
    echo(f"kubeconfig: {layout.kubeconfig}")
    echo('use it:     eval "$(kubeml local env)"')
    return conn


def _write_config(
    layout: Layout,
    node_name: str | None,
    bin_dir: Path | None,
    crds_dir: Path | None,
    images: bool | None = None,
) -> ClusterConfig:
    previous = read_config(layout.cluster_json)
    if images is None:
        images = previous.images if previous else False
    resolved_crds = crds_dir or bootstrap.default_crds_dir()
    cfg = ClusterConfig(
        node_name=node_name or (previous.node_name if previous else DEFAULT_NODE),
        bin_dir=str(binaries.resolve(bin_dir)),
        crds_dir=str(resolved_crds) if resolved_crds else None,
        ports=choose_ports(previous.ports if previous else None),
        service_cidr=service_range.for_cluster(
            layout.root,
            previous.service_cidr if previous else None,
            legacy_data=previous is not None and any(layout.etcd_data.glob("*")),
        ),
        images=images,
    )
    write_json(layout.cluster_json, cfg)
    return cfg


def _launch_supervisor(layout: Layout, with_agent: bool) -> int:
    argv = [sys.executable, "-m", "kubeml_local.supervisor", "--state-dir", str(layout.root)]
    if not with_agent:
        argv.append("--no-agent")
    with layout.log("supervisor").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=procs.component_env(layout.root),
            cwd=layout.root,
            # Own session: terminal signals and the end of our process do not reach it.
            start_new_session=True,
        )
    return proc.pid


def _follow(layout: Layout, pid: int, timeout: float, echo: Echo) -> None:
    deadline = time.monotonic() + timeout
    offset = 0

    def drain() -> None:
        nonlocal offset
        with layout.progress_log.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
        # Only whole lines: the supervisor may be half-way through writing one.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            echo(line)

    while True:
        drain()
        st = read_status(layout.status_json)
        if st and st.phase == "ready" and st.supervisor_pid == pid:
            return
        if not procs.alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            drain()
            why = st.message if st and st.message else "see " + str(layout.log("supervisor"))
            raise ClusterError(f"local cluster failed to start: {why}")
        if time.monotonic() >= deadline:
            raise ClusterError(f"local cluster not ready after {timeout:.0f}s")
        time.sleep(FOLLOW_POLL_S)


def down(
    state_dir: Path | str | None = None,
    *,
    timeout: float = DOWN_TIMEOUT_S,
    echo: Echo = print,
) -> None:
    layout = Layout.at(state_dir)
    st = read_status(layout.status_json)
    pid = st.supervisor_pid if st else None
    if pid is not None and _owned_alive(pid, layout):
        echo(f"stopping supervisor (pid {pid}) ...")
        os.kill(pid, signal.SIGTERM)
        if procs.wait_gone([pid], timeout):
            echo(f"supervisor did not stop within {timeout:.0f}s; killing")
    _kill_leftovers(layout, echo)
    cfg = read_config(layout.cluster_json)
    if cfg is not None:  # normally the supervisor's job; not done if it was killed
        for sock in stale_sockets(cfg.ports.all()):
            sock.unlink(missing_ok=True)
    st = read_status(layout.status_json)
    if st and st.phase not in ("stopped", "failed"):
        st.phase = "stopped"
        write_json(layout.status_json, st)
    echo("local cluster stopped")


def _kill_leftovers(layout: Layout, echo: Echo) -> None:
    """Stop anything of this cluster still running: recorded groups, then marked pids."""
    st = read_status(layout.status_json)
    groups = [c.pgid for c in st.components.values()] if st else []
    owned_groups = [g for g in groups if _owned_alive(g, layout)]
    if st and st.supervisor_pid and _owned_alive(st.supervisor_pid, layout):
        owned_groups.append(st.supervisor_pid)
    stray = procs.marked_pids(layout.root)
    if not (owned_groups or stray):
        return
    echo(f"stopping {len(set(owned_groups) | set(stray))} leftover process(es)")
    procs.stop_pids(owned_groups, 5.0, groups=True)
    left = procs.stop_pids(procs.marked_pids(layout.root), 5.0)
    if left:
        raise ClusterError(f"could not stop processes {left}")

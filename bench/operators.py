"""What the operator benchmarks share: a cluster, a namespace, the operators to compare.

KubeML's operator runs exactly as a user's would: `kubeml operator run` with the
installation's connection settings and nothing tuned (no KUBEML_* knob set). The
floor is bench/floor_operator.py, a minimal kopf operator.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from kubeml_local import cluster
from kubeml_local.bootstrap import api_client
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll

HERE = Path(__file__).parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    metrics_port: int | None = None
    log: Path | None = None

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def metric(self, name: str, **labels: str) -> float | None:
        """The sum of a metric's matching samples; None if the process has no such metric
        (an older version of the operator)."""
        assert self.metrics_port is not None, f"{self.name} exports no metrics"
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        families = [
            f
            for f in text_string_to_metric_families(text)
            if f.name in (name, name.removesuffix("_total"))
        ]
        if not families:
            return None
        return sum(
            s.value
            for f in families
            for s in f.samples
            if s.name == name and labels.items() <= s.labels.items()
        )

    def wait_quiet(self, timeout: float = 900) -> None:
        """Wait until nothing is queued or running and the reconcile count stands still
        between two looks a second apart."""
        last: list[tuple[float, float, float]] = []

        def probe() -> bool:
            now = (
                self.metric("kubeml_operator_reconciles_total") or 0.0,
                self.metric("kubeml_operator_queue_depth") or 0.0,
                self.metric("kubeml_operator_reconciles_active") or 0.0,
            )
            still = bool(last) and now == last[-1] and now[1] == 0 and now[2] == 0
            last.append(now)
            return still

        poll(probe, timeout=timeout, what=f"{self.name} goes quiet", interval=1.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Bench:
    conn: cluster.Connection
    api: client.ApiClient
    workdir: Path
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def start(cls, state_dir: Path | None, workdir: Path, *, with_agent: bool = True) -> Bench:
        """The local cluster (started if need be). Without the node agent no pod ever
        runs: they stay Pending, and only the control path is measured."""
        layout = Layout.at(state_dir)
        conn = cluster.up(
            layout.root,
            with_agent=with_agent,
            echo=lambda line: print(f"  cluster: {line}", flush=True),
        )
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(conn, api_client(conn.kubeconfig), workdir)

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.conn.env(), "KUBECONFIG": str(self.conn.kubeconfig)}

    def ours(self, extra_env: dict[str, str] | None = None, pythonpath: str = "") -> Process:
        """KubeML's operator with the defaults a user's installation gets."""
        port = free_port()
        env = {
            **self.env(),
            "KUBEML_BIND_ADDRESS": "127.0.0.1",
            "KUBEML_HEALTH_PORT": str(free_port()),
            "KUBEML_METRICS_PORT": str(port),
            **(extra_env or {}),
        }
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        return self._spawn(
            "kubeml", [sys.executable, "-m", "kubeml.cli", "operator", "run"], env, port
        )

    def floor(self, mode: str = "react") -> Process:
        script = str(HERE / "floor_operator.py")
        env = {**self.env(), "FLOOR_MODE": mode}
        return self._spawn("bare kopf", [sys.executable, script], env, None)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], port: int | None) -> Process:
        log = self.workdir / f"{name.replace(' ', '-')}-{len(self.processes)}.log"
        proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        p = Process(name, proc, port, log)
        self.processes.append(p)
        if port is not None:
            poll(
                lambda: p.metric("kubeml_operator_reconciles_total") is not None or None,
                timeout=300,  # a loaded machine makes imports slow
                what=f"{name} answering on its metrics port",
            )
        return p

    def namespace(self, prefix: str) -> str:
        core = client.CoreV1Api(self.api)
        ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        poll(lambda: core.read_namespaced_service_account("default", ns), timeout=30, what="sa")
        core.create_namespaced_secret(
            ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="kubeml-s3"),
                string_data={
                    "AWS_ACCESS_KEY_ID": self.conn.s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.conn.s3.secret_key,
                },
            ),
        )
        return ns

    def stop(self, namespace: str = "") -> None:
        """Delete the benchmark's namespace while the operator still runs (its
        ModelVersions carry finalizers the operator lets go), then stop everything."""
        if namespace:
            core = client.CoreV1Api(self.api)
            core.delete_namespace(namespace)

            def gone() -> bool:
                try:
                    core.read_namespace(namespace)
                except client.ApiException as err:
                    return err.status == 404
                return False

            poll(gone, timeout=600, what=f"namespace {namespace} deleted", interval=2.0)
        for p in self.processes:
            p.stop()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(out)

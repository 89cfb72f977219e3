"""The KubeML operator as a local process, for integration tests.

Started with the admin kubeconfig and the cluster's S3 settings; `restart()`
kills it hard (SIGKILL, as a crash would) and starts it again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        s3_env: dict[str, str],
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env = {
            **os.environ,
            **s3_env,
            "KUBECONFIG": str(kubeconfig),
            "KUBEML_BIND_ADDRESS": "127.0.0.1",
            "KUBEML_RUNTIME_IMAGE": "ghcr.io/kubeml/runtime:dev",
            # Tests tamper with artifacts and expect the registry to notice within
            # seconds; by default an unchanged artifact is looked at hourly.
            "KUBEML_ARTIFACT_RECHECK_SECONDS": "5",
            # Retention tests expect expired partitions gone within seconds.
            "KUBEML_RETENTION_SWEEP_SECONDS": "2",
            # Gateway API CRDs installed by a test are noticed within seconds (30 s
            # by default), and so is a route's status a Gateway wrote.
            "KUBEML_DISCOVERY_SECONDS": "3",
            **(extra_env or {}),
        }
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.env["KUBEML_HEALTH_PORT"] = str(free_port())
        self.env["KUBEML_METRICS_PORT"] = str(free_port())
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubeml.cli", "operator", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['KUBEML_METRICS_PORT']}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching ``labels`` (0 if it has none yet)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def ready(self) -> bool:
        """Its metrics endpoint answers (the driver has started)."""
        try:
            self.metric("kubeml_operator_queue_depth")
        except OSError:
            return False
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:]
            for p in sorted(self.log_dir.glob("operator-*.log"))
        )

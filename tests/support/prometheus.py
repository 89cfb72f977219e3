"""A real Prometheus for a test: scrape configs for a local cluster's pods, and the
process itself (on a free loopback port, stopped on the way out)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from kubeml_local import cluster
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll
from tests.support.operator import free_port


def pod_job(
    conn: cluster.Connection, namespace: str, *, job: str = "kubeml-pods", labelmap: bool = False
) -> dict[str, Any]:
    """Pods of `namespace` found through the apiserver, kept by their prometheus.io
    annotations, labelled namespace and pod (the labels a ServiceMonitor's scrape adds
    too), and with `labelmap` also by their own labels (kubeml.io/deployment becomes
    kubeml_io_deployment)."""
    pki = Layout.at(conn.state_dir).pki
    server = yaml.safe_load(conn.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    by_labels = [{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}]
    return {
        "job_name": job,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": server,
                "namespaces": {"names": [namespace]},
                "tls_config": {
                    "ca_file": str(pki / "ca.crt"),
                    "cert_file": str(pki / "admin.crt"),
                    "key_file": str(pki / "admin.key"),
                },
            }
        ],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {
                "source_labels": [
                    "__meta_kubernetes_pod_ip",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ],
                "separator": ":",
                "target_label": "__address__",
            },
            *(by_labels if labelmap else []),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def config(*jobs: dict[str, Any], interval: str = "2s") -> dict[str, Any]:
    """A whole config: the scrape jobs, scraped and evaluated every `interval`."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": list(jobs),
    }


@contextmanager
def running(bin_dir: Path, work: Path, conf: dict[str, Any]) -> Iterator[str]:
    """Prometheus (`bin_dir`/prometheus) with config `conf`, its config, data and log
    under `work`; yields its base URL, and stops it on the way out."""
    (work / "prometheus.yml").write_text(yaml.safe_dump(conf))
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(bin_dir / "prometheus"),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_ready(url: str, timeout: float = 60) -> None:
    """Until Prometheus at `url` says it is ready to serve queries."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    poll(ready, timeout=timeout, what="Prometheus ready")

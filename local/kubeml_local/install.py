"""KubeML installed into the local cluster the way a real cluster has it: the Helm chart.

`kubeml local up` runs ``helm upgrade --install`` of ``charts/kubeml`` into the system
namespace, so the operator runs as the chart's own pod under the chart's ServiceAccount and
RBAC, and a user's ``kubectl apply -f examples/iris/`` is all that is left to do. The chart
finds the S3 Secret and settings the cluster bootstrap already put in that namespace; no key
goes into Helm values.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubeml_local.binaries import repo_root
from kubeml_local.cluster import Connection
from kubeml_local.config import S3_OBJECT_NAME, SYSTEM_NAMESPACE

RELEASE = "kubeml"
HELM_TIMEOUT_S = 300.0
Echo = Callable[[str], None]


class InstallError(RuntimeError):
    pass


def chart_dir() -> Path:
    root = repo_root()
    if root is None or not (root / "charts" / "kubeml" / "Chart.yaml").exists():
        raise InstallError(
            "no charts/kubeml here (kubeml-local runs from a source checkout); "
            "use `kubeml local up --no-operator` and run the operator yourself"
        )
    return root / "charts" / "kubeml"


def helm_binary() -> Path:
    """The helm that `make binaries` built (hack/helm/build.sh prints it, building it
    once from the Go module proxy if the cache lacks it)."""
    root = repo_root()
    if root is None:
        raise InstallError("no hack/helm/build.sh here: run from a source checkout")
    out = subprocess.run(
        ["bash", str(root / "hack" / "helm" / "build.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise InstallError(f"hack/helm/build.sh failed (exit {out.returncode})")
    return Path(lines[-1])


def values(conn: Connection) -> dict[str, Any]:
    """The chart's values for this cluster: its S3 server, the Secret bootstrap made.

    One replica: a standby on the same single node survives nothing the supervisor does
    not restart anyway, and costs a second process on a laptop.
    """
    return {
        "s3": {
            "endpoint": conn.s3.endpoint,
            "bucket": conn.s3.bucket,
            "region": conn.s3.region,
            "credentials": {"secretName": S3_OBJECT_NAME, "create": False},
        },
        "operator": {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
    }


def install(conn: Connection, echo: Echo = print) -> None:
    """``helm upgrade --install``: idempotent, so `up` on a running cluster converges."""
    chart = chart_dir()
    helm = helm_binary()
    values_file = conn.state_dir / "kubeml-values.yaml"
    values_file.write_text(yaml.safe_dump(values(conn), sort_keys=False))
    argv = [
        str(helm),
        "upgrade",
        "--install",
        RELEASE,
        str(chart),
        "--kubeconfig",
        str(conn.kubeconfig),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--values",
        str(values_file),
        "--wait",
        "--timeout",
        f"{HELM_TIMEOUT_S:.0f}s",
    ]
    echo(
        f"installing KubeML: helm upgrade --install {RELEASE} charts/kubeml "
        f"-n {SYSTEM_NAMESPACE} (values: {values_file}) ..."
    )
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise InstallError(
            f"helm upgrade --install {RELEASE} failed: {detail[-1] if detail else out.returncode}"
            f" (operator log: kubectl logs -n {SYSTEM_NAMESPACE} deploy/{RELEASE})"
        )
    echo(f"KubeML operator ready in {SYSTEM_NAMESPACE} ({time.monotonic() - t0:.1f}s)")

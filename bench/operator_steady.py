"""The operator at rest: CPU, memory and requests with many unchanged ModelVersions.

Usage: .venv/bin/python bench/operator_steady.py [--state-dir DIR] [--models 30]
           [--versions-per-model 10] [--window 120] [--before REV]

On the local control plane: registers models x versions ModelVersions (real artifact
bytes in the namespace's model space, v1 of each model holding `champion`), waits
until KubeML's operator has verified them all and gone quiet, then measures a window
of --window seconds with nothing changing. Side by side in the same window: a bare
kopf operator watching the same ModelVersions (bench/floor_operator.py), the floor
any kopf operator pays for keeping up.

Reported per operator: CPU seconds and % of one core in the window, resident memory,
and for KubeML the API and S3 requests it made in the window (its own counters).
--before REV also measures KubeML as of git revision REV (in a worktree, its default
settings) in a second window, for the before/after of a change.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from operators import Bench, Process, load_average, table

from kubeml.k8s import objects
from kubeml_local.readiness import poll

ROOT = Path(__file__).resolve().parent.parent


def register(bench: Bench, ns: str, models: int, per_model: int) -> int:
    s3 = bench.conn.s3
    from kubeml_local.s3 import client as s3_client

    store = s3_client(s3)
    base = yaml.safe_load((ROOT / "examples" / "modelversion.yaml").read_text())
    count = 0
    for m in range(models):
        model = f"steady-{m:03d}"
        for v in range(1, per_model + 1):
            data = f"{model}-v{v}".encode() * 64
            sha = hashlib.sha256(data).hexdigest()
            key = f"namespaces/{ns}/models/{model}/{sha}.skops"
            store.put_object(Bucket=s3.bucket, Key=key, Body=data)
            doc = copy.deepcopy(base)
            doc["metadata"] = {"name": f"{model}-v{v}", "namespace": ns}
            doc["spec"].update(model=model, version=v, aliases=["champion"] if v == 1 else [])
            doc["spec"]["artifact"].update(
                uri=f"s3://{s3.bucket}/{key}", sha256=sha, size=len(data)
            )
            objects.create(bench.api, doc)
            count += 1
    return count


def all_verified(bench: Bench, ns: str, count: int) -> bool:
    items = client.CustomObjectsApi(bench.api).list_namespaced_custom_object(
        "kubeml.io", "v1alpha1", ns, "modelversions"
    )["items"]
    ready = [
        i
        for i in items
        if any(
            c["type"] == "Ready" and c["status"] == "True" and c.get("reason") == "Verified"
            for c in (i.get("status") or {}).get("conditions") or []
        )
    ]
    return len(ready) == count


def measure(processes: list[Process], window: float) -> list[dict[str, Any]]:
    def counters(p: Process) -> tuple[float | None, ...]:
        if p.metrics_port is None:
            return (None, None, None)
        return (
            p.metric("kubeml_operator_api_requests_total"),
            p.metric("kubeml_operator_s3_requests_total"),
            p.metric("kubeml_operator_reconciles_total"),
        )

    def delta(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or b is None else f"{b - a:.0f}"

    before = {p.name: (p.cpu_seconds(), counters(p)) for p in processes}
    started = time.monotonic()
    load_start = load_average()
    # The measurement itself: a window of wall time with nothing changing.
    time.sleep(window)
    elapsed = time.monotonic() - started
    rows = []
    for p in processes:
        cpu0, (api0, s30, rec0) = before[p.name]
        api1, s31, rec1 = counters(p)
        cpu = p.cpu_seconds() - cpu0
        rows.append(
            {
                "operator": p.name,
                "CPU s": f"{cpu:.2f}",
                "% of a core": f"{100 * cpu / elapsed:.2f}",
                "RSS MB": f"{p.rss_mb():.0f}",
                "API requests": delta(api0, api1),
                "S3 requests": delta(s30, s31),
                "reconciles": delta(rec0, rec1),
                "load avg": f"{load_start} -> {load_average()}",
            }
        )
    return rows


def before_worktree(rev: str, into: Path) -> str:
    """The operator package as of ``rev`` (a detached worktree); returns its PYTHONPATH."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), rev],
        check=True,
        capture_output=True,
    )
    return str(into / "operator")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--models", type=int, default=30)
    p.add_argument("--versions-per-model", type=int, default=10)
    p.add_argument("--window", type=float, default=120.0)
    p.add_argument("--before", default="", help="also measure KubeML at this git revision")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubeml-bench-steady-"))
    bench = Bench.start(args.state_dir, work)
    ns = ""
    try:
        ns = bench.namespace("steady")
        floor = bench.floor()
        ours = bench.ours()
        started = time.monotonic()
        count = register(bench, ns, args.models, args.versions_per_model)
        poll(
            lambda: all_verified(bench, ns, count),
            timeout=900,
            what="every version verified",
            interval=2.0,
        )
        took = time.monotonic() - started
        print(f"{count} ModelVersions ({args.models} models) verified in {took:.1f} s")
        ours.wait_quiet()
        rows = measure([ours, floor], args.window)
        print(table(rows), flush=True)
        if args.before:
            ours.stop()
            path = before_worktree(args.before, work / "before")
            old = bench.ours(pythonpath=path)
            old.name = f"kubeml at {args.before}"
            # It never goes quiet (that was the point); let it reach its steady rhythm.
            time.sleep(min(args.window, 60))
            rows += measure([old, floor], args.window)
        print(f"\nsteady state, {count} unchanged ModelVersions, {args.window:.0f} s window:\n")
        print(table(rows))
        ours_cpu, floor_cpu = float(rows[0]["CPU s"]), float(rows[1]["CPU s"])
        print(f"\nkubeml / bare kopf CPU: {ours_cpu / max(floor_cpu, 1e-9):.2f}x")
    finally:
        bench.stop(ns)
        if args.before:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "before")],
                check=False,
            )


if __name__ == "__main__":
    main()

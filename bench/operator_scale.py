"""The operator at scale: 1,000 objects at once, beside a bare kopf operator.

Usage: .venv/bin/python bench/operator_scale.py [--objects 1000] [--window 120]
           [--state-dir DIR]

On a local control plane started without its node agent, so every pod stays Pending
and only the control path is measured (default state dir: a fresh temporary one).
KubeML's operator runs with the defaults a user's installation gets; beside it, in
the same cluster at the same time, a bare kopf operator (bench/floor_operator.py,
FLOOR_MODE=jobs) that creates one Job per object and nothing else.

1. 1,000 TrainingRuns against one ready Dataset, created at once (32 threads):
   create-to-Job latency (p50/p99/max) for both, the time until every run has its
   Job and its status, KubeML's API requests per object (its own counter, and the
   apiserver's audit log), CPU seconds and resident memory of both.
2. Rest: with the 1,000 unchanged runs, CPU of both over --window seconds, and
   KubeML's API and S3 requests in it.
3. Restart: KubeML's operator SIGKILLed and started again with the 1,000 existing
   runs: time until it is quiet, Jobs it created (must be 0) and status writes it
   made (must be 0), from the audit log.
4. Arrivals at scale: with the 1,000 runs in place, --arrivals new TrainingRuns created
   one after another at --rate per second (new work arriving at a busy installation):
   create-to-Job latency for both.
5. 1,000 Datasets at once: create-to-Job latency for both (their preparation Jobs).

The Dataset for phase 1 is marked prepared by the benchmark (its status written as
the operator would after a preparation), since no pod can run here.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from operators import Bench, Process, load_average, table

from kubeml.k8s import objects
from kubeml.reconcile import dataset as decide_dataset
from kubeml_local.layout import Layout
from kubeml_local.readiness import poll

API = "kubeml.io/v1alpha1"
SYNTHETIC = {"synthetic": {"task": "classification", "rows": 100, "features": 4, "seed": 1}}


class Arrivals:
    """When the benchmark's watch first saw each Job, by name."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def follow(self, batch: client.BatchV1Api, ns: str) -> None:
        # One LIST, then watches resumed from the last resourceVersion: a re-list of
        # thousands of Jobs at every watch timeout would delay what the watch sees and
        # charge that delay to the operators.
        listed = batch.list_namespaced_job(ns)
        now = time.monotonic()
        with self.lock:
            for job in listed.items:
                self.at.setdefault(job.metadata.name, now)
        rv = listed.metadata.resource_version
        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    batch.list_namespaced_job, ns, resource_version=rv, timeout_seconds=20
                ):
                    obj = event["object"]
                    with self.lock:
                        self.at.setdefault(obj.metadata.name, time.monotonic())
                    rv = obj.metadata.resource_version
                    if self.stop.is_set():
                        w.stop()
            except Exception:
                if self.stop.is_set():
                    return  # the cluster went away after the measurement: nothing to see
                raise

    def count(self, names: list[str]) -> int:
        with self.lock:
            return sum(1 for n in names if n in self.at)


def create_all(bench: Bench, docs: list[dict[str, Any]]) -> dict[str, float]:
    """Create every object from 32 threads; returns when each create call returned."""
    done: dict[str, float] = {}

    def one(doc: dict[str, Any]) -> None:
        objects.create(bench.api, doc)
        done[doc["metadata"]["name"]] = time.monotonic()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, docs))
    return done


def percentiles(values: list[float]) -> str:
    ms = sorted(1000 * v for v in values)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms"


def audited(log: Path, offset: int, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    with log.open("rb") as f:
        f.seek(offset)
        entries = [json.loads(line) for line in f.read().splitlines()]
    return [
        e for e in entries if str(e.get("userAgent", "")).startswith("kubeml-operator") and keep(e)
    ]


def not_watch(e: dict[str, Any]) -> bool:
    return e.get("verb") != "watch"


def prepared_dataset(bench: Bench, ns: str) -> None:
    """A Dataset marked prepared, as the operator records a finished preparation."""
    doc = {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "scale-data", "namespace": ns},
        "spec": {"source": SYNTHETIC, "target": "target"},
    }
    created = objects.create(bench.api, doc)
    version = "a" * 64
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Prepared",
        "message": "prepared by the benchmark",
        "lastTransitionTime": now,
        "observedGeneration": created["metadata"]["generation"],
    }
    status = {
        "observedGeneration": created["metadata"]["generation"],
        "jobName": decide_dataset.job_name("scale-data", doc["spec"]),
        "version": version,
        "conditions": [ready],
    }
    objects.patch_status(bench.api, created, status)


def run_doc(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {"name": f"run-{i:04d}", "namespace": ns},
        "spec": {
            "datasetRef": {"name": "scale-data"},
            "model": f"scale-{i:04d}",
            "estimator": {"name": "logistic-regression"},
        },
    }


def dataset_doc(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": f"data-{i:04d}", "namespace": ns},
        "spec": {"source": SYNTHETIC, "target": "target"},
    }


def burst(
    bench: Bench,
    ns: str,
    docs: list[dict[str, Any]],
    ours_job: Callable[[str], str],
    processes: list[Process],
    layout: Layout,
) -> dict[str, Any]:
    """Create every doc at once; measure both operators until each has its Jobs."""
    arrivals = Arrivals()
    threading.Thread(
        target=arrivals.follow, args=(client.BatchV1Api(bench.api), ns), daemon=True
    ).start()
    ours = processes[0]
    cpu0 = {p.name: p.cpu_seconds() for p in processes}
    api0 = ours.metric("kubeml_operator_api_requests_total") or 0.0
    offset = layout.audit_log.stat().st_size
    started = time.monotonic()
    created = create_all(bench, docs)
    names = list(created)
    mine, floor = [ours_job(n) for n in names], [f"floor-{n}"[:63] for n in names]
    poll(
        lambda: arrivals.count(mine) == len(names), timeout=900, what="KubeML's Jobs", interval=0.5
    )
    all_jobs = time.monotonic() - started
    poll(
        lambda: arrivals.count(floor) == len(names),
        timeout=900,
        what="bare kopf's Jobs",
        interval=0.5,
    )
    kind = docs[0]["kind"]
    poll(
        lambda: statused(bench, ns, kind) == len(names), timeout=900, what="statuses", interval=1.0
    )
    all_status = time.monotonic() - started
    arrivals.stop.set()
    requests = (ours.metric("kubeml_operator_api_requests_total") or 0.0) - api0
    audit = audited(layout.audit_log, offset, not_watch)
    ours_latency = [arrivals.at[ours_job(n)] - created[n] for n in names]
    floor_latency = [arrivals.at[f"floor-{n}"[:63]] - created[n] for n in names]
    per_object = f"{requests / len(names):.2f} (audit log: {len(audit) / len(names):.2f})"
    cpu = " / ".join(f"{p.cpu_seconds() - cpu0[p.name]:.1f}" for p in processes)
    return {
        "kubeml create -> Job": percentiles(ours_latency),
        "bare kopf create -> Job": percentiles(floor_latency),
        "kubeml: every Job / every status": f"{all_jobs:.1f} s / {all_status:.1f} s",
        "kubeml API requests per object": per_object,
        "CPU s (kubeml / bare kopf)": cpu,
        "RSS MB (kubeml / bare kopf)": " / ".join(f"{p.rss_mb():.0f}" for p in processes),
        "load avg": load_average(),
    }


def trickle(
    bench: Bench,
    ns: str,
    docs: list[dict[str, Any]],
    ours_job: Callable[[str], str],
    rate: float,
    existing_jobs: int,
) -> dict[str, Any]:
    """Create docs one by one at ``rate`` per second; measure create -> Job for both."""
    arrivals = Arrivals()
    threading.Thread(
        target=arrivals.follow, args=(client.BatchV1Api(bench.api), ns), daemon=True
    ).start()
    # The watch has listed what exists: from here on, it sees each new Job as it comes.
    poll(lambda: len(arrivals.at) >= existing_jobs, timeout=120, what="the Job watch")
    created: dict[str, float] = {}
    for doc in docs:
        due = time.monotonic() + 1.0 / rate
        objects.create(bench.api, doc)
        created[doc["metadata"]["name"]] = time.monotonic()
        # The arrival rate is the workload being measured, not a wait for a result.
        time.sleep(max(0.0, due - time.monotonic()))
    names = list(created)
    mine, floor = [ours_job(n) for n in names], [f"floor-{n}"[:63] for n in names]
    poll(lambda: arrivals.count(mine + floor) == 2 * len(names), timeout=300, what="the Jobs")
    arrivals.stop.set()
    return {
        "arrivals": f"{len(names)} at {rate:g}/s beside {existing_jobs // 2} existing runs",
        "kubeml create -> Job": percentiles([arrivals.at[ours_job(n)] - created[n] for n in names]),
        "bare kopf create -> Job": percentiles(
            [arrivals.at[f"floor-{n}"[:63]] - created[n] for n in names]
        ),
        "load avg": load_average(),
    }


def statused(bench: Bench, ns: str, kind: str) -> int:
    plural = {"TrainingRun": "trainingruns", "Dataset": "datasets"}[kind]
    items = client.CustomObjectsApi(bench.api).list_namespaced_custom_object(
        "kubeml.io", "v1alpha1", ns, plural
    )["items"]
    return sum(1 for i in items if (i.get("status") or {}).get("jobName"))


def at_rest(processes: list[Process], window: float) -> dict[str, Any]:
    ours = processes[0]
    cpu0 = {p.name: p.cpu_seconds() for p in processes}
    api0 = ours.metric("kubeml_operator_api_requests_total") or 0.0
    s30 = ours.metric("kubeml_operator_s3_requests_total") or 0.0
    # The measurement: a window of wall time with nothing changing.
    time.sleep(window)
    pct = [100 * (p.cpu_seconds() - cpu0[p.name]) / window for p in processes]
    api1 = ours.metric("kubeml_operator_api_requests_total") or 0.0
    s31 = ours.metric("kubeml_operator_s3_requests_total") or 0.0
    return {
        "% of a core (kubeml / bare kopf)": " / ".join(f"{x:.2f}" for x in pct),
        "kubeml API / S3 requests": f"{api1 - api0:.0f} / {s31 - s30:.0f}",
        "RSS MB (kubeml / bare kopf)": " / ".join(f"{p.rss_mb():.0f}" for p in processes),
        "load avg": load_average(),
    }


def restart(
    bench: Bench, old: Process, layout: Layout, count: int, ns: str
) -> tuple[Process, dict[str, Any]]:
    old.proc.send_signal(signal.SIGKILL)
    old.proc.wait()
    offset = layout.audit_log.stat().st_size
    started = time.monotonic()
    new = bench.ours()
    new.wait_quiet()
    took = time.monotonic() - started
    writes = audited(
        layout.audit_log,
        offset,
        lambda e: (
            e.get("verb") in ("create", "patch", "update", "delete")
            and "/events" not in e["requestURI"]
        ),
    )
    jobs = [e for e in writes if e["verb"] == "create" and "/jobs" in e["requestURI"]]
    statuses = [e for e in writes if e["requestURI"].split("?")[0].endswith("/status")]
    listed = client.BatchV1Api(bench.api).list_namespaced_job(ns).items
    ours = sum(1 for j in listed if not j.metadata.name.startswith("floor-"))
    return new, {
        "quiet after": f"{took:.1f} s",
        "Jobs created / status writes": f"{len(jobs)} / {len(statuses)}",
        "KubeML Jobs in the namespace": f"{ours} for {count} runs",
        "load avg": load_average(),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--window", type=float, default=120.0)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--arrivals", type=int, default=100)
    p.add_argument("--rate", type=float, default=5.0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubeml-bench-scale-"))
    state = args.state_dir or work / "cluster"
    bench = Bench.start(state, work, with_agent=False)
    layout = Layout.at(state)
    runs_ns = datasets_ns = ""
    try:
        runs_ns = bench.namespace("scale-runs")
        prepared_dataset(bench, runs_ns)
        floor = bench.floor(mode="jobs")
        ours = bench.ours()
        n = args.objects
        report: list[tuple[str, dict[str, Any]]] = []
        report.append(
            (
                f"{n} TrainingRuns at once",
                burst(
                    bench,
                    runs_ns,
                    [run_doc(runs_ns, i) for i in range(n)],
                    lambda r: f"{r}-train",
                    [ours, floor],
                    layout,
                ),
            )
        )
        print(report[-1], flush=True)
        ours.wait_quiet()
        report.append(
            (f"at rest with {n} runs, {args.window:.0f} s", at_rest([ours, floor], args.window))
        )
        print(report[-1], flush=True)
        ours, restarted = restart(bench, ours, layout, n, runs_ns)
        report.append((f"restart with {n} runs", restarted))
        print(report[-1], flush=True)
        ours.wait_quiet()
        report.append(
            (
                f"{args.arrivals} new TrainingRuns arriving at {n}",
                trickle(
                    bench,
                    runs_ns,
                    [run_doc(runs_ns, n + i) for i in range(args.arrivals)],
                    lambda r: f"{r}-train",
                    args.rate,
                    2 * n,
                ),
            )
        )
        print(report[-1], flush=True)
        datasets_ns = bench.namespace("scale-data")
        report.append(
            (
                f"{n} Datasets at once",
                burst(
                    bench,
                    datasets_ns,
                    [dataset_doc(datasets_ns, i) for i in range(n)],
                    lambda d: decide_dataset.job_name(d, dataset_doc("", 0)["spec"]),
                    [ours, floor],
                    layout,
                ),
            )
        )
        print()
        for title, row in report:
            print(f"### {title}\n")
            print(table([{"measure": k, "value": v} for k, v in row.items()]))
            print()
    finally:
        for ns in (runs_ns, datasets_ns):
            if ns:
                strip_and_delete(bench, ns)
        bench.stop()
        if args.state_dir is None:
            from kubeml_local import cluster

            cluster.down(state, echo=lambda line: None)


def strip_and_delete(bench: Bench, ns: str) -> None:
    client.CoreV1Api(bench.api).delete_namespace(ns)


if __name__ == "__main__":
    main()

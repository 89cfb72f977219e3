"""Apply-to-Job-created latency of a TrainingRun on the local control plane.

Usage: .venv/bin/python bench/job_latency.py [--state-dir DIR] [--runs N]

Starts (or reuses) the local cluster and the operator (with the defaults a user's
installation gets), prepares the iris
Dataset once, then creates N TrainingRuns one after another and reports, for
each, the time from the create call returning to the training Job existing
(observed with a watch, not by polling). Prints p50/p90/max.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client, watch
from operators import Bench

from kubeml.k8s import objects
from kubeml_local.demo import EXAMPLES
from kubeml_local.readiness import poll


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    bench = Bench.start(args.state_dir, Path(tempfile.mkdtemp(prefix="kubeml-bench-jobs-")))
    bench.ours()
    api = bench.api
    batch = client.BatchV1Api(api)
    ns = bench.namespace("bench")
    ds = yaml.safe_load((EXAMPLES / "dataset.yaml").read_text())
    ds["metadata"]["namespace"] = ns
    objects.apply(api, ds)

    def ready() -> bool:
        obj = objects.get(api, "kubeml.io/v1alpha1", "Dataset", ns, "iris") or {}
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (obj.get("status") or {}).get("conditions") or []
        )

    poll(ready, timeout=300, what="iris dataset")
    run = yaml.safe_load((EXAMPLES / "trainingrun.yaml").read_text())
    latencies = []
    for i in range(args.runs):
        doc = copy.deepcopy(run)
        doc["metadata"].update(name=f"lat-{i}", namespace=ns)
        w = watch.Watch()
        start = time.perf_counter()
        objects.request(
            api, "POST", f"/apis/kubeml.io/v1alpha1/namespaces/{ns}/trainingruns", body=doc
        )
        for event in w.stream(
            batch.list_namespaced_job,
            ns,
            timeout_seconds=120,
            label_selector=f"kubeml.io/owner-name=lat-{i}",
        ):
            if event["type"] == "ADDED":
                latencies.append(time.perf_counter() - start)
                w.stop()
        objects.request(
            api, "DELETE", f"/apis/kubeml.io/v1alpha1/namespaces/{ns}/trainingruns/lat-{i}"
        )
    bench.stop(ns)
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"TrainingRun apply -> Job created, {len(ms)} runs: p50 {statistics.median(ms):.0f} ms,"
        f" p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms, max {ms[-1]:.0f} ms"
    )


if __name__ == "__main__":
    main()

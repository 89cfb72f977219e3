"""A distributed search against the one-pod search, on the local control plane.

Usage: .venv/bin/python bench/search_scaling.py [--state-dir DIR] [--rows 4000]

One synthetic Dataset, then the same TrainingRun (a random forest, 24 candidates,
5-fold, seed 0) run one at a time in these shapes:

  one pod, all cores   search.parallelism 1 and the default resources: what a user
                       gets without asking (the search uses every core the pod sees)
  2 / 4 pods, default  search.parallelism 2, 4 and nothing else: each pod, with no CPU
                       limit, uses every core it sees
  1 / 2 / 4 pods x 1   search.parallelism 1, 2, 4 with limits.cpu 1 per pod: each pod
                       scores its share on one core (pods=1 searches in the training
                       Job itself, the others in an Indexed Job before it)

Each run is timed from creation to Succeeded by the operator (`kubeml operator run`,
defaults) with the real node agent and S3; the search Job's and training Job's wall
times come from the Jobs' own start/completion times, and each shard pod's overhead
(pod start: its creation to its container's start, from the API, whole seconds;
interpreter start and imports, and download + verify + parse of the data, from the
shard's report in S3; overhead: the container's run minus scoring) is printed beside
its scoring time. Every
shape must choose the same parameters with the same cross-validated score; the script
checks that. Ratios are against "one pod, all cores". On a single node the pods share
the node's cores: more pods than cores cannot go faster here, only on more nodes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from operators import Bench, load_average, table

from kubeml.k8s import objects
from kubeml.storage import ArtifactStore, S3Settings, parse_uri
from kubeml_local.readiness import poll

API = "kubeml.io/v1alpha1"
SPACE = {
    "max_depth": [4, 8, 12, None],
    "min_samples_leaf": [1, 5, 10],
    "max_features": ["sqrt", 0.5],
}  # 4 x 3 x 2 = 24 candidates


def dataset(ns: str, rows: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"namespace": ns, "name": "scale"},
        "spec": {
            "source": {
                "synthetic": {"task": "classification", "rows": rows, "features": 20, "seed": 0}
            },
            "target": "target",
            "split": {"test": 0.2, "seed": 0},
        },
    }


def run(ns: str, name: str, pods: int, one_core: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "scale"},
        "model": name,
        "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 30}},
        "search": {"space": SPACE, "folds": 5, "seed": 0, "parallelism": pods},
        "metrics": ["accuracy"],
        "activeDeadlineSeconds": 3600,
    }
    if one_core:
        spec["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    return {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


def _t(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _seconds(a: Any, b: Any) -> float:
    return (_t(b) - _t(a)).total_seconds()


def succeeded(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = objects.get(api, API, "TrainingRun", ns, name)
        conds = ((obj or {}).get("status") or {}).get("conditions") or []
        done = next((c for c in conds if c["type"] == "Succeeded"), None)
        if done and done["status"] == "False":
            raise SystemExit(f"{name} failed: {done['reason']}: {done['message']}")
        return obj if done and done["status"] == "True" else None

    return poll(probe, timeout=3600, what=f"TrainingRun {name} Succeeded", interval=1.0)


def job_seconds(api: client.ApiClient, ns: str, name: str) -> float:
    job = client.BatchV1Api(api).read_namespaced_job(name, ns)
    return _seconds(job.status.start_time, job.status.completion_time)


def shard_pods(
    api: client.ApiClient, store: ArtifactStore, ns: str, st: dict[str, Any]
) -> list[dict[str, float]]:
    """Per shard pod: start latency (creation to container start), its in-process load
    time and scoring time, and its container's whole run."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector=f"job-name={st['searchJobName']}"
    )
    _, table_key = parse_uri(st["trials"]["uri"])
    prefix = table_key.removesuffix("trials.parquet")
    out = []
    for pod in pods.items:
        if pod.status.phase != "Succeeded":
            continue  # a retried index: its successful pod is counted
        index = pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        term = pod.status.container_statuses[0].state.terminated
        report = store.get_json(f"{prefix}shards/{index}.json")
        out.append(
            {
                "start": _seconds(pod.metadata.creation_timestamp, term.started_at),
                "run": _seconds(term.started_at, term.finished_at),
                "startup": report["timings"].get("startupSeconds") or 0.0,
                "load": report["timings"]["loadSeconds"],
                "score": report["timings"]["scoreSeconds"],
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--pods", default="1,2,4", help="pod counts to compare")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds, alternating the order; medians shown"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.pods.split(",")]
    shapes = (
        [("one pod, all cores", 1, False)]
        + [(f"{n} pods, default resources", n, False) for n in counts if n > 1]
        + [(f"{n} pod{'s' if n > 1 else ''} x 1 core", n, True) for n in counts]
    )
    workdir = Path(tempfile.mkdtemp(prefix="kubeml-bench-search-"))
    bench = Bench.start(args.state_dir, workdir)
    ns = ""
    try:
        bench.ours()
        ns = bench.namespace("bench-search")
        s3_env = bench.conn.s3.env()
        store = ArtifactStore(S3Settings.from_env(s3_env), env=s3_env)
        objects.create(bench.api, dataset(ns, args.rows))
        poll(
            lambda: (
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (
                        (objects.get(bench.api, API, "Dataset", ns, "scale") or {}).get("status")
                        or {}
                    ).get("conditions")
                    or []
                )
                or None
            ),
            timeout=900,
            what="Dataset Ready",
        )
        print(
            f"# 24 candidates x 5 folds, random forest (30 trees), {args.rows} rows x 20 "
            f"features; load average {load_average()}",
            flush=True,
        )
        results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in shapes}
        for round_ in range(args.repeat):
            # Alternate the order, so no shape always runs at the same point of the
            # machine's (shared, drifting) load.
            order = list(enumerate(shapes))
            for i, (label, pods, one_core) in order if round_ % 2 == 0 else order[::-1]:
                name = f"r{round_}-s{i}-p{pods}"
                started = time.monotonic()
                objects.create(bench.api, run(ns, name, pods, one_core))
                st = succeeded(bench.api, ns, name)["status"]
                wall = time.monotonic() - started
                row: dict[str, Any] = {"wall": wall, "status": st}
                row["train_job"] = job_seconds(bench.api, ns, st["jobName"])
                if st.get("searchJobName"):
                    row["search_job"] = job_seconds(bench.api, ns, st["searchJobName"])
                    row["shards"] = shard_pods(bench.api, store, ns, st)
                results[label].append(row)
                print(
                    f"round {round_ + 1} {label}: {wall:.1f} s to Succeeded "
                    f"(load average {load_average()})",
                    flush=True,
                )
        report(results, args.repeat)
    finally:
        bench.stop(ns)
    return 0


def report(results: dict[str, list[dict[str, Any]]], rounds: int) -> None:
    def med(values: list[float], digits: int = 1) -> str:
        return f"{statistics.median(values):.{digits}f}" if values else "-"

    walls = {label: statistics.median(r["wall"] for r in rs) for label, rs in results.items()}
    base = next(iter(walls.values()))
    best = [
        (r["status"]["bestParams"], r["status"]["trials"]["best"][0]["score"])
        for rs in results.values()
        for r in rs
    ]
    same = all(b == best[0] for b in best)
    rows = []
    for label, rs in results.items():
        shards = [s for r in rs for s in r.get("shards") or []]
        rows.append(
            {
                "shape": label,
                "run wall p50 (s)": f"{walls[label]:.1f}",
                "runs (s)": " / ".join(f"{r['wall']:.0f}" for r in rs),
                "vs one pod, all cores": f"{base / walls[label]:.2f}x",
                "search Job p50 (s)": med([r["search_job"] for r in rs if "search_job" in r]),
                "training Job p50 (s)": med([r["train_job"] for r in rs]),
                "pod start (s)": med([s["start"] for s in shards]),
                "interpreter + imports (s)": med([s["startup"] for s in shards]),
                "data load (s)": med([s["load"] for s in shards], 2),
                "scoring (s)": med([s["score"] for s in shards]),
                "pod overhead (s)": med([s["run"] - s["score"] for s in shards]),
            }
        )
    print(f"\nmedians over {rounds} round(s); per-pod columns: median over every shard pod")
    print(table(rows))
    print()
    print(
        "speedup (median wall, one pod with all cores / shape): "
        + ", ".join(f"{label}: {base / w:.2f}x" for label, w in list(walls.items())[1:])
    )
    print(
        "same parameters and cv score in every run: "
        + ("yes" if same else f"NO: {best}")
        + f" ({best[0][0]}, {best[0][1]:.4f})"
    )


if __name__ == "__main__":
    main()

"""Training benchmark: a random forest fitted by `kubeml train` (the training Job's
program, run as a subprocess with a Job's environment) versus the same fit in a bare
Python process (read the Parquet, RandomForestClassifier.fit), side by side.

    .venv/bin/python bench/train_bench.py                  # 1M x 20, 100 trees
    .venv/bin/python bench/train_bench.py --trees 10       # what fits in ~10 min on 2 cores

Both sides fit on the same train split with the same estimator parameters
(n_estimators, random_state=0, n_jobs bounded to --cpu). The Job side also does what
a training Job must: read the split from S3 and verify its sha256 against the dataset
manifest, evaluate on the test split, serialize the model with skops and upload it,
write the result manifest. The overhead ratio is Job wall time / bare wall time, both
measured from process start to exit. The dataset is prepared first by `kubeml
prepare` (synthetic make_classification, seed 0, 20% test); that time is reported
but is not part of either side. A throwaway SeaweedFS on loopback is the S3 server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeml.storage import ArtifactStore, parse_uri
from kubeml.storage.devserver import SeaweedS3

# The bare side: the least a user could write to fit the same forest on the same file.
BARE = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
t1 = time.perf_counter()
frame = pd.read_parquet(sys.argv[1])
X, y = frame.drop(columns=["target"]).to_numpy(), frame["target"].to_numpy()
t2 = time.perf_counter()
RandomForestClassifier(n_estimators=int(sys.argv[2]), n_jobs=int(sys.argv[3]),
                       random_state=0).fit(X, y)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "fit": t3 - t2}))
"""


def _python() -> str:
    return sys.executable


@dataclass
class Timed:
    wall: float  # seconds, process start to exit
    cpu: float  # user + system seconds of the process and the children it waited for
    detail: dict[str, Any]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[Timed, subprocess.CompletedProcess[str]]:
    # CPU time next to wall time: on a shared machine wall time also measures the
    # neighbours, CPU time mostly measures us.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu, {}), proc


def _check(what: str, proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        sys.exit(f"{what} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")


def prepare(s3: SeaweedS3, rows: int, features: int) -> tuple[dict[str, Any], float]:
    key = f"results/bench/prepare-{uuid.uuid4().hex[:8]}.json"
    spec = {
        "source": {
            "synthetic": {"task": "classification", "rows": rows, "features": features, "seed": 0}
        },
        "target": "target",
        "split": {"test": 0.2, "seed": 0},
    }
    payload = {"namespace": "bench", "name": "synthetic", "generation": 1, "spec": spec}
    env = {
        **os.environ,
        **s3.env(),
        "KUBEML_DATASET": json.dumps(payload),
        "KUBEML_RESULT_KEY": key,
    }
    timed, proc = _run([_python(), "-c", _MAIN.format(module="prepare")], env)
    _check("kubeml prepare", proc)
    result = ArtifactStore(s3.settings(), env=s3.env()).get_json(key)
    return result, timed.wall


_MAIN = "import sys; from kubeml.runtime.{module} import main; sys.exit(main([]))"


def job(s3: SeaweedS3, dataset: dict[str, Any], trees: int, cpu: int) -> Timed:
    key = f"results/bench/train-{uuid.uuid4().hex[:8]}.json"
    request = {
        "namespace": "bench",
        "name": "forest",
        "generation": 1,
        "spec": {
            "datasetRef": {"name": "synthetic"},
            "model": "bench-forest",
            "estimator": {
                "name": "random-forest-classifier",
                "params": {"n_estimators": trees, "random_state": 0},
            },
            "metrics": ["accuracy"],
        },
        "dataset": {"name": "synthetic", "version": dataset["version"], "uri": dataset["uri"]},
        "champion": None,
    }
    env = {
        **os.environ,
        **s3.env(),
        "KUBEML_TRAININGRUN": json.dumps(request),
        "KUBEML_RESULT_KEY": key,
        "KUBEML_CPU_LIMIT": str(cpu),
    }
    timed, proc = _run([_python(), "-m", "kubeml.runtime.train"], env)
    _check("kubeml train", proc)
    timed.detail = ArtifactStore(s3.settings(), env=s3.env()).get_json(key)
    return timed


def bare(train_path: Path, trees: int, cpu: int) -> Timed:
    timed, proc = _run(
        [_python(), "-c", BARE, str(train_path), str(trees), str(cpu)], dict(os.environ)
    )
    _check("bare fit", proc)
    timed.detail = json.loads(proc.stdout.strip().splitlines()[-1])
    return timed


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--cpu", type=int, default=2, help="cores for both sides (n_jobs)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per side, alternating order; best is shown"
    )
    args = parser.parse_args()

    print(
        f"# random forest, {args.trees} trees, {args.rows:,} rows x {args.features} features, "
        f"{args.cpu} core(s); Python {platform.python_version()} on {os.cpu_count()} CPUs; "
        f"load average {_load()}",
        flush=True,
    )
    jobs: list[Timed] = []
    bares: list[Timed] = []
    with SeaweedS3() as s3, tempfile.TemporaryDirectory(prefix="kubeml-bench-") as tmp:
        dataset, prep_s = prepare(s3, args.rows, args.features)
        rows = dataset["rows"]
        print(
            f"prepared version {dataset['version'][:12]} in {prep_s:.1f} s "
            f"(train {rows['train']:,}, test {rows['test']:,})",
            flush=True,
        )
        store = ArtifactStore(s3.settings(), env=s3.env())
        train_info = dataset["files"]["train"]
        train_path = Path(tmp) / "train.parquet"
        store.download_file(
            parse_uri(train_info["uri"])[1], train_path, expected_sha256=train_info["sha256"]
        )
        for i in range(args.repeat):
            # Alternate which side goes first so neither always gets the warm cache.
            for side in ("bare", "job") if i % 2 == 0 else ("job", "bare"):
                if side == "bare":
                    bares.append(bare(train_path, args.trees, args.cpu))
                    t = bares[-1]
                else:
                    jobs.append(job(s3, dataset, args.trees, args.cpu))
                    t = jobs[-1]
                print(
                    f"run {i + 1} {side}: wall {t.wall:.1f} s, cpu {t.cpu:.1f} s "
                    f"(load average {_load()})",
                    flush=True,
                )
    report(jobs, bares)
    return 0


def report(jobs: list[Timed], bares: list[Timed]) -> None:
    j = min(jobs, key=lambda t: t.wall)
    b = min(bares, key=lambda t: t.wall)
    t = j.detail["timings"]
    d = b.detail
    accounted = t["loadSeconds"] + t["fitSeconds"] + t["evaluateSeconds"]
    size_mb = j.detail["artifact"]["size"] / 1e6
    lines = [
        ("", "kubeml train (Job)", "bare python"),
        ("wall time, process start to exit", f"{j.wall:.1f} s", f"{b.wall:.1f} s"),
        (
            "  load train split",
            f"{t['loadSeconds']:.1f} s (S3 + sha256)",
            f"{d['load']:.1f} s (local file)",
        ),
        ("  fit", f"{t['fitSeconds']:.1f} s", f"{d['fit']:.1f} s"),
        ("  evaluate on test", f"{t['evaluateSeconds']:.1f} s", "-"),
        (
            "  start, imports, save + upload model",
            f"{j.wall - accounted:.1f} s ({size_mb:.0f} MB skops)",
            f"{b.wall - d['load'] - d['fit']:.1f} s (start, imports)",
        ),
        ("cpu time (user + system)", f"{j.cpu:.1f} s", f"{b.cpu:.1f} s"),
    ]
    print(f"\nbest of {len(jobs)} run(s) per side")
    for a, x, c in lines:
        print(f"{a:<38}{x:<32}{c}")
    print()
    print(f"overhead ratio (wall, Job / bare): {j.wall / b.wall:.2f}x")
    print(f"overhead ratio (cpu, Job / bare):  {j.cpu / b.cpu:.2f}x")
    print(f"fit ratio (fit only, Job / bare):  {t['fitSeconds'] / d['fit']:.2f}x")
    if len(jobs) > 1:
        print(
            f"median wall: Job {statistics.median(x.wall for x in jobs):.1f} s, "
            f"bare {statistics.median(x.wall for x in bares):.1f} s"
        )
    print(f"test accuracy: {j.detail['metrics']['test']['accuracy']:.4f}")


if __name__ == "__main__":
    sys.exit(main())

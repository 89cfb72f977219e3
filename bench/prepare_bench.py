"""Benchmark: prepare a synthetic 1,000,000 x 20 Dataset, and compare its S3 uploads
with a plain boto3 ``upload_file`` of the same bytes to the same server.

    python bench/prepare_bench.py [--rows 1000000] [--features 20] [--rounds 3]

Uses the S3 server named by $AWS_ENDPOINT_URL (with $AWS_ACCESS_KEY_ID and
$AWS_SECRET_ACCESS_KEY) if set, else starts a SeaweedFS on loopback for the run.

1. The preparation runs in a child process through ``prepare_dataset``, the function
   ``kubeml prepare`` runs, so that its peak RSS is its own (not the server's or ours).
2. Its published files are downloaded (sha256-verified) and uploaded again, in
   alternating rounds: once by ``kubeml.runtime.publish`` (our path: sha256 metadata,
   multipart tuning, manifest) and once by plain boto3 ``upload_file`` per file with
   boto3's defaults. Target: our throughput >= 0.8 x boto3's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RATIO_TARGET = 0.8


def child(rows: int, features: int, trace: bool) -> None:
    """Prepare once and print timings, peak memory and the result as JSON."""
    if trace:
        import tracemalloc

        tracemalloc.start()
    from kubeml.runtime.prepare import prepare_dataset
    from kubeml.runtime.prepare_request import read_request
    from kubeml.storage import ArtifactStore, S3Settings

    spec = {
        "source": {
            "synthetic": {"task": "classification", "rows": rows, "features": features, "seed": 7}
        },
        "target": "target",
        "split": {"validation": 0.1, "test": 0.2},
    }
    env = dict(os.environ)
    env["KUBEML_DATASET"] = json.dumps({"namespace": "bench", "name": "bench", "spec": spec})
    store = ArtifactStore(S3Settings.from_env(env), env=env)
    started = time.perf_counter()
    outcome = prepare_dataset(read_request(env), store, env)
    wall = time.perf_counter() - started
    report: dict[str, Any] = {
        "wall": wall,
        "timings": outcome.timings,
        "uploaded_bytes": outcome.uploaded_bytes,
        # Linux reports ru_maxrss in KiB.
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "result": outcome.result,
    }
    if trace:
        report["traced_peak"] = tracemalloc.get_traced_memory()[1]
    print(json.dumps(report))


def run_child(env: dict[str, str], rows: int, features: int, trace: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--rows", str(rows), "--features", str(features)]
    if trace:
        cmd.append("--tracemalloc")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"preparation failed ({proc.returncode}):\n{proc.stderr}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not report["result"].get("ok"):
        sys.exit(f"preparation failed: {report['result']}")
    return report


def compare_uploads(env: dict[str, str], version: str, rounds: int) -> dict[str, list[float]]:
    import boto3

    from kubeml.data.files import WrittenFile
    from kubeml.runtime.publish import publish, version_prefix
    from kubeml.storage import ArtifactStore, S3Settings

    store = ArtifactStore(S3Settings.from_env(env), env=env)
    plain = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    )
    manifest = store.get_json(version_prefix(version) + "manifest.json")
    out: dict[str, list[float]] = {"ours": [], "boto3": []}
    with tempfile.TemporaryDirectory(prefix="kubeml-bench-") as tmp:
        files = []
        for name, f in sorted(manifest["files"].items()):
            path = Path(tmp) / name
            store.download_file(version_prefix(version) + name, path, expected_sha256=f["sha256"])
            files.append(WrittenFile(name, path, int(f["size"]), str(f["sha256"])))
        total = sum(f.size for f in files)

        def ours() -> float:
            started = time.perf_counter()
            done = publish(store, f"bench-{uuid.uuid4().hex}", files, {})
            assert not done.reused
            return total / (time.perf_counter() - started)

        def peer() -> float:
            prefix = f"bench-boto3/{uuid.uuid4().hex}/"
            started = time.perf_counter()
            for f in files:
                plain.upload_file(str(f.path), store.bucket, prefix + f.name)
            return total / (time.perf_counter() - started)

        for i in range(rounds):
            # Alternate who goes first so that server warm-up favours neither.
            order = (
                (("ours", ours), ("boto3", peer))
                if i % 2 == 0
                else (("boto3", peer), ("ours", ours))
            )
            for label, fn in order:
                out[label].append(fn())
    return out


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python heap peak")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.features, args.tracemalloc)
        return 0

    from kubeml.storage import ArtifactStore, S3Settings
    from kubeml.storage.devserver import from_env_or_start

    server, s3_env = from_env_or_start()
    try:
        # A fresh bucket: the version is new there, so the preparation really uploads.
        env = {**os.environ, **s3_env, "KUBEML_BUCKET": f"kubeml-bench-{uuid.uuid4().hex[:8]}"}
        warm = ArtifactStore(S3Settings.from_env(env), env=env)
        warm.ensure_bucket()
        # SeaweedFS grows a new bucket's volumes on its first write (seconds): do that
        # now so the preparation's upload is not charged for it.
        warm.put_bytes("bench-warmup", os.urandom(1 << 20))
        where = "SeaweedFS started for this run" if server else "S3 from the environment"
        print(f"S3: {env['AWS_ENDPOINT_URL']} ({where}), bucket {env['KUBEML_BUCKET']}")
        print(f"preparing synthetic {args.rows:,} x {args.features} ...", flush=True)
        report = run_child(env, args.rows, args.features, args.tracemalloc)
        result, t = report["result"], report["timings"]
        in_prepare = report["uploaded_bytes"] / t["upload"]
        print(f"comparing uploads of the same files, {args.rounds} rounds ...", flush=True)
        speeds = compare_uploads(env, result["version"], args.rounds)
    finally:
        if server is not None:
            server.stop()

    ours, peer = statistics.median(speeds["ours"]), statistics.median(speeds["boto3"])
    ratio = ours / peer
    rows = result["rows"]
    print()
    print(
        f"version {result['version'][:12]}  rows {rows['total']:,} "
        f"(train {rows['train']:,}, validation {rows['validation']:,}, test {rows['test']:,})"
    )
    print(f"{'phase':<28}{'seconds':>10}")
    for phase in ("fetch", "validate", "write", "upload"):
        print(f"{phase:<28}{t[phase]:>10.2f}")
    print(f"{'wall (prepare_dataset)':<28}{report['wall']:>10.2f}")
    print(f"{'peak RSS of the job (MB)':<28}{mb(report['max_rss']):>10}")
    if "traced_peak" in report:
        print(f"{'traced Python heap (MB)':<28}{mb(report['traced_peak']):>10}")
    print(f"{'bytes uploaded (MB)':<28}{mb(report['uploaded_bytes']):>10}")
    print()
    print(f"{'upload throughput':<28}{'MB/s':>10}{'ratio':>10}")
    print(f"{'boto3 upload_file (peer)':<28}{mb(peer):>10}{1.0:>10.2f}")
    print(f"{'kubeml publish':<28}{mb(ours):>10}{ratio:>10.2f}")
    print(f"{'kubeml, inside prepare':<28}{mb(in_prepare):>10}{in_prepare / peer:>10.2f}")
    print(
        f"rounds (MB/s) ours {[round(s / 1e6, 1) for s in speeds['ours']]}, "
        f"boto3 {[round(s / 1e6, 1) for s in speeds['boto3']]}"
    )
    verdict = "meets" if ratio >= RATIO_TARGET else "MISSES"
    print(f"ratio {ratio:.2f} {verdict} the target of {RATIO_TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Request capture's cost: the model server with capture at 100% beside the same
server with capture off, side by side in one run, and the S3 bytes per 1,000
captured requests.

    .venv/bin/python bench/capture_bench.py                 # about 4 minutes
    .venv/bin/python bench/capture_bench.py --duration 20 --rounds 4

Every server runs the serving benchmark's model (a 100-tree random forest on iris)
with exactly what a kubeml.io Deployment gives its pods by default: the server
tuning from ServerOptions() and, for the capturing ones, the capture settings from
spec.capture: {} (100%, every input kept), through the functions the operator uses.
Two servers of each kind (--instances) start first: identical processes land a few
percent apart on this machine, so one of each would measure the two processes as
much as capture. Then round by round each is loaded in turn with wrk (32 keep-alive
connections, one-row v2 requests) while the others sit idle, the order rotated each
round. The two capture-off servers, compared like capture on against off, give the
run's noise floor.
Captures go to a throwaway SeaweedFS on loopback. After the load the capturing
server is stopped (SIGTERM flushes its buffer) and the objects under its prefix are
summed: bytes per 1,000 requests are what S3 really stores.

Targets (issue 15): p99 no more than 10% worse, throughput no more than 10% lower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serving"))

import run as serving  # noqa: E402 - the serving benchmark's servers and load

PREFIX = "namespaces/bench/captures/iris/"
CONNECTIONS = 32


def capture_env(bucket: str) -> dict[str, str]:
    """spec.capture: {} as the operator turns it into a pod's environment."""
    from kubeml.api.deployment import Capture, DeploymentSpec
    from kubeml.reconcile.server_objects import capture_env as pod_env

    spec = DeploymentSpec(model="iris", version=1, capture=Capture())
    env = {e["name"]: e["value"] for e in pod_env(spec, "bench", "iris", bucket) if "value" in e}
    env["KUBEML_POD_NAME"] = "bench-0"  # a fieldRef in a pod
    # The benchmark owns this bucket: point the prefixes at it, keep every setting.
    return env


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (the server alone, without its writer child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / serving.os.sysconf("SC_CLK_TCK")


def stored_bytes(s3: Any, bucket: str) -> tuple[int, int]:
    """(objects, bytes) under the capture prefix."""
    from kubeml.storage import ArtifactStore

    store = ArtifactStore(s3.settings(), env=s3.env())
    objects = list(store.list_prefix(PREFIX))
    return len(objects), sum(o.size for o in objects)


def captured_records(s3: Any) -> int:
    import io

    import pyarrow.parquet as pq

    from kubeml.storage import ArtifactStore

    store = ArtifactStore(s3.settings(), env=s3.env())
    return sum(
        pq.read_metadata(io.BytesIO(store.get_bytes(o.key))).num_rows
        for o in store.list_prefix(PREFIX)
    )


def median_ratio(on: list[float], off: list[float]) -> float:
    return statistics.median(on) / statistics.median(off)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=40.0, help="measured seconds per server")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--instances", type=int, default=2, help="servers of each kind (at least 2)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--no-feedback",
        action="store_true",
        help="capture without the feedback endpoint (to attribute the cost)",
    )
    args = p.parse_args()
    if args.instances < 2:
        p.error("--instances must be at least 2 (two capture-off servers give the noise floor)")
    if args.rounds < 2:
        p.error("--rounds must be at least 2 (the rounds' ratios give the spread)")
    wrk = serving.ensure_wrk()
    serving.WORK.mkdir(parents=True, exist_ok=True)
    model = serving.train()
    s3 = serving.start_s3(model)
    bucket = s3.settings().bucket
    servers = []
    for i in range(args.instances):
        for kind in ("off", "on"):
            s = serving.kubeml_server(model, s3.env(), bucket, "native")
            s.name = f"capture-{kind}-{i + 1}"
            if kind == "on":
                s.env.update(capture_env(bucket))
                s.env["KUBEML_POD_NAME"] = f"bench-{i}"
                if args.no_feedback:
                    s.env.pop("KUBEML_FEEDBACK_URI")
            servers.append(s)
    body = serving.WORK / "body-1.json"
    body.write_bytes(serving.request_body(model.X, 1))
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    try:
        for s in servers:
            s.start()
        serving.log(f"{len(servers)} servers ready; load average {serving.load_average()}")
        seconds = args.duration / args.rounds
        for r in range(args.rounds):
            # Each round loads every server once, the order rotated round by round:
            # the machine's drift and each position in a round hit every server alike.
            k = r % len(servers)
            for s in servers[k:] + servers[:k]:
                url = f"{s.base}/v2/models/{serving.MODEL}/infer"
                serving.run_wrk(wrk, url, body, CONNECTIONS, args.warmup)
                assert s.proc is not None
                cpu0 = serving.group_cpu_seconds(s.proc.pid)
                own0 = process_cpu_seconds(s.proc.pid)
                res = serving.run_wrk(wrk, url, body, CONNECTIONS, seconds)
                # CPU per request: far less sensitive to the machine's other load.
                res["cpu_s"] = serving.group_cpu_seconds(s.proc.pid) - cpu0
                # The server process alone: what competes with requests for its GIL
                # (the capture writer is a child process with its own).
                res["own_cpu_s"] = process_cpu_seconds(s.proc.pid) - own0
                res["round"] = r
                results[s.name].append(res)
                serving.log(
                    f"round {r + 1} {s.name:13s} {res['rps']:7.0f} req/s  "
                    f"p99 {res['p99_us'] / 1000:6.2f} ms  errors "
                    f"{res['status_errors'] + res['socket_errors']}"
                )
        on_servers = [s for s in servers if "-on-" in s.name]
        sent = sum(x["requests"] for s in on_servers for x in results[s.name])
        for s in on_servers:
            s.stop()  # SIGTERM: the buffer is flushed before exit
        objects, nbytes = stored_bytes(s3, bucket)
        records = captured_records(s3)
    finally:
        for s in servers:
            s.stop()
        s3.stop()

    def rounds_of(kind: str, instance: int | None = None) -> list[dict[str, Any]]:
        return [
            x
            for name, rs in results.items()
            if f"-{kind}-" in name and (instance is None or name.endswith(f"-{instance}"))
            for x in rs
        ]

    summary = {}
    for kind in ("off", "on"):
        rounds = rounds_of(kind)
        reqs = sum(x["requests"] for x in rounds)
        secs = sum(x["duration_us"] for x in rounds) / 1e6
        summary[kind] = {
            "rps": reqs / secs,
            # The median of every (server, round) p99: one bad round of one server
            # (the host's noise) moves it far less than the pooled tail would.
            "p99_ms": statistics.median(x["p99_us"] for x in rounds) / 1000,
            "p50_ms": statistics.median(x["p50_us"] for x in rounds) / 1000,
            "errors": sum(x["status_errors"] + x["socket_errors"] for x in rounds),
            "cpu_ms": sum(x["cpu_s"] for x in rounds) / max(1, reqs) * 1e3,
            "own_cpu_ms": sum(x["own_cpu_s"] for x in rounds) / max(1, reqs) * 1e3,
        }
    a, b = summary["off"], summary["on"]
    print(
        f"\n{args.instances} servers of each kind x {args.rounds} rounds of {seconds:.0f} s "
        f"(32 connections, 1-row requests)\n"
    )
    print("| capture | req/s | p50 | p99 | CPU/request | errors |")
    print("|---|---|---|---|---|---|")
    for kind, row in summary.items():
        print(
            f"| {kind} | {row['rps']:,.0f} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
            f"| {row['cpu_ms']:.3f} ms | {row['errors']} |"
        )
    # The same comparison between two servers that differ in nothing: how far apart
    # identical servers land on this machine in this run (the noise floor).
    off1, off2 = rounds_of("off", 1), rounds_of("off", 2)
    floor_p99 = median_ratio([x["p99_us"] for x in off2], [x["p99_us"] for x in off1])
    floor_thr = sum(x["requests"] for x in off2) / sum(x["requests"] for x in off1)
    print(
        f"\nnoise floor, capture-off-2 against capture-off-1 (identical servers): "
        f"p99 {floor_p99:.3f}x, throughput {floor_thr:.3f}x"
    )
    print(f"CPU per request on/off: {b['cpu_ms'] / a['cpu_ms']:.3f}x")
    print(
        f"CPU per request of the server process alone (without the writer child) on/off: "
        f"{b['own_cpu_ms'] / a['own_cpu_ms']:.3f}x ({b['own_cpu_ms']:.3f} against "
        f"{a['own_cpu_ms']:.3f} ms)"
    )
    per_round = [
        median_ratio(
            [x["p99_us"] for x in rounds_of("on") if x["round"] == r],
            [x["p99_us"] for x in rounds_of("off") if x["round"] == r],
        )
        for r in range(args.rounds)
    ]
    # The spread says how far one run can be trusted: the host's speed drifts from
    # round to round far more than capture costs.
    q1, paired, q3 = statistics.quantiles(per_round, n=4)
    print(f"p99 on/off, median of the rounds' ratios: {paired:.3f}x (quartiles {q1:.3f}-{q3:.3f})")
    thr = b["rps"] / a["rps"]
    p99 = b["p99_ms"] / a["p99_ms"]
    print(f"throughput on/off: {thr:.3f}x (target >= 0.90: {'met' if thr >= 0.9 else 'MISSED'})")
    print(f"p99 on/off:        {p99:.3f}x (target <= 1.10: {'met' if p99 <= 1.1 else 'MISSED'})")
    print(
        f"captured {records:,} records of {sent:,} requests measured (plus warm-ups) in "
        f"{objects} objects, {nbytes:,} bytes: {nbytes / max(1, records) * 1000:,.0f} bytes "
        "per 1,000 captured requests"
    )
    print(f"load average at the end: {serving.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

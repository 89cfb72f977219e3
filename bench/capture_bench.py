"""Request capture's cost: the model server with capture at 100% beside the same
server with capture off, side by side in one run, and the S3 bytes per 1,000
captured requests.

    .venv/bin/python bench/capture_bench.py                 # about 2 minutes
    .venv/bin/python bench/capture_bench.py --duration 20 --rounds 4

Both servers run the serving benchmark's model (a 100-tree random forest on iris)
with exactly what a kubeml.io Deployment gives its pods by default: the server
tuning from ServerOptions() and the capture settings from spec.capture: {} (100%,
every input kept), through the functions the operator uses. Both start first; then
round by round each is loaded in turn with wrk (32 keep-alive connections, one-row
v2 requests) while the other sits idle, so the two are measured seconds apart.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=40.0, help="measured seconds per server")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--no-feedback",
        action="store_true",
        help="capture without the feedback endpoint (to attribute the cost)",
    )
    args = p.parse_args()
    wrk = serving.ensure_wrk()
    serving.WORK.mkdir(parents=True, exist_ok=True)
    model = serving.train()
    s3 = serving.start_s3(model)
    bucket = s3.settings().bucket
    off = serving.kubeml_server(model, s3.env(), bucket, "native")
    on = serving.kubeml_server(model, s3.env(), bucket, "native")
    off.name, on.name = "capture-off", "capture-on"
    on.env.update(capture_env(bucket))
    if args.no_feedback:
        on.env.pop("KUBEML_FEEDBACK_URI")
    servers = [off, on]
    body = serving.WORK / "body-1.json"
    body.write_bytes(serving.request_body(model.X, 1))
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    try:
        for s in servers:
            s.start()
        serving.log(f"both servers ready; load average {serving.load_average()}")
        seconds = args.duration / args.rounds
        for r in range(args.rounds):
            # Alternate who goes first: drift in the machine's load hits both alike.
            for s in servers if r % 2 == 0 else servers[::-1]:
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
                res["load"] = serving.os.getloadavg()[0]
                results[s.name].append(res)
                serving.log(
                    f"round {r + 1} {s.name:11s} {res['rps']:7.0f} req/s  "
                    f"p99 {res['p99_us'] / 1000:6.2f} ms  errors "
                    f"{res['status_errors'] + res['socket_errors']}"
                )
        sent = sum(x["requests"] for x in results["capture-on"])
        on.stop()  # SIGTERM: the buffer is flushed before exit
        objects, nbytes = stored_bytes(s3, bucket)
        records = captured_records(s3)
    finally:
        for s in servers:
            s.stop()
        s3.stop()
    summary = {}
    for name, rounds in results.items():
        reqs = sum(x["requests"] for x in rounds)
        secs = sum(x["duration_us"] for x in rounds) / 1e6
        summary[name] = {
            "rps": reqs / secs,
            "p99_ms": statistics.median(x["p99_us"] for x in rounds) / 1000,
            "p50_ms": statistics.median(x["p50_us"] for x in rounds) / 1000,
            "errors": sum(x["status_errors"] + x["socket_errors"] for x in rounds),
            "cpu_ms": sum(x["cpu_s"] for x in rounds) / max(1, reqs) * 1e3,
            "own_cpu_ms": sum(x["own_cpu_s"] for x in rounds) / max(1, reqs) * 1e3,
        }
    a, b = summary["capture-off"], summary["capture-on"]
    print(f"\n| capture | req/s (c={CONNECTIONS}, 1 row) | p50 | p99 | CPU/request | errors |")
    print("|---|---|---|---|---|---|")
    for name, row in summary.items():
        print(
            f"| {name} | {row['rps']:,.0f} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
            f"| {row['cpu_ms']:.3f} ms | {row['errors']} |"
        )
    # Rounds are paired (run back to back): the median of per-round ratios is less
    # exposed to the machine's load drifting between rounds than ratios of totals.
    paired_p99 = statistics.median(
        y["p99_us"] / x["p99_us"]
        for x, y in zip(results["capture-off"], results["capture-on"], strict=True)
    )
    print(f"\nCPU per request on/off: {b['cpu_ms'] / a['cpu_ms']:.3f}x")
    print(
        f"CPU per request of the server process alone (without the writer child) on/off: "
        f"{b['own_cpu_ms'] / a['own_cpu_ms']:.3f}x ({b['own_cpu_ms']:.3f} against "
        f"{a['own_cpu_ms']:.3f} ms)"
    )
    print(f"p99 on/off, median of paired rounds: {paired_p99:.3f}x")
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

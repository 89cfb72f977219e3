"""What a forwarded request costs: the canary answered directly vs through a stable
server that forwards it (the exact-share path of a canary Deployment), side by side.

    .venv/bin/python bench/serving/forward.py                 # ~2 minutes
    .venv/bin/python bench/serving/forward.py --duration 5 --loads 1x1

Three KubeML servers on loopback with a Deployment's default settings (the same
environment the operator gives its pods, from the API model), all serving the same
100-tree forest as run.py: ``canary`` (v2); ``forwarding``, a stable server (v1) told
to forward 100% of requests to the canary; and ``stable``, the same stable server
forwarding nothing (what a request answered by stable costs). wrk (one thread,
keep-alive connections) posts the same v2 body to each in turn, round by round.
Prints p50/p99 per path, the added latency of the extra hop at p50, and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  - the serving benchmark's setup, shared

PATHS = ("direct", "forwarded", "stable")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=12.0, help="seconds per path and load")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--loads", default="1x1,32x1", help="connections x rows, comma-separated")
    args = p.parse_args()
    loads = run.parse_loads(args.loads)
    wrk = run.ensure_wrk()
    run.WORK.mkdir(parents=True, exist_ok=True)
    model = run.train()
    s3 = run.start_s3(model)
    servers: list[run.Server] = []
    try:
        s3_env, bucket = s3.env(), s3.settings().bucket
        canary = run.kubeml_server(model, s3_env, bucket, "native")
        canary.name = "canary"
        canary.env["KUBEML_MODEL_VERSION"] = "2"
        forwarding = run.kubeml_server(model, s3_env, bucket, "native")
        forwarding.name = "forwarding"
        forwarding.env.update(
            KUBEML_CANARY_URL=f"http://127.0.0.1:{canary.port}",
            KUBEML_CANARY_PERCENT="100",
            KUBEML_CANARY_VERSION="2",
        )
        stable = run.kubeml_server(model, s3_env, bucket, "native")
        stable.name = "stable"
        servers = [canary, forwarding, stable]
        for s in servers:
            s.start()
        urls = {
            "direct": f"{canary.base}/v2/models/{run.MODEL}/infer",
            "forwarded": f"{forwarding.base}/v2/models/{run.MODEL}/infer",
            "stable": f"{stable.base}/v2/models/{run.MODEL}/infer",
        }
        results: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        for conns, rows in loads:
            body = run.WORK / f"forward-body-{rows}.json"
            body.write_bytes(run.request_body(model.X, rows))
            for r in range(args.rounds):
                for path in PATHS:
                    run.log(f"round {r + 1}: {path} c={conns} rows={rows}")
                    run.run_wrk(wrk, urls[path], body, conns, 1.0)  # warm-up
                    res = run.run_wrk(wrk, urls[path], body, conns, args.duration / args.rounds)
                    results.setdefault((path, conns, rows), []).append(res)
        print(report(results, loads, args))
    finally:
        for s in servers:
            s.stop()
        s3.stop()
    return 0


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def report(
    results: dict[tuple[str, int, int], list[dict[str, Any]]],
    loads: list[tuple[int, int]],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"forwarding cost: {args.duration:g} s per path and load in {args.rounds} rounds; "
        f"load average now {run.load_average()}",
        "",
        "| path | connections | rows | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for conns, rows in loads:
        for path in PATHS:
            rs = results[(path, conns, rows)]
            rps = sum(r["requests"] for r in rs) / sum(r["duration_us"] / 1e6 for r in rs)
            errors = sum(r["status_errors"] + r["socket_errors"] for r in rs)
            lines.append(
                f"| {path} | {conns} | {rows} | {rps:.0f} | {_median(rs, 'p50_us') / 1000:.2f} "
                f"| {_median(rs, 'p99_us') / 1000:.2f} | {errors} |"
            )
    lines.append("")
    for conns, rows in loads:
        d, f = results[("direct", conns, rows)], results[("forwarded", conns, rows)]
        added = (_median(f, "p50_us") - _median(d, "p50_us")) / 1000
        lines.append(
            f"c={conns} rows={rows}: forwarded/direct p50 "
            f"{_median(f, 'p50_us') / _median(d, 'p50_us'):.2f}x (added {added:+.2f} ms, "
            f"target <= 1 ms: {'met' if added <= 1.0 else 'NOT met'}), p99 "
            f"{_median(f, 'p99_us') / _median(d, 'p99_us'):.2f}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Closed-loop gRPC load for the serving benchmark (wrk speaks only HTTP/1.1).

    python grpc_load.py HOST:PORT MODEL CONNECTIONS ROWS SECONDS [--check PRED.json]

CONNECTIONS callers, each on its own channel (as wrk's connections are), send
ModelInfer one after another for SECONDS with the same request: one [ROWS, 4] FP64
tensor in the typed ``fp64_contents`` field (every Open Inference Protocol server
reads it). Messages come from tritonclient's generated modules. Prints one line
``RESULT {json}`` in the shape post.lua prints for wrk. With --check, first compares
one answer's predictions with the list in PRED.json and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from sklearn.datasets import load_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


def request(model: str, rows: int) -> Any:
    X = load_iris().data
    batch = X[[i % len(X) for i in range(rows)]]
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[rows, 4])
    tensor.contents.fp64_contents.extend(batch.ravel().tolist())
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def predictions(resp: Any) -> list[int]:
    out = resp.outputs[0]
    if resp.raw_output_contents:
        dtype = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4"}[out.datatype]
        return [int(v) for v in np.frombuffer(resp.raw_output_contents[0], dtype=dtype)]
    c = out.contents
    values = c.int64_contents or c.int_contents or c.fp64_contents or c.fp32_contents
    return [int(v) for v in values]


async def caller(target: str, req: Any, until: float, latencies: list[float]) -> int:
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                await stub.ModelInfer(req, timeout=10)
                latencies.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError:
                errors += 1
    return errors


async def main_async(args: argparse.Namespace) -> int:
    req = request(args.model, args.rows)
    if args.check:
        async with grpc.aio.insecure_channel(args.target) as channel:
            resp = await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=30)
        want = json.loads(Path(args.check).read_text())[: args.rows]
        got = predictions(resp)
        if got != want:
            print(f"gRPC predictions {got} differ from the model's {want}", file=sys.stderr)
            return 1
        return 0
    latencies: list[float] = []
    start = time.monotonic()
    until = start + args.seconds
    errors = await asyncio.gather(
        *(caller(args.target, req, until, latencies) for _ in range(args.connections))
    )
    duration = time.monotonic() - start
    lat = np.asarray(latencies) * 1e6
    result = {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "status_errors": int(sum(errors)),
        "socket_errors": 0,
        "p50_us": int(np.percentile(lat, 50)) if lat.size else 0,
        "p90_us": int(np.percentile(lat, 90)) if lat.size else 0,
        "p99_us": int(np.percentile(lat, 99)) if lat.size else 0,
        "mean_us": float(lat.mean()) if lat.size else 0.0,
        "max_us": int(lat.max()) if lat.size else 0,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target")
    p.add_argument("model")
    p.add_argument("connections", type=int)
    p.add_argument("rows", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--check", help="JSON list of the model's predictions")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

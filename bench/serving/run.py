"""Serving benchmark: KubeML's model server vs MLServer (default and adaptive batching)
vs a bare uvicorn + Starlette endpoint, side by side in one run, over HTTP and gRPC.

    .venv/bin/python bench/serving/run.py            # everything, ~6 minutes
    .venv/bin/python bench/serving/run.py --duration 5 --servers kubeml,bare

Same model (a 100-tree RandomForestClassifier on iris, random_state=0), same
machine, same load generator (wrk, one thread, keep-alive connections), the same
v2 request body for every server. All servers start first; then, load by load, each
is measured in turn while the others sit idle, so servers compared with each other
run minutes apart at most. Nothing is pinned (on a 2-core machine, pinning a server
to one core would starve MLServer's separate inference process). Prints a table and
the target ratios, and writes RESULTS.md beside this file.

KubeML runs with exactly the settings a kubeml.io Deployment gives its pods by
default: the environment comes from the API model's defaults (ServerOptions()) through
the same function the operator uses, never repeated here. gRPC load comes from
grpc_load.py (the same request to every server); each server's resident memory
(its whole process group) is read after the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = HERE / "work"
MLSERVER_VENV = HERE / ".venv-mlserver"
MLSERVER_PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
# kubeml-uvicorn: our app under uvicorn (ASGI) instead of the native transport, the
# measurement behind choosing the native one.
SERVERS = ("kubeml", "kubeml-uvicorn", "mlserver", "mlserver-batch", "bare")
LOADS = ((1, 1), (32, 1), (1, 32), (32, 32))  # (concurrency, rows per request)
GRPC_SERVERS = ("kubeml", "mlserver", "mlserver-batch")
GRPC_LOADS = ((1, 1), (32, 1))
MODEL = "iris"
READY_TIMEOUT_S = 180.0
# MLServer's adaptive batching: up to 32 requests, waiting at most 2 ms to fill.
BATCH_SIZE = 32
BATCH_TIME_S = 0.002


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- setup ----------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (Debian package)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install -y wrk")
    return found


def ensure_mlserver() -> Path:
    """MLServer in its own virtualenv (it pins an older FastAPI than ours), with our
    scikit-learn version so it unpickles the very same model."""
    import sklearn

    binary = MLSERVER_VENV / "bin" / "mlserver"
    pins = [*MLSERVER_PINS, f"scikit-learn=={sklearn.__version__}"]
    marker = MLSERVER_VENV / ".pins"
    if binary.exists() and marker.exists() and marker.read_text() == "\n".join(pins):
        return binary
    log(f"creating {MLSERVER_VENV} with {' '.join(pins)}")
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    pip = MLSERVER_VENV / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", *pins], check=True)
    marker.write_text("\n".join(pins))
    return binary


@dataclass
class Model:
    estimator: Any
    joblib_path: Path
    skops: bytes
    sha256: str
    signature: dict[str, Any]
    profile: dict[str, Any]
    X: Any


def train() -> Model:
    import joblib
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from kubeml import models
    from kubeml.data.profile import profile_frame
    from kubeml.storage import sha256_bytes

    iris = load_iris(as_frame=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame: pd.DataFrame = iris.data.set_axis(names, axis=1)
    X = frame.to_numpy()
    est = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, iris.target.to_numpy())
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "model.joblib"
    joblib.dump(est, path)
    data = models.save(est)
    signature = {
        "task": "classification",
        "inputs": [{"name": n, "dtype": "number"} for n in names],
        "outputs": [
            {"name": "predict", "dtype": "integer"},
            {"name": "predict_proba", "dtype": "number"},
        ],
        "classes": ["0", "1", "2"],
    }
    profile = profile_frame(frame, [(n, "number", "feature") for n in names])
    return Model(est, path, data, sha256_bytes(data), signature, profile, X)


def request_body(X: Any, rows: int) -> bytes:
    batch = X[:rows] if rows <= len(X) else X[[i % len(X) for i in range(rows)]]
    doc = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [rows, 4],
                "datatype": "FP64",
                "data": [float(v) for v in batch.ravel()],
            }
        ]
    }
    return json.dumps(doc).encode()


# -- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    grpc_port: int | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        logf = open(WORK / f"{self.name}.log", "wb")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.cmd,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = (
            f"{self.base}/v2/models/{MODEL}/ready"
            if self.name != "bare"
            else f"{self.base}/v2/health/ready"
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {WORK / (self.name + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {READY_TIMEOUT_S:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The whole process group: MLServer runs its inference workers as children.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def kubeml_env() -> dict[str, str]:
    """The server tuning a Deployment's pods get by default, from the API model."""
    from kubeml.api.deployment import ServerOptions
    from kubeml.reconcile.server_objects import server_options_env

    return server_options_env(ServerOptions())


def kubeml_server(model: Model, s3_env: dict[str, str], bucket: str, http: str) -> Server:
    port = free_port()
    grpc_port = free_port() if http == "native" else None
    env = {
        **s3_env,
        **kubeml_env(),
        "KUBEML_MODEL": MODEL,
        "KUBEML_MODEL_VERSION": "1",
        "KUBEML_MODELVERSION": "iris-v1",
        "KUBEML_ARTIFACT_URI": f"s3://{bucket}/bench/model.skops",
        "KUBEML_ARTIFACT_SHA256": model.sha256,
        "KUBEML_SIGNATURE": json.dumps(model.signature),
        "KUBEML_PROFILE_URI": f"s3://{bucket}/bench/profile.json",
        "KUBEML_HOST": "127.0.0.1",
        "KUBEML_PORT": str(port),
        # the pod's port (8081) may be taken here; 0 (off) stays 0
        "KUBEML_GRPC_PORT": str(grpc_port or 0),
        "KUBEML_SHUTDOWN_DELAY_SECONDS": "0",
    }
    cmd = [sys.executable, "-m", "kubeml.runtime.serve", "--log-level", "WARNING", "--http", http]
    name = "kubeml" if http == "native" else f"kubeml-{http}"
    return Server(name, cmd, port, env, grpc_port=grpc_port)


def mlserver_server(name: str, binary: Path, model: Model, batching: bool) -> Server:
    root = WORK / name
    model_dir = root / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(model.joblib_path, model_dir / "model.joblib")
    port = free_port()
    # Only the ports are set (three servers must not collide); everything else default.
    grpc_port = free_port()
    settings = {"http_port": port, "grpc_port": grpc_port, "metrics_port": free_port()}
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings: dict[str, Any] = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    if batching:
        model_settings["max_batch_size"] = BATCH_SIZE
        model_settings["max_batch_time"] = BATCH_TIME_S
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(name, [str(binary), "start", str(root)], port, cwd=root, grpc_port=grpc_port)


def bare_server(model: Model) -> Server:
    port = free_port()
    return Server(
        "bare", [sys.executable, str(HERE / "bare.py"), str(model.joblib_path), str(port)], port
    )


def check_predictions(server: Server, model: Model) -> None:
    """Every server must return the model's own predictions for the benchmark body."""
    body = request_body(model.X, 32)
    req = urllib.request.Request(
        f"{server.base}/v2/models/{MODEL}/infer",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        doc = json.loads(resp.read())
    got = [int(x) for x in doc["outputs"][0]["data"]]
    want = model.estimator.predict(model.X[:32]).tolist()
    if got != want:
        raise AssertionError(f"{server.name} predicted {got}, the model {want}")
    if server.name in GRPC_SERVERS and server.grpc_port:
        expected = WORK / "predictions.json"
        expected.write_text(json.dumps(want))
        subprocess.run(
            [*grpc_cmd(server, 1, 32, 0), "--check", str(expected)], check=True, timeout=60
        )


def grpc_cmd(server: Server, connections: int, rows: int, seconds: float) -> list[str]:
    target = f"127.0.0.1:{server.grpc_port}"
    return [
        sys.executable, str(HERE / "grpc_load.py"), target, MODEL,
        str(connections), str(rows), str(seconds),
    ]  # fmt: skip


def run_grpc(server: Server, connections: int, rows: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        grpc_cmd(server, connections, rows, seconds),
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[len("RESULT ") :])
            res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
            return res
    raise RuntimeError(f"no RESULT line from grpc_load.py: {out.stdout}\n{out.stderr}")


# -- load ---------------------------------------------------------------------------------


def run_wrk(wrk: str, url: str, body: Path, connections: int, seconds: float) -> dict[str, Any]:
    cmd = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(HERE / "post.lua"), url,
    ]  # fmt: skip
    out = subprocess.run(
        cmd, env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, check=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[len("RESULT ") :])
            res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
            return res
    raise RuntimeError(f"no RESULT line from wrk: {out.stdout}\n{out.stderr}")


@dataclass
class Row:
    server: str
    connections: int
    rows: int
    result: dict[str, Any]
    load: str
    protocol: str = "http"


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group (a server and its workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:  # exited meanwhile
            continue
    return total


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in a process group (a server and its workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure_one(
    server: Server,
    model: Model,
    wrk: str,
    args: argparse.Namespace,
    connections: int,
    rows: int,
    protocol: str = "http",
) -> dict[str, Any]:
    """One round: a warm-up, then ``args.duration / args.rounds`` seconds measured."""
    seconds = args.duration / args.rounds
    if protocol == "grpc":
        run_grpc(server, connections, rows, args.warmup)
    else:
        url = f"{server.base}/v2/models/{MODEL}/infer"
        body = WORK / f"body-{rows}.json"
        body.write_bytes(request_body(model.X, rows))
        run_wrk(wrk, url, body, connections, args.warmup)
    assert server.proc is not None
    cpu0 = group_cpu_seconds(server.proc.pid)
    if protocol == "grpc":
        res = run_grpc(server, connections, rows, seconds)
    else:
        res = run_wrk(wrk, url, body, connections, seconds)
    res["cpu_s"] = group_cpu_seconds(server.proc.pid) - cpu0
    res["load"] = os.getloadavg()[0]
    return res


def combine(
    server: str, connections: int, rows: int, rounds: list[dict[str, Any]], protocol: str = "http"
) -> Row:
    """Requests and time add up; latency percentiles (which cannot be merged from
    wrk's summaries) are the median over the rounds."""
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["duration_us"] for r in rounds) / 1e6
    res = {
        "requests": requests,
        "rps": requests / seconds,
        "p50_us": statistics.median(r["p50_us"] for r in rounds),
        "p99_us": statistics.median(r["p99_us"] for r in rounds),
        "status_errors": sum(r["status_errors"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        # CPU per request is far less sensitive to other load on the machine than req/s.
        "cpu_ms_per_req": sum(r["cpu_s"] for r in rounds) / max(1, requests) * 1e3,
        "rounds": rounds,
    }
    load = f"{statistics.mean(r['load'] for r in rounds):.2f}"
    log(
        f"{server:15s} {protocol:4s} c={connections:<3d} rows={rows:<3d} {res['rps']:8.0f} req/s "
        f"p50 {res['p50_us'] / 1000:6.2f} ms  p99 {res['p99_us'] / 1000:6.2f} ms  "
        f"cpu/req {res['cpu_ms_per_req']:6.2f} ms  "
        f"errors {res['status_errors'] + res['socket_errors']}  (load {load})"
    )
    return Row(server, connections, rows, res, load, protocol)


def measure(servers: list[Server], model: Model, wrk: str, args: argparse.Namespace) -> list[Row]:
    """Load by load, round by round, every server in turn: servers compared with each
    other are measured seconds apart, so drift in the machine's background load hits
    them alike instead of favouring whichever ran in a quiet minute."""
    out = []
    plan = [("http", load, servers) for load in args.loads]
    grpc_servers = [s for s in servers if s.name in GRPC_SERVERS and s.grpc_port]
    if grpc_servers and not args.no_grpc:
        plan += [("grpc", load, grpc_servers) for load in GRPC_LOADS]
    for protocol, (connections, rows), group in plan:
        results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in group}
        for _ in range(args.rounds):
            for server in group:
                results[server.name].append(
                    measure_one(server, model, wrk, args, connections, rows, protocol)
                )
        out += [combine(name, connections, rows, rs, protocol) for name, rs in results.items()]
    order = {name: i for i, name in enumerate(SERVERS)}
    loads = list(args.loads) + [x for x in GRPC_LOADS if x not in args.loads]
    return sorted(
        out,
        key=lambda r: (r.protocol != "http", order[r.server], loads.index((r.connections, r.rows))),
    )


# -- report --------------------------------------------------------------------------------


def find(
    rows: list[Row], server: str, connections: int, nrows: int, protocol: str = "http"
) -> Row | None:
    key = (server, connections, nrows, protocol)
    return next((r for r in rows if (r.server, r.connections, r.rows, r.protocol) == key), None)


def table(rows: list[Row]) -> str:
    lines = [
        "| server | protocol | concurrency | rows/request | req/s | rows/s | p50 ms | p99 ms "
        "| server CPU ms/request | errors | load avg (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r.result
        errors = res["status_errors"] + res["socket_errors"]
        lines.append(
            f"| {r.server} | {r.protocol} | {r.connections} | {r.rows} | {res['rps']:.0f} | "
            f"{res['rps'] * r.rows:.0f} | {res['p50_us'] / 1000:.2f} | "
            f"{res['p99_us'] / 1000:.2f} | {res['cpu_ms_per_req']:.2f} | {errors} | "
            f"{r.load.split()[0]} |"
        )
    return "\n".join(lines)


def _better(rows: list[Row], c: int, n: int, protocol: str = "http") -> Row | None:
    mls = [find(rows, name, c, n, protocol) for name in ("mlserver", "mlserver-batch")]
    found = [r for r in mls if r]
    return max(found, key=lambda r: r.result["rps"]) if found else None


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(rows: list[Row], rss: dict[str, int]) -> list[str]:
    out = []
    ours, best = find(rows, "kubeml", 32, 1), _better(rows, 32, 1)
    if ours and best:
        ratio = ours.result["rps"] / best.result["rps"]
        p99_ok = ours.result["p99_us"] < best.result["p99_us"]
        out.append(
            f"- c=32, 1 row: {ours.result['rps']:.0f} vs {best.result['rps']:.0f} req/s "
            f"({best.server}, the better MLServer) = **{ratio:.2f}x** (target >= 3x: "
            f"{_verdict(ratio >= 3)}); p99 {ours.result['p99_us'] / 1000:.2f} vs "
            f"{best.result['p99_us'] / 1000:.2f} ms (target lower: {_verdict(p99_ok)})"
        )
    ours, best = find(rows, "kubeml", 32, 32), _better(rows, 32, 32)
    if ours and best:
        ratio = ours.result["rps"] / best.result["rps"]
        out.append(
            f"- c=32, 32 rows: {ours.result['rps'] * 32:.0f} vs {best.result['rps'] * 32:.0f} "
            f"rows/s ({best.server}) = **{ratio:.2f}x** (target >= 2x: {_verdict(ratio >= 2)})"
        )
    ours1, bare1 = find(rows, "kubeml", 1, 1), find(rows, "bare", 1, 1)
    if ours1 and bare1:
        ratio = ours1.result["p50_us"] / bare1.result["p50_us"]
        out.append(
            f"- c=1, 1 row: p50 {ours1.result['p50_us'] / 1000:.2f} vs bare "
            f"{bare1.result['p50_us'] / 1000:.2f} ms = **{ratio:.2f}x** (target <= 1.10x: "
            f"{_verdict(ratio <= 1.10)})"
        )
    ours, best = find(rows, "kubeml", 32, 1, "grpc"), _better(rows, 32, 1, "grpc")
    if ours and best:
        ratio = ours.result["rps"] / best.result["rps"]
        out.append(
            f"- gRPC, c=32, 1 row: {ours.result['rps']:.0f} vs {best.result['rps']:.0f} req/s "
            f"({best.server}) = **{ratio:.2f}x** (target >= 2x: {_verdict(ratio >= 2)})"
        )
    if "kubeml" in rss and "bare" in rss:
        ratio = rss["kubeml"] / rss["bare"]
        out.append(
            f"- resident memory after the load: {rss['kubeml'] / 2**20:.0f} vs bare "
            f"{rss['bare'] / 2**20:.0f} MB = **{ratio:.2f}x** (target <= 1.5x: "
            f"{_verdict(ratio <= 1.5)})"
        )
    return out


def rss_table(rss: dict[str, int]) -> str:
    lines = ["| server | resident memory after the load (MB, whole process group) |", "|---|---:|"]
    lines += [f"| {name} | {value / 2**20:.0f} |" for name, value in rss.items()]
    return "\n".join(lines)


def environment() -> list[str]:
    import sklearn

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}",
        f"- Python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
        f"{' '.join(MLSERVER_PINS)}",
    ]


NOTES = [
    "Notes:",
    "",
    "- The machine is shared: other work ran during the measurement (see the load",
    "  averages; 2 means both cores busy). Servers compared by a target were measured",
    "  seconds apart, round by round, so they saw the same background load. Server CPU",
    "  per request is the least load-sensitive column.",
    "- All servers call the same scikit-learn predict on the same model. KubeML's runs",
    "  with warnings ignored (one warning filter instead of the dozen a process",
    "  accumulates): scikit-learn re-installs every active filter around each tree's",
    "  task, which costs a third of a 100-tree predict here. Same predictions, less CPU;",
    "  the bare endpoint and MLServer run with their processes' default filters.",
    "- KubeML at concurrency 1 pays two thread hand-offs per request (event loop to the",
    "  predict thread and back); on a quiet machine they cost tens of microseconds, on",
    "  an oversubscribed one each waits for the scheduler (measured ~13% of a predict",
    "  at load average 12).",
    "- gRPC load comes from a Python client (grpc_load.py, grpc.aio) whose own CPU",
    "  shares the two cores with the servers (wrk costs far less per request).",
    "- MLServer (default) runs one inference worker without batching: requests queue",
    "  behind one another. The bare endpoint predicts on its event loop: at",
    "  concurrency 32 requests queue the same way (its p99 is the queue, not a bug).",
    "",
]


def write_report(
    rows: list[Row], args: argparse.Namespace, loads: dict[str, str], rss: dict[str, int]
) -> str:
    text = "\n".join(
        [
            "# Serving benchmark results",
            "",
            "Produced by `python bench/serving/run.py` (see bench/README.md). A 100-tree",
            "RandomForestClassifier on iris; every server gets the same v2 body (one",
            "`[n, 4]` FP64 tensor) from wrk (1 thread, keep-alive connections) over HTTP,",
            "and the same ModelInfer request from grpc_load.py (one channel per caller) over",
            "gRPC:",
            f"{args.duration:g} s per server and load in {args.rounds} rounds, each after a "
            f"{args.warmup:g} s warm-up.",
            "All servers up at once, measured in turn round by round, nothing pinned.",
            "req/s: all rounds' requests over their time; p50/p99: the median of the rounds'",
            "percentiles. MLServer batching: max_batch_size "
            f"{BATCH_SIZE} (requests), max_batch_time {BATCH_TIME_S} s;",
            "KubeML: a Deployment's defaults, read from the API model: "
            + ", ".join(f"{k}={v}" for k, v in kubeml_env().items())
            + ".",
            "",
            *environment(),
            f"- load average (1, 5, 15 min) before the run: {loads['before']}; after: "
            f"{loads['after']}",
            "",
            table(rows),
            "",
            rss_table(rss),
            "",
            "Targets:",
            "",
            *targets(rows, rss),
            "",
            *NOTES,
        ]
    )
    return text


def parse_loads(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        c, _, r = part.partition("x")
        out.append((int(c), int(r)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--duration", type=float, default=20.0, help="seconds measured per server and load"
    )
    p.add_argument("--rounds", type=int, default=4, help="split the duration into this many rounds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per round")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    p.add_argument(
        "--loads",
        type=parse_loads,
        default=list(LOADS),
        help="CONCURRENCYxROWS,... (default 1x1,32x1,1x32,32x32)",
    )
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--no-grpc", action="store_true", help="measure HTTP only")
    args = p.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        p.error(f"unknown servers: {', '.join(sorted(unknown))}")

    wrk = ensure_wrk()
    mlserver = ensure_mlserver() if any(s.startswith("mlserver") for s in servers) else None
    log("training the model")
    model = train()
    loads = {"before": load_average()}
    log(f"load average before: {loads['before']}")
    started: list[Server] = []
    s3 = None
    try:
        for name in servers:
            if name.startswith("kubeml"):
                if s3 is None:
                    s3 = start_s3(model)
                http = "uvicorn" if name == "kubeml-uvicorn" else "native"
                server = kubeml_server(model, s3.env(), s3.bucket, http)
            elif name == "bare":
                server = bare_server(model)
            else:
                assert mlserver is not None
                server = mlserver_server(name, mlserver, model, batching=name == "mlserver-batch")
            log(f"starting {name}")
            started.append(server)
            server.start()
            check_predictions(server, model)
        # Idle servers stay up while another is measured: an idle event loop costs
        # nothing measurable, and interleaving beats minutes of drift in other load.
        results = measure(started, model, wrk, args)
        # After the load: what each server holds once it has served everything above.
        rss = {s.name: group_rss_bytes(s.proc.pid) for s in started if s.proc is not None}
        log(
            "resident memory after the load: "
            + ", ".join(f"{k} {v >> 20} MB" for k, v in rss.items())
        )
    finally:
        for server in started:
            server.stop()
        if s3 is not None:
            s3.stop()
    loads["after"] = load_average()
    raw = [
        {
            "server": r.server,
            "protocol": r.protocol,
            "connections": r.connections,
            "rows": r.rows,
            **r.result,
        }
        for r in results
    ]
    (WORK / "results.json").write_text(json.dumps(raw, indent=1))
    report = write_report(results, args, loads, rss)
    print(report)
    if not args.no_write:
        (HERE / "RESULTS.md").write_text(report)
        log(f"wrote {HERE / 'RESULTS.md'}")
    return 0


def start_s3(model: Model) -> Any:
    """A throwaway SeaweedFS S3 on loopback holding the artifact and the profile."""
    from kubeml.storage import ArtifactStore
    from kubeml.storage.devserver import SeaweedS3

    s3 = SeaweedS3().start()
    store = ArtifactStore(s3.settings(), env=s3.env())
    store.put_bytes("bench/model.skops", model.skops)
    store.put_json("bench/profile.json", model.profile)
    return s3


if __name__ == "__main__":
    sys.exit(main())

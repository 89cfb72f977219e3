"""A promotion rolled out in the default steps: time to 100%, and what forwarding costs.

Usage: .venv/bin/python bench/rollout_bench.py [--state-dir DIR] [--rate 200]
       [--connections 32] [--warmup 15]

On the local control plane with the real operator (`kubeml operator run`, defaults),
node agent and S3: the iris Dataset, two versions of a 100-tree forest (v1, v2) and a
Deployment serving alias champion whose retraining loop promotes champion (its
triggers off, so nothing else happens) and has no spec.rollout: what a user's
manifest gets, the default steps (10% then 50% of requests, 30 s each, judged every
10 s), then all traffic. A steady client load (`--connections` keep-alive
connections through the Service, `--rate` requests/s in all, one row per request)
runs throughout. After the warm-up the benchmark moves champion to v2 exactly as a
retraining promotion does (the alias move), and records:

- from the alias move to status.rollout Succeeded, to the last answer from v1 (all
  answers from v2 after it: 100% on the new version), and to the stable servers
  running v2 alone (canary gone); each step's start and the share of answers v2
  gave while it ran; the sum of the configured pauses beside them (the floor);
- the latency of requests answered by v2 through a stable server's forwarding
  (the canary's share during the steps) and of those stable answered itself in
  the same interval, p50 and p99 side by side, and the added latency at p50;
- failed requests (expected: 0).

The client is Python (aiohttp) because the split is per request: each answer's
serving version (response header) decides its path, which wrk cannot record.
bench/serving/forward.py measures the hop alone with wrk, without a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client
from operators import Bench, load_average

from kubeml.k8s import aliases, objects
from kubeml_local.readiness import poll

API = "kubeml.io/v1alpha1"
MODEL = "rb-model"
ROW = [5.9, 3.0, 4.2, 1.5]


def manifests(ns: str) -> list[dict[str, Any]]:
    meta = {"namespace": ns}

    def run(name: str, seed: int) -> dict[str, Any]:
        return {
            "apiVersion": API,
            "kind": "TrainingRun",
            "metadata": {**meta, "name": name},
            "spec": {
                "datasetRef": {"name": "rb"},
                "model": MODEL,
                "estimator": {
                    "name": "random-forest-classifier",
                    "params": {"n_estimators": 100, "random_state": seed},
                },
            },
        }

    return [
        {
            "apiVersion": API,
            "kind": "Dataset",
            "metadata": {**meta, "name": "rb"},
            "spec": {"source": {"builtin": {"name": "iris"}}, "target": "target"},
        },
        run("rb-train", 0),
        run("rb-train-2", 1),
    ]


def deployment(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Deployment",
        "metadata": {"namespace": ns, "name": "rb"},
        "spec": {
            "model": MODEL,
            "alias": "champion",
            "replicas": 1,
            "retraining": {
                "template": {"name": "rb-train"},
                "promoteAlias": "champion",
                "triggers": {"drift": False, "datasetChange": False},
            },
        },
    }


@dataclass
class Answer:
    sent: float  # monotonic
    seconds: float
    version: str | None  # None: failed
    error: str = ""


@dataclass
class Load:
    url: str
    connections: int
    rate: float
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        conn = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=10)
        body = {"instances": [ROW]}
        gap = self.connections / self.rate if self.rate > 0 else 0.0
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            await asyncio.gather(
                *(self._worker(session, body, gap, i) for i in range(self.connections))
            )

    async def _worker(
        self, session: aiohttp.ClientSession, body: dict[str, Any], gap: float, i: int
    ) -> None:
        # Each connection sends at its own fixed pace, spread over the first gap.
        next_at = time.monotonic() + gap * i / self.connections
        while not self.stop.is_set():
            wait = next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            next_at = max(next_at + gap, time.monotonic()) if gap else time.monotonic()
            sent = time.monotonic()
            try:
                async with session.post(self.url, json=body) as resp:
                    await resp.read()
                    took = time.monotonic() - sent
                    if resp.status != 200:
                        self.answers.append(Answer(sent, took, None, f"HTTP {resp.status}"))
                    else:
                        version = resp.headers.get("kubeml-model-version")
                        self.answers.append(Answer(sent, took, version))
            except (aiohttp.ClientError, TimeoutError) as err:
                self.answers.append(Answer(sent, time.monotonic() - sent, None, repr(err)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    dep = custom.get_namespaced_custom_object("kubeml.io", "v1alpha1", ns, "deployments", "rb")
    return dict(dep.get("status") or {})


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=200.0, help="requests/s in all (0: no limit)")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of load before the move")
    args = p.parse_args()
    bench = Bench.start(args.state_dir, Path(tempfile.mkdtemp(prefix="kubeml-bench-rollout-")))
    custom = client.CustomObjectsApi(bench.api)
    ns = ""
    load: Load | None = None
    try:
        ns = bench.namespace("rollout")
        bench.ours()
        for doc in manifests(ns):
            objects.create(bench.api, doc)
        for n in (1, 2):
            poll(
                lambda n=n: _ready(custom, ns, f"{MODEL}-v{n}"),  # type: ignore[misc]
                timeout=900,
                what=f"{MODEL}-v{n}",
                interval=2.0,
            )
        objects.create(bench.api, deployment(ns))
        poll(lambda: _serving(custom, ns, 1), timeout=600, what="rb serving v1", interval=1.0)
        ip = client.CoreV1Api(bench.api).read_namespaced_service("rb", ns).spec.cluster_ip
        load = Load(f"http://{ip}/v1/models/{MODEL}:predict", args.connections, args.rate)
        threading.Thread(target=load.run, daemon=True).start()
        time.sleep(args.warmup)  # a benchmark's warm-up, not a test's wait
        moved = time.monotonic()
        aliases.claim(bench.api, ns, MODEL, 2, "champion")
        print(f"champion -> {MODEL}-v2 (load average {load_average()})", flush=True)
        marks = follow(custom, ns, moved)
        done = time.monotonic()
        time.sleep(5)  # answers after the end, to show they are all v2
        load.stop.set()
        report(load, marks, moved, done)
    finally:
        if load is not None:
            load.stop.set()
        bench.stop(ns)


def follow(custom: client.CustomObjectsApi, ns: str, moved: float) -> dict[str, float]:
    """Monotonic times at which the status first showed each state, until v2 serves
    alone (or the rollout rolled back)."""
    marks: dict[str, float] = {}
    deadline = moved + 900
    while time.monotonic() < deadline:
        st = status(custom, ns)
        ro = st.get("rollout") or {}
        now = time.monotonic()
        share = (st.get("canary") or {}).get("trafficPercent")
        # A step counts from when its own weight is in effect (the stable servers
        # forward it), as the rollout's pause does.
        if ro.get("phase") == "Progressing" and share and share == ro.get("weight"):
            marks.setdefault(f"step {int(ro.get('step', 0)) + 1} at {share}% in effect", now)
        if ro.get("phase") in ("Succeeded", "RolledBack"):
            marks.setdefault(f"rollout {ro['phase']}", now)
            if ro["phase"] == "RolledBack":
                print(f"rolled back: {ro.get('message')}", flush=True)
                return marks
        stable = (st.get("stable") or {}).get("version")
        alone = "canary" not in st and "previous" not in st
        if ro.get("phase") == "Succeeded" and stable == 2 and alone:
            marks.setdefault("v2 stable alone (canary gone)", now)
            print("status.rollout.history:")
            for h in ro["history"]:
                print(f"  {h['time']} {h['reason']}: {h['message']}")
            return marks
        time.sleep(0.25)
    raise SystemExit("no outcome within 900 s")


def report(load: Load, marks: dict[str, float], moved: float, done: float) -> None:
    answers = [a for a in load.answers if a.sent >= moved]
    failed = [a for a in answers if a.version is None]
    last_v1 = max((a.sent + a.seconds for a in answers if a.version == "1"), default=moved)
    print(f"\n{len(answers)} requests after the move, {len(failed)} failed", flush=True)
    for a in failed[:5]:
        print("  failed:", a.error)
    floor = 60.0  # the default steps' pauses: 2 x 30 s
    rows = [(k, v - moved) for k, v in sorted(marks.items(), key=lambda kv: kv[1])]
    rows.append(("last answer from v1 (100% on v2 after it)", last_v1 - moved))
    print(f"\n{'from the alias move to':<48} {'s':>7} {'vs pauses (60 s)':>17}")
    for name, s in rows:
        print(f"{name:<48} {s:7.1f} {s / floor:16.2f}x")
    step_marks = sorted((v, k) for k, v in marks.items() if k.startswith("step "))
    ends = [*(t for t, _ in step_marks[1:]), marks.get("rollout Succeeded", done)]
    print(f"\n{'step':<28} {'answers':>8} {'v2 share':>9}")
    for (start, name), end in zip(step_marks, ends, strict=True):
        window = [a for a in answers if start <= a.sent < end and a.version]
        v2 = sum(a.version == "2" for a in window)
        print(f"{name:<28} {len(window):>8} {100 * v2 / max(1, len(window)):8.1f}%")
    first = step_marks[0][0] if step_marks else moved
    end = marks.get("rollout Succeeded", done)
    during = [a for a in answers if first <= a.sent < end]
    fwd = [a.seconds for a in during if a.version == "2"]
    direct = [a.seconds for a in during if a.version == "1"]
    print(
        f"\nlatency during the steps, {load.connections} connections, {load.rate:g} req/s "
        f"(ms)\n{'path':<34} {'n':>6} {'p50':>8} {'p99':>8}"
    )
    for name, xs in (("v2 via stable forwarding", fwd), ("v1 answered by stable", direct)):
        print(f"{name:<34} {len(xs):>6} {1000 * pct(xs, 0.5):8.2f} {1000 * pct(xs, 0.99):8.2f}")
    if fwd and direct:
        p50f, p50d = pct(fwd, 0.5), pct(direct, 0.5)
        p99f, p99d = pct(fwd, 0.99), pct(direct, 0.99)
        print(
            f"forwarded / direct: p50 {p50f / p50d:.2f}x (+{1000 * (p50f - p50d):.2f} ms), "
            f"p99 {p99f / p99d:.2f}x (+{1000 * (p99f - p99d):.2f} ms); "
            f"mean {1000 * statistics.fmean(fwd):.2f} vs {1000 * statistics.fmean(direct):.2f}"
        )
    print(f"load average at the end: {load_average()}")


def _ready(custom: client.CustomObjectsApi, ns: str, name: str) -> bool | None:
    try:
        mv = custom.get_namespaced_custom_object("kubeml.io", "v1alpha1", ns, "modelversions", name)
    except client.ApiException:
        return None
    conds = (mv.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds) or None


def _serving(custom: client.CustomObjectsApi, ns: str, version: int) -> bool | None:
    st = status(custom, ns)
    conds = st.get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    return (ready and (st.get("stable") or {}).get("version") == version) or None


if __name__ == "__main__":
    main()

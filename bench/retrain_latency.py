"""From a Dataset's new version to the retraining run that trains on it.

Usage: .venv/bin/python bench/retrain_latency.py [--state-dir DIR] [--versions 5]

On the local control plane: a synthetic Dataset, a template TrainingRun and a
Deployment whose retraining policy trains every new data version
(triggers.datasetChange, cooldownSeconds 0). For each round the Dataset's seed
changes, the preparation Job publishes a new version, and the benchmark records,
from its own watches: when the Dataset's status first showed the version, when
KubeML's operator created `<deployment>-retrain-<version>`, and when the bare kopf
operator (bench/floor_operator.py, in the same cluster at the same time) created its
ConfigMap for that version, the floor for "react to a Dataset change by creating an
object". Each round waits for the run to finish, so the next starts unhindered (one
run at a time). Prints p50 and max of both, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from operators import Bench, load_average, table

from kubeml.k8s import objects
from kubeml_local.readiness import poll

API = "kubeml.io/v1alpha1"


def manifests(ns: str) -> list[dict[str, Any]]:
    meta = {"namespace": ns}
    dataset = {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {**meta, "name": "lat"},
        "spec": {
            "source": {
                "synthetic": {"task": "classification", "rows": 300, "features": 4, "seed": 0}
            },
            "target": "target",
        },
    }
    template = {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {**meta, "name": "lat-train"},
        "spec": {
            "datasetRef": {"name": "lat"},
            "model": "lat-model",
            "estimator": {"name": "logistic-regression", "params": {"max_iter": 200}},
        },
    }
    deployment = {
        "apiVersion": API,
        "kind": "Deployment",
        "metadata": {**meta, "name": "lat"},
        "spec": {
            "model": "lat-model",
            "alias": "champion",
            "replicas": 1,
            "retraining": {
                "template": {"name": "lat-train"},
                "promoteAlias": "champion",
                "cooldownSeconds": 0,
                "triggers": {"datasetChange": True, "drift": False},
                # No client traffic here: a progressive rollout would wait at its
                # first step for requests to judge, with a canary pod per round.
                "rollout": "Immediate",
            },
        },
    }
    return [dataset, template, deployment]


class Seen:
    """First arrival times (monotonic) of things the watches report, by key."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, key: str) -> None:
        with self.lock:
            self.at.setdefault(key, time.monotonic())


def follow(
    list_fn: Callable[..., Any],
    ns: str,
    key: Callable[[dict[str, Any]], str | None],
    seen: Seen,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        w = watch.Watch()
        for event in w.stream(list_fn, ns, timeout_seconds=30):
            obj = event["object"]
            obj = (
                obj if isinstance(obj, dict) else client.ApiClient().sanitize_for_serialization(obj)
            )
            k = key(obj)
            if k:
                seen.mark(k)
            if stop.is_set():
                w.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--versions", type=int, default=5)
    args = p.parse_args()
    bench = Bench.start(args.state_dir, Path(tempfile.mkdtemp(prefix="kubeml-bench-retrain-")))
    stop = threading.Event()
    ns = ""
    try:
        ns = bench.namespace("retrain")
        bench.floor()
        bench.ours()
        custom, core = client.CustomObjectsApi(bench.api), client.CoreV1Api(bench.api)
        versions, runs, floor = Seen(), Seen(), Seen()

        def dataset_version(o: dict[str, Any]) -> str | None:
            v = (o.get("status") or {}).get("version")
            return str(v)[:12] if v and o["metadata"]["name"] == "lat" else None

        def run_version(o: dict[str, Any]) -> str | None:
            name = o["metadata"]["name"]
            return name.rsplit("-retrain-", 1)[1] if "-retrain-" in name else None

        def floor_version(o: dict[str, Any]) -> str | None:
            name = o["metadata"]["name"]
            return name[len("floor-") :] if name.startswith("floor-") else None

        watchers = [
            (
                lambda n, **kw: custom.list_namespaced_custom_object(
                    "kubeml.io", "v1alpha1", n, "datasets", **kw
                ),
                dataset_version,
                versions,
            ),
            (
                lambda n, **kw: custom.list_namespaced_custom_object(
                    "kubeml.io", "v1alpha1", n, "trainingruns", **kw
                ),
                run_version,
                runs,
            ),
            (core.list_namespaced_config_map, floor_version, floor),
        ]
        for fn, key, seen in watchers:
            threading.Thread(target=follow, args=(fn, ns, key, seen, stop), daemon=True).start()
        for doc in manifests(ns):
            objects.create(bench.api, doc)
        poll(lambda: _succeeded(custom, ns, "lat-train"), timeout=600, what="the template run")
        with versions.lock:
            known = set(versions.at)  # the first version: trained by the template itself
        rows: list[dict[str, Any]] = []
        for seed in range(1, args.versions + 1):
            custom.patch_namespaced_custom_object(
                "kubeml.io",
                "v1alpha1",
                ns,
                "datasets",
                "lat",
                {"spec": {"source": {"synthetic": {"seed": seed}}}},
            )
            new = poll(
                lambda: _new_version(versions, known), timeout=600, what=f"seed {seed}'s version"
            )
            known.add(new)
            poll(
                lambda v=new: v in runs.at and v in floor.at,  # type: ignore[misc]
                timeout=600,
                what="both reactions",
            )
            rows.append(
                {
                    "seed": seed,
                    "version": new,
                    "kubeml run created ms": round(1000 * (runs.at[new] - versions.at[new])),
                    "bare kopf ConfigMap ms": round(1000 * (floor.at[new] - versions.at[new])),
                    "load avg": load_average(),
                }
            )
            print(rows[-1], flush=True)
            poll(
                lambda v=new: _succeeded(custom, ns, f"lat-retrain-{v}"),  # type: ignore[misc]
                timeout=600,
                what="the retraining run",
            )
        ours = [r["kubeml run created ms"] for r in rows]
        base = [r["bare kopf ConfigMap ms"] for r in rows]
        print()
        print(table(rows))
        p50, floor50 = statistics.median(ours), statistics.median(base)
        print(
            f"\nnew data version -> retraining run created: p50 {p50:.0f} ms, max {max(ours)} ms"
            f" (bare kopf reacting: p50 {floor50:.0f} ms, max {max(base)} ms;"
            f" ratio of p50s {p50 / max(floor50, 1):.2f}x)"
        )
    finally:
        stop.set()
        bench.stop(ns)


def _succeeded(custom: client.CustomObjectsApi, ns: str, name: str) -> bool:
    try:
        obj = custom.get_namespaced_custom_object("kubeml.io", "v1alpha1", ns, "trainingruns", name)
    except client.ApiException:
        return False
    return any(
        c["type"] == "Succeeded" and c["status"] in ("True", "False")
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _new_version(versions: Seen, known: set[str]) -> str | None:
    with versions.lock:
        fresh = [k for k in versions.at if k not in known]
    return fresh[0] if fresh else None


if __name__ == "__main__":
    main()

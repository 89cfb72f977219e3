"""The Grafana dashboard against a real Prometheus: after traffic to the iris Deployment
(with a canary) and to a regressor, each with ground-truth feedback, every panel's query
returns data, and every series it names exists.

One private cluster for the module, the operator as a process, and Prometheus scraping
the model servers (pod discovery through the apiserver, by their prometheus.io
annotations) and the operator's metrics port. The dashboard checked is the committed
file that users import or the chart ships.

``KUBEML_TEST_REUSE_CLUSTER=<state-dir>`` runs on a cluster started beforehand instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubeml import dashboard
from kubeml_local import cluster
from kubeml_local.bootstrap import api_client
from kubeml_local.readiness import poll
from tests.support import kube
from tests.support import prometheus as prom
from tests.support.binaries import built
from tests.support.cases import ROOT, load_yaml
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.e2e
REUSE_ENV = "KUBEML_TEST_REUSE_CLUSTER"
IRIS = ROOT / "examples" / "iris"
METRIC = re.compile(r"\bkubeml_[a-z0-9_]+")
# What Grafana puts in for its own variables: windows wide enough to hold this test's
# pipelines and traffic.
BUILTINS = {"$__rate_interval": "5m", "$__range": "1h"}
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
IRIS_TRUTH = [0, 2, 1]  # one label per row of the request


def _echo(line: str) -> None:
    print(line, flush=True)


@dataclass
class Stack:
    api: client.ApiClient
    operator: OperatorProcess
    ns: str
    prometheus: str  # base URL


def prometheus_config(conn: cluster.Connection, ns: str, operator_port: str) -> dict[str, Any]:
    pods = prom.pod_job(conn, ns, job="kubeml-servers")
    operator = {
        "job_name": "kubeml-operator",
        "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
    }
    return prom.config(pods, operator)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"Prometheus refused {expr}: {err.read()[:300]!r}") from err
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reuse = os.environ.get(REUSE_ENV)
    state = Path(reuse) if reuse else tmp_path_factory.mktemp("dash")
    conn = cluster.up(state, echo=_echo)
    api = api_client(conn.kubeconfig)
    operator = OperatorProcess(conn.kubeconfig, conn.s3.env(), tmp_path_factory.mktemp("op"))
    operator.start()
    ns = f"t-dash-{uuid.uuid4().hex[:6]}"
    kube.new_namespace(api, ns, kube.RESTRICTED)
    kube.add_s3_secret(api, ns, conn.s3.env())
    work = tmp_path_factory.mktemp("prometheus")
    config = prometheus_config(conn, ns, operator.env["KUBEML_METRICS_PORT"])
    try:
        with prom.running(built("prometheus"), work, config) as base:
            # The operator's series (at zero) are scraped before any pipeline finishes, so
            # the first finished run is an increase.
            poll(
                lambda: query(base, 'kubeml_pipeline_runs_total{kind="Dataset"}') or None,
                timeout=90,
                what="the operator scraped by Prometheus",
            )
            yield Stack(api, operator, ns, base)
    finally:
        operator.stop()
        client.CoreV1Api(api).delete_namespace(ns, propagation_policy="Background")
        api.close()
        if not reuse:
            cluster.down(state, echo=_echo)


def _run(name: str, dataset: str, model: str, estimator: dict[str, Any]) -> dict[str, Any]:
    doc = load_yaml(IRIS / "trainingrun.yaml")
    doc["metadata"]["name"] = name
    doc["spec"].update(datasetRef={"name": dataset}, model=model, search=None, estimator=estimator)
    doc["spec"].pop("gates", None)
    doc["spec"].pop("metrics", None)
    return doc


def _deployment(name: str, model: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "version": 1,
            "replicas": 1,
            "server": {"grpc": False},
            "capture": {"samplePercent": 100},
            **spec,
        },
    }


@pytest.fixture(scope="module")
def served(stack: Stack) -> dict[str, str]:
    """iris-classifier v1 with v2 as a 50% canary, and a diabetes regressor; each
    Deployment's Service URL by model (one stable replica: feedback reaches the server
    that answered)."""
    api, ns = stack.api, stack.ns
    kube.create(api, ns, load_yaml(IRIS / "dataset.yaml"))
    diabetes = {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "diabetes"},
        "spec": {
            "source": {"builtin": {"name": "diabetes"}},
            "target": "target",
            "split": {"validation": 0.2, "test": 0.2, "seed": 1},
        },
    }
    kube.create(api, ns, diabetes)
    forest = {"name": "random-forest-classifier", "params": {"n_estimators": 10}}
    kube.create(api, ns, _run("iris-a", "iris", "iris-classifier", forest))
    tree = {"name": "decision-tree-regressor", "params": {"max_depth": 3}}
    kube.create(api, ns, _run("diabetes-a", "diabetes", "diabetes-regressor", tree))
    kube.wait_condition(api, ns, "TrainingRun", "iris-a", "Succeeded", status="True", timeout=300)
    wider = {"name": "random-forest-classifier", "params": {"n_estimators": 20}}
    kube.create(api, ns, _run("iris-b", "iris", "iris-classifier", wider))
    kube.wait_condition(
        api, ns, "TrainingRun", "diabetes-a", "Succeeded", status="True", timeout=300
    )
    kube.wait_condition(api, ns, "TrainingRun", "iris-b", "Succeeded", status="True", timeout=300)
    canary = {"version": 2, "trafficPercent": 50}
    kube.create(api, ns, _deployment("iris", "iris-classifier", canary=canary))
    kube.create(api, ns, _deployment("diabetes", "diabetes-regressor"))
    urls = {}
    for name, model in (("iris", "iris-classifier"), ("diabetes", "diabetes-regressor")):
        kube.wait_condition(api, ns, "Deployment", name, "Ready", status="True", timeout=300)
        # Through the Service, as clients reach it: pods that roll keep being reached.
        ip = client.CoreV1Api(api).read_namespaced_service(name, ns).spec.cluster_ip
        assert ip.startswith("127."), ip
        urls[model] = f"http://{ip}"
    return urls


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def infer(base: str, model: str, rows: list[list[float]]) -> dict[str, Any]:
    width = len(rows[0])
    tensor = {"name": "x", "shape": [len(rows), width], "datatype": "FP64"}
    return post(
        f"{base}/v2/models/{model}/infer",
        {"inputs": [{**tensor, "data": [v for r in rows for v in r]}]},
    )


def traffic(urls: dict[str, str], stop: threading.Event, errors: list[str]) -> None:
    """Steady requests with ground truth for each, until stopped: rates over the last
    minutes stay above zero while the dashboard is checked."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    i = 0
    while not stop.is_set():
        try:
            iris = infer(urls["iris-classifier"], "iris-classifier", IRIS_ROWS)
            post(
                f"{urls['iris-classifier']}/v2/models/iris-classifier/feedback",
                {"id": iris["id"], "truth": IRIS_TRUTH},
            )
            row = i % len(X)
            reg = infer(urls["diabetes-regressor"], "diabetes-regressor", [X[row].tolist()])
            post(
                f"{urls['diabetes-regressor']}/v2/models/diabetes-regressor/feedback",
                {"id": reg["id"], "truth": float(y[row])},
            )
        except (OSError, ValueError, KeyError) as err:
            errors.append(f"{type(err).__name__}: {err}")
        i += 1
        stop.wait(0.1)  # paces the traffic; nothing waits on it


def scrape_targets(base: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as resp:
        active = json.loads(resp.read())["data"]["activeTargets"]
    return [
        f"{t['labels'].get('job')} {t['labels'].get('pod', '')} {t['scrapeUrl']}: "
        f"{t['health']} {t.get('lastError', '')}"
        for t in active
    ]


def substitute(expr: str, namespace: str, model: str) -> str:
    values = {**BUILTINS, "$namespace": namespace, "$model": model, "$version": ".*"}
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def finite(result: list[dict[str, Any]]) -> list[float]:
    values = [float(r["value"][1]) for r in result]
    return [v for v in values if math.isfinite(v)]


def problems(base: str, expr: str, targets: list[tuple[str, str]]) -> list[str]:
    """Why a dashboard query shows nothing: it returns no finite value for any of the
    served models (as a user switching the model variable sees it), or it names a
    series Prometheus has never received."""
    found: list[str] = []
    for name in sorted(set(METRIC.findall(expr))):
        if not query(base, f'count({{__name__="{name}"}})'):
            found.append(f"{name}: no such series in Prometheus (in {expr})")
    if not any(finite(query(base, substitute(expr, ns, model))) for ns, model in targets):
        found.append(f"no data for {expr}")
    return found


def test_every_panel_query_returns_data_after_traffic(stack: Stack, served: dict[str, str]) -> None:
    doc = json.loads((ROOT / dashboard.PATH).read_text())
    assert doc == dashboard.build()
    exprs = [expr for _, expr in dashboard.targets(doc)]
    targets = [(stack.ns, model) for model in sorted(served)]
    stop, errors = threading.Event(), []
    sender = threading.Thread(target=traffic, args=(served, stop, errors), daemon=True)
    sender.start()
    try:

        def all_panels() -> bool:
            found = [p for expr in exprs for p in problems(stack.prometheus, expr, targets)]
            if found:
                found += [f"scrape target {t}" for t in scrape_targets(stack.prometheus)]
                found += [f"traffic: {e}" for e in errors[-3:]]
            assert not found, "\n".join(found)
            return True

        poll(all_panels, timeout=180, what="data in every panel", interval=2)
        assert errors == [], errors[:5]

        # The template variables offer the namespace, both models and both iris versions.
        variables = dashboard.variable_queries(doc)
        offered: dict[str, set[str]] = {}
        for name in ("namespace", "model", "version"):
            inner = re.fullmatch(rf"label_values\((.*), {name}\)", variables[name])
            assert inner is not None, variables[name]
            selector = substitute(inner.group(1), stack.ns, "iris-classifier")
            offered[name] = {r["metric"][name] for r in query(stack.prometheus, selector)}
        assert stack.ns in offered["namespace"]
        assert offered["model"] >= set(served)
        assert offered["version"] >= {"1", "2"}
    finally:
        stop.set()
        sender.join(timeout=30)

    # The check is real: a query naming a series nobody exports fails it.
    made_up = exprs[0].replace("kubeml_requests_total", "kubeml_requests_served_total")
    found = problems(stack.prometheus, made_up, targets)
    assert any("kubeml_requests_served_total: no such series" in p for p in found), found
    assert any(p.startswith("no data") for p in found), found


def test_finished_pipelines_show_where_their_time_went(
    stack: Stack, served: dict[str, str]
) -> None:
    run = kube.get(stack.api, stack.ns, "TrainingRun", "iris-a")
    assert run is not None
    names = [s["name"] for s in run["status"]["stages"]]
    assert names == ["pod", "fetch", "fit", "evaluate", "upload", "report"]
    per_stage = query(
        stack.prometheus,
        'sum by (stage) (kubeml_pipeline_stage_duration_seconds_count{kind="TrainingRun"})',
    )
    counted = {r["metric"]["stage"]: float(r["value"][1]) for r in per_stage}
    # Three runs finished, each counted once, whatever the reconciles since.
    assert {stage: counted[stage] for stage in names} == dict.fromkeys(names, 3.0)
    assert counted["search"] == 0.0

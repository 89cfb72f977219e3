"""The Grafana dashboard: generated, committed, shipped by the chart, and naming only
series the server and the operator export (their values against a real Prometheus are
tests/e2e/test_dashboard.py)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from kubeml import dashboard
from kubeml import metrics as operator_metrics
from kubeml.serving.metrics import ServerMetrics
from tests.support.cases import ROOT
from tests.unit.test_chart import helm, one, render

__all__ = ["helm"]  # the chart tests' fixture: the helm binary

METRIC = re.compile(r"\bkubeml_[a-z0-9_]+")


def test_the_committed_dashboard_is_the_generated_one() -> None:
    committed = (ROOT / dashboard.PATH).read_text()
    assert committed == dashboard.render(), "run `kubeml dashboard`"


def sample_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry's families can export."""
    from prometheus_client import generate_latest

    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return names


def exported() -> set[str]:
    server = ServerMetrics("m", "1")
    # Live quality is exported once feedback labels rows: every name it can take.
    server.live.live = SimpleNamespace(
        snapshot=lambda: {"rows": 1.0, "accuracy": 1.0, "mae": 0.0, "rmse": 0.0}
    )
    operator_metrics.start_series(["Dataset"])
    return sample_names(server.registry) | sample_names(REGISTRY)


def test_every_series_the_dashboard_names_is_exported() -> None:
    doc = dashboard.build()
    queries = [expr for _, expr in dashboard.targets(doc)]
    queries += list(dashboard.variable_queries(doc).values())
    named = {m for q in queries for m in METRIC.findall(q)}
    assert named - exported() == set()
    # The check is real: a name nobody exports is caught.
    assert "kubeml_requests_served_total" not in exported()


def test_the_panels_the_issue_asks_for_are_there() -> None:
    doc = dashboard.build()
    titles = " | ".join(str(p.get("title")) for p in doc["panels"]).lower()
    for words in (
        "requests per second",
        "error ratio",
        "p50 / p99",
        "batch size",
        "drift",
        "canary versus stable",
        "live accuracy",
        "finished runs",
        "where the time goes",
        "reconciles per second",
        "reconcile errors",
        "reconcile duration",
    ):
        assert words in titles, words
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "namespace", "model", "version"}
    for _, expr in dashboard.targets(doc):
        if "kubeml_operator_" not in expr and "kubeml_pipeline_" not in expr:
            assert 'namespace="$namespace", model="$model"' in expr, expr


def test_the_chart_ships_it_for_the_grafana_sidecar_only_when_asked(helm: str) -> None:
    assert not [d for d in render(helm, []) if d["kind"] == "ConfigMap"]
    docs = render(
        helm,
        [
            "grafana.dashboard.enabled=true",
            "grafana.dashboard.namespace=monitoring",
            "grafana.dashboard.annotations.grafana_folder=KubeML",
        ],
    )
    cm: dict[str, Any] = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "KubeML"}
    assert json.loads(cm["data"]["kubeml.json"]) == dashboard.build()

"""KubeML's Grafana dashboard, built as code with grafana-foundation-sdk.

`kubeml dashboard` writes it to charts/kubeml/dashboards/kubeml.json, which the chart
ships in a ConfigMap for Grafana's dashboard sidecar (``grafana.dashboard.enabled``)
and which can be imported as it is. Every query names series that the model server
(kubeml.serving.metrics) or the operator (kubeml.metrics) exports, with the labels a
Prometheus scrape adds (``namespace``); tests/e2e/test_dashboard.py evaluates each one
against a real Prometheus after real traffic.

grafana-foundation-sdk is a development dependency: only this generator imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

UID = "kubeml-overview"
PATH = "charts/kubeml/dashboards/kubeml.json"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
# One served model: the template variables pick the namespace, model and versions.
SEL = 'namespace="$namespace", model="$model", version=~"$version"'
RATE = "$__rate_interval"
# Pipelines finish now and then: their panels summarise the dashboard's time range.
RANGE = "$__range"


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def _series(
    title: str, description: str, unit: str, *queries: tuple[str, str], width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(width)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"])
        )
    )
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _bars(title: str, description: str, unit: str, expr: str, legend: str) -> bargauge.Panel:
    """The value over the dashboard's range, one bar per series (an instant query)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(8)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(_query(expr, legend, "A").instant())
    )


def _quantile(q: float, metric: str, by: str, where: str = SEL) -> str:
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))"


def _share(where: str, by: str = "version") -> str:
    """Requests matching ``where`` as a share of all, per ``by``; 0 (not nothing) where
    none matched, so a healthy model shows a flat line instead of an empty panel."""
    part = f"sum by ({by}) (rate(kubeml_requests_total{{{SEL}, {where}}}[{RATE}]))"
    total = f"sum by ({by}) (rate(kubeml_requests_total{{{SEL}}}[{RATE}]))"
    return f"({part} or {total} * 0) / {total}"


def _serving() -> Iterator[Any]:
    yield dashboard.Row("Serving: $model in $namespace")
    yield _series(
        "Requests per second",
        "Inference requests answered, by the version that answered them (a canary's "
        "share arrives at the stable servers and is answered by the canary).",
        "reqps",
        (f"sum by (version) (rate(kubeml_requests_total{{{SEL}}}[{RATE}]))", "v{{version}}"),
    )
    yield _series(
        "Error ratio",
        "Share of requests answered 5xx (server errors) and 4xx (rejected input).",
        "percentunit",
        (_share('code=~"5.."'), "v{{version}} 5xx"),
        (_share('code=~"4.."'), "v{{version}} 4xx"),
    )
    yield _series(
        "Latency p50 / p99",
        "From a complete request to its response being written.",
        "s",
        (_quantile(0.5, "kubeml_request_duration_seconds", "version"), "v{{version}} p50"),
        (_quantile(0.99, "kubeml_request_duration_seconds", "version"), "v{{version}} p99"),
    )
    yield _series(
        "Batch size (rows per predict call)",
        "Requests batched together by the server: median and p99 rows per call.",
        "short",
        (_quantile(0.5, "kubeml_batch_rows", "version"), "v{{version}} p50"),
        (_quantile(0.99, "kubeml_batch_rows", "version"), "v{{version}} p99"),
    )
    yield _series(
        "Canary versus stable: share of requests",
        "Share of the model's requests each version answered; with a canary at N%, its "
        "line sits at N%.",
        "percentunit",
        (
            f"sum by (version) (rate(kubeml_requests_total{{{SEL}}}[{RATE}]))"
            f" / ignoring (version) group_left () "
            f'sum (rate(kubeml_requests_total{{namespace="$namespace", model="$model"}}[{RATE}]))',
            "v{{version}}",
        ),
    )
    yield _series(
        "Canary forwarding",
        "Requests the stable servers forwarded to the canary, by outcome: answered, "
        "error or unreachable (answered by stable instead), saturated.",
        "reqps",
        (
            "sum by (target_version, outcome) "
            f"(rate(kubeml_forwarded_requests_total{{{SEL}}}[{RATE}]))",
            "to v{{target_version}} {{outcome}}",
        ),
    )
    yield _series(
        "Drift (PSI per feature)",
        "Population stability index of recent inputs against the training profile; "
        "above 0.2 is usually a shift worth a look.",
        "short",
        (
            f"max by (feature, version) (kubeml_feature_drift_psi{{{SEL}}})",
            "v{{version}} {{feature}}",
        ),
    )
    yield _series(
        "Live accuracy (classifiers)",
        "Accuracy on recent requests whose ground truth came back as feedback "
        "(spec.capture); absent until the first labelled row.",
        "percentunit",
        (f"avg by (version) (kubeml_live_accuracy{{{SEL}}})", "v{{version}} accuracy"),
    )
    yield _series(
        "Live error (regressors)",
        "Mean absolute and root mean squared error on labelled recent requests.",
        "short",
        (f"avg by (version) (kubeml_live_mae{{{SEL}}})", "v{{version}} MAE"),
        (f"avg by (version) (kubeml_live_rmse{{{SEL}}})", "v{{version}} RMSE"),
    )
    yield _series(
        "Labelled rows and ready servers",
        "Rows in the live quality window, and servers loaded, verified and serving.",
        "short",
        (f"sum by (version) (kubeml_live_labelled_rows{{{SEL}}})", "v{{version}} labelled"),
        (f"sum by (version) (kubeml_model_ready{{{SEL}}})", "v{{version}} ready"),
    )


def _pipelines() -> Iterator[Any]:
    yield dashboard.Row("Pipelines: Dataset preparations and TrainingRuns")
    yield _bars(
        "Finished runs",
        "Preparations and training runs that reached their outcome in the time range.",
        "short",
        f"sum by (kind, result) (increase(kubeml_pipeline_runs_total[{RANGE}]))",
        "{{kind}} {{result}}",
    )
    yield _bars(
        "Mean duration",
        "From the Job's creation to the recorded outcome, per finished run.",
        "s",
        f"sum by (kind) (increase(kubeml_pipeline_duration_seconds_sum[{RANGE}]))"
        f" / sum by (kind) (increase(kubeml_pipeline_duration_seconds_count[{RANGE}]))",
        "{{kind}}",
    )
    yield _bars(
        "Where the time goes (mean seconds per stage)",
        "pod: waiting from the Job's creation to its pod's start; then the Job's own "
        "stages. The same numbers per object are in status.stages.",
        "s",
        f"sum by (kind, stage) (increase(kubeml_pipeline_stage_duration_seconds_sum[{RANGE}]))"
        " / sum by (kind, stage) "
        f"(increase(kubeml_pipeline_stage_duration_seconds_count[{RANGE}]))",
        "{{kind}} {{stage}}",
    )


def _operator() -> Iterator[Any]:
    yield dashboard.Row("Operator")
    yield _series(
        "Reconciles per second",
        "By controller and result (ok, error, conflict: decided again on a fresh read).",
        "ops",
        (
            f"sum by (kind, result) (rate(kubeml_operator_reconciles_total[{RATE}]))",
            "{{kind}} {{result}}",
        ),
        width=8,
    )
    yield _series(
        "Reconcile errors per second",
        "Reconciles that raised; they are retried with backoff, and after a few in a row "
        "the object gets a Synced=False condition naming the error.",
        "ops",
        (
            f'sum by (kind) (rate(kubeml_operator_reconciles_total{{result="error"}}[{RATE}]))',
            "{{kind}}",
        ),
        width=8,
    )
    yield _series(
        "Reconcile duration p50 / p99",
        "One reconcile, reads and writes included.",
        "s",
        (
            _quantile(0.5, "kubeml_operator_reconcile_duration_seconds", "kind", where=""),
            "{{kind}} p50",
        ),
        (
            _quantile(0.99, "kubeml_operator_reconcile_duration_seconds", "kind", where=""),
            "{{kind}} p99",
        ),
        width=8,
    )


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("KubeML")
        .uid(UID)
        .description(
            "Served models per version (traffic, errors, latency, batching, canary, drift, "
            "live quality), pipelines (runs, durations, stages) and the operator."
        )
        .tags(["kubeml", "mlops"])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            _variable("namespace", "Namespace", "label_values(kubeml_model_info, namespace)")
        )
        .with_variable(
            _variable(
                "model",
                "Model",
                'label_values(kubeml_model_info{namespace="$namespace"}, model)',
            )
        )
        .with_variable(
            _variable(
                "version",
                "Version",
                'label_values(kubeml_model_info{namespace="$namespace", model="$model"}, version)',
            )
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for part in (_serving(), _pipelines(), _operator()):
        for item in part:
            board = (
                board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
            )
    doc: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def targets(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query in a dashboard."""
    return [
        (str(panel.get("title")), str(t["expr"]))
        for panel in doc.get("panels", [])
        for t in panel.get("targets") or []
        if t.get("expr")
    ]


def variable_queries(doc: dict[str, Any]) -> dict[str, str]:
    return {
        str(v["name"]): str(v["query"] if isinstance(v["query"], str) else v["query"]["query"])
        for v in doc.get("templating", {}).get("list", [])
        if v.get("type") == "query"
    }

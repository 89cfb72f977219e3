"""Assembling the report's sections from what the training Job measured."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import analysis, figures
from .page import cell, document, esc, figure, fmt, note, table

log = logging.getLogger("kubeml.report")

# The page's sections, in order: their ids are the page's anchors (and what tests look for).
SECTIONS = ("data", "search", "parameters", "metrics", "evaluation", "importance")
SPLITS = ("train", "validation", "test")
MAX_HISTOGRAMS = 24
MAX_IMPORTANCES = 30


@dataclass(frozen=True)
class TrialRow:
    """One candidate of the search, scores in the metric's own units."""

    candidate: int
    params: Mapping[str, Any]
    mean: float
    std: float
    rank: int
    fit_seconds: float | None = None


@dataclass(frozen=True)
class GateOutcome:
    gate: str
    passed: bool
    value: float | None = None


@dataclass(frozen=True)
class ReportInput:
    run: str  # "<namespace>/<name>"
    model: str
    estimator: str
    task: Literal["classification", "regression"]
    dataset: str
    dataset_version: str
    target: str
    features: Sequence[tuple[str, str]]  # (name, type) the model was trained on
    splits: Mapping[str, pd.DataFrame]  # train, validation (may be empty), test
    fitted: Any
    params: Mapping[str, Any]
    metrics: Mapping[str, Mapping[str, float]]  # split -> metric -> value
    gates: Sequence[GateOutcome] = ()
    cv: tuple[str, float] | None = None  # (metric, best mean CV score)
    trials: Sequence[TrialRow] | None = None
    folds: int | None = None
    key_metric: str = ""
    # A scikit-learn scorer (name or object) for the key metric, used by permutation
    # importance; None uses the estimator's own score.
    scoring: Any = None
    artifact: Mapping[str, Any] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0


def render(data: ReportInput) -> str:
    """The report as one HTML document."""
    title = f"Model report: {data.model}"
    subtitle = [
        f"TrainingRun {data.run} · {data.estimator} ({data.task})",
        f"Dataset {data.dataset}, version {data.dataset_version[:12]} · target {data.target}",
    ]
    if data.artifact:
        subtitle.append(
            f"Artifact {data.artifact.get('uri', '')} · sha256 {data.artifact.get('sha256', '')}"
        )
    sections = [
        ("data", "Data", _data(data)),
        ("search", "Search", _search(data)),
        ("parameters", "Chosen parameters", _parameters(data)),
        ("metrics", "Metrics and gates", _metrics(data)),
        ("evaluation", _evaluation_title(data), _evaluation(data)),
        ("importance", "Feature importance", _importance(data)),
    ]
    return document(title, subtitle, sections)


def _data(data: ReportInput) -> str:
    rows = [(s, len(data.splits[s])) for s in SPLITS if s in data.splits]
    total = sum(n for _, n in rows)
    counts = table(["split", "rows"], [*rows, ("total", total)])
    train = data.splits["train"]
    profiles = analysis.profile(train, data.features)
    profile_rows = []
    for p in profiles:
        if p.type in analysis.NUMERIC:
            s = p.stats
            summary = ", ".join(f"{k} {fmt(s[k])}" for k in ("mean", "std", "min", "median", "max"))
        else:
            top = ", ".join(f"{k} ({v})" for k, v in list(p.top.items())[:5])
            summary = f"{p.distinct} distinct; most frequent: {top}"
        profile_rows.append((p.name, p.type, p.count, p.nulls, summary))
    shown = profiles[:MAX_HISTOGRAMS]
    hist = figures.histograms(
        [(p.name, p.values, None) if p.values is not None else (p.name, None, p.top) for p in shown]
    )
    more = len(profiles) - len(shown)
    caption = "Training split, per feature" + (
        f" (the first {len(shown)} of {len(profiles)})" if more else ""
    )
    return (
        "<h3>Rows per split</h3>"
        + counts
        + f"<h3>Features ({len(profiles)}), profiled on the training split</h3>"
        + table(["feature", "type", "values", "nulls", "summary"], profile_rows)
        + figure(hist, caption, "histograms")
    )


def _search(data: ReportInput) -> str:
    if not data.trials:
        return note(
            "No search: the estimator was fit once with the parameters below "
            "(spec.search was not set)."
        )
    trials = sorted(data.trials, key=lambda t: (t.rank, t.candidate))
    best = trials[0].candidate
    metric = data.cv[0] if data.cv else data.key_metric
    ordered = sorted(data.trials, key=lambda t: t.candidate)
    plot = figures.trial_scores(
        [t.candidate for t in ordered],
        [t.mean for t in ordered],
        [t.std for t in ordered],
        best,
        metric,
    )
    folds = f" over {data.folds} folds" if data.folds else ""
    rows = [
        (
            t.rank,
            t.candidate,
            json.dumps(dict(t.params), sort_keys=True, default=str),
            t.mean,
            t.std,
            t.fit_seconds if t.fit_seconds is not None else "",
        )
        for t in trials
    ]
    return (
        f"<p>{len(trials)} candidates scored by mean cross-validated {esc(metric)}{esc(folds)}; "
        f"the best (candidate {best}) was refit on the whole training split.</p>"
        + figure(plot, f"Mean CV {metric} per candidate, ± one standard deviation", "trials")
        + table(["rank", "candidate", "parameters", f"mean {metric}", "std", "fit seconds"], rows)
    )


def _parameters(data: ReportInput) -> str:
    rows = [(k, json.dumps(v, default=str)) for k, v in sorted(data.params.items())]
    body = table(["parameter", "value"], rows) if rows else note("The estimator's defaults.")
    if data.cv:
        body += f"<p>Best mean cross-validated {esc(data.cv[0])}: {esc(fmt(data.cv[1]))}</p>"
    if data.environment:
        body += "<h3>Environment</h3>" + table(
            ["package", "version"], sorted(data.environment.items())
        )
    return body


def _metrics(data: ReportInput) -> str:
    splits = [s for s in ("validation", "test") if data.metrics.get(s)]
    names: list[str] = []
    for s in splits:
        names.extend(m for m in data.metrics[s] if m not in names)
    rows = [[m, *[data.metrics[s].get(m, "") for s in splits]] for m in names]
    body = (
        table(["metric", *splits], rows)
        if rows
        else note("No metric could be computed on the held-out splits.")
    )
    body += "<h3>Gates (on the test split)</h3>"
    if not data.gates:
        body += note("No gates: every run of this spec registers a version.")
        return body
    gate_rows = [
        [
            cell(g.gate),
            cell(g.value if g.value is not None else ""),
            cell("passed" if g.passed else "failed", cls="pass" if g.passed else "fail"),
        ]
        for g in data.gates
    ]
    failed = sum(1 for g in data.gates if not g.passed)
    verdict = (
        '<p class="pass">All gates passed.</p>'
        if not failed
        else f'<p class="fail">{failed} of {len(data.gates)} gates failed: '
        "no model version is registered.</p>"
    )
    return body + table(["gate", "value", "outcome"], gate_rows, raw=True) + verdict


def _evaluation_title(data: ReportInput) -> str:
    return "Confusion matrix, ROC and PR curves" if data.task == "classification" else "Residuals"


def _test_xy(data: ReportInput) -> tuple[pd.DataFrame, np.ndarray]:
    test = analysis.sample(data.splits["test"], analysis.PLOT_ROWS, data.seed)
    columns = [name for name, _ in data.features]
    return test[columns], test[data.target].to_numpy()


def _evaluation(data: ReportInput) -> str:
    if data.splits["test"].empty:
        return note("The test split is empty.")
    X, y = _test_xy(data)
    if data.task == "regression":
        r = analysis.regressor(data.fitted, X, y)
        return figure(
            figures.residuals(r.y_true, r.y_pred),
            f"Test split ({len(y)} rows): residual = actual - predicted",
            "residuals",
        )
    c = analysis.classifier(data.fitted, X, y)
    parts = [
        figure(
            figures.confusion(c.confusion, c.labels),
            f"Confusion matrix on the test split ({len(y)} rows)",
            "confusion",
        )
    ]
    if c.roc:
        each = "the positive class" if len(c.labels) == 2 else "each class against the rest"
        parts.append(
            figure(
                figures.curves(
                    "roc",
                    [(k.label, k.x, k.y, k.area) for k in c.roc],
                    x_label="false positive rate",
                    y_label="true positive rate",
                    diagonal=True,
                ),
                f"ROC curves, {each} (area under the curve)",
                "roc",
            )
        )
        parts.append(
            figure(
                figures.curves(
                    "pr",
                    [(k.label, k.x, k.y, k.area) for k in c.pr],
                    x_label="recall",
                    y_label="precision",
                    diagonal=False,
                ),
                f"Precision-recall curves, {each} (average precision)",
                "pr",
            )
        )
        return '<div class="figures">' + "".join(parts) + "</div>"
    return (
        '<div class="figures">'
        + "".join(parts)
        + "</div>"
        + note("No ROC or PR curves: the model gives neither probabilities nor scores.")
    )


def _importance(data: ReportInput) -> str:
    if data.splits["test"].empty:
        return note("The test split is empty.")
    test = analysis.sample(data.splits["test"], analysis.IMPORTANCE_ROWS, data.seed)
    columns = [name for name, _ in data.features]
    rows = analysis.importances(
        data.fitted,
        test[columns],
        test[data.target].to_numpy(),
        scoring=data.scoring,
        seed=data.seed,
    )
    shown = rows[:MAX_IMPORTANCES]
    metric = data.key_metric or ("accuracy" if data.task == "classification" else "r2")
    plot = figures.importances(
        [r.feature for r in shown], [r.mean for r in shown], [r.std for r in shown]
    )
    caption = (
        f"Permutation importance on the test split ({len(test)} rows, "
        f"{analysis.IMPORTANCE_REPEATS} shuffles each), scored by {metric}"
    )
    if len(rows) > len(shown):
        caption += f"; the top {len(shown)} of {len(rows)} features"
    return figure(plot, caption, "importance") + table(
        ["feature", f"mean drop in {metric}", "std"], [(r.feature, r.mean, r.std) for r in rows]
    )


__all__ = ["SECTIONS", "GateOutcome", "ReportInput", "TrialRow", "render"]

"""The model report's page, rendered from small fitted models (no S3, no browser):
every section and figure present, every text escaped, nothing that loads or runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import LinearSVC

from kubeml.runtime.report import GateOutcome, ReportInput, TrialRow, render
from tests.support.report_page import check, parse

HOSTILE = '<script>alert("x")</script>'


def _frames(target: np.ndarray, X: np.ndarray, names: list[str]) -> dict[str, pd.DataFrame]:
    frame = pd.DataFrame(X, columns=names)
    frame["city"] = np.where(X[:, 0] > 0, HOSTILE, "oslo")
    frame["y"] = target
    return {"train": frame.iloc[:120], "validation": frame.iloc[:0], "test": frame.iloc[120:]}


def _input(model: object, task: str, splits: dict[str, pd.DataFrame], **kw: object) -> ReportInput:
    names = [c for c in splits["train"].columns if c not in ("y", "city")]
    X = splits["train"][names]
    model.fit(X, splits["train"]["y"])  # type: ignore[attr-defined]
    args: dict[str, object] = {
        "run": f"ns/{HOSTILE}",
        "model": "m",
        "estimator": "e",
        "task": task,
        "dataset": "d",
        "dataset_version": "a" * 64,
        "target": "y",
        "features": [(n, "number") for n in names],
        "splits": splits,
        "fitted": model,
        "params": {"C": 1.0, HOSTILE: HOSTILE},
        "metrics": {"test": {"accuracy": 0.9}},
        "gates": [GateOutcome("accuracy >= 0.85", True, 0.9), GateOutcome(HOSTILE, False, None)],
        **kw,
    }
    return ReportInput(**args)  # type: ignore[arg-type]


def test_a_classifier_report_escapes_every_text_and_loads_nothing() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    splits = _frames(y, X, ["a", HOSTILE, "c"])
    trials = [TrialRow(i, {"C": c}, 0.8 + i / 100, 0.01, 3 - i) for i, c in enumerate((1, 2, 3))]
    html = render(
        _input(LogisticRegression(), "classification", splits, trials=trials, cv=("accuracy", 0.9))
    )
    assert "<script" not in html and html.count("&lt;script&gt;") >= 4
    page = parse(html)
    check(page, {"histograms", "trials", "confusion", "roc", "pr", "importance"})
    assert "2 of 2" not in html and "1 of 2 gates failed" in html
    assert "<image" not in html and "data:" not in html  # vector only: no embedded rasters


def test_without_probabilities_or_a_search_the_report_says_so() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(160, 2))
    y = (X[:, 0] > 0).astype(int)
    # LinearSVC has decision_function: curves from its scores.
    html = render(_input(LinearSVC(), "classification", _frames(y, X, ["a", "b"])))
    check(parse(html), {"histograms", "confusion", "roc", "pr", "importance"})
    assert "No search" in html


def test_a_regressor_report_has_residual_plots() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(160, 2))
    y = 3 * X[:, 0] - X[:, 1] + rng.normal(scale=0.1, size=160)
    html = render(_input(LinearRegression(), "regression", _frames(y, X, ["a", "b"])))
    check(parse(html), {"histograms", "residuals", "importance"})
    # The same input draws the same page: no dates, ids salted per figure.
    again = render(_input(LinearRegression(), "regression", _frames(y, X, ["a", "b"])))
    assert again == html

"""Predicting a split and measuring it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...api.estimators import Task
from .metrics import MetricValues, compute_metrics


def evaluate(
    model: Any,
    task: Task,
    names: Sequence[str],
    frame: pd.DataFrame,
    columns: Sequence[str],
    target: str,
) -> MetricValues:
    """Metrics of ``model`` on ``frame`` (empty when the split has no rows)."""
    if frame.empty:
        return {}
    X = frame[list(columns)]
    y = frame[target].to_numpy()
    y_pred = model.predict(X)
    if task == "regression":
        return compute_metrics(task, names, y, y_pred)
    proba: np.ndarray | None = None
    decision: np.ndarray | None = None
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X))
    elif hasattr(model, "decision_function"):
        decision = np.asarray(model.decision_function(X))
    classes = list(getattr(model, "classes_", []))
    return compute_metrics(task, names, y, y_pred, classes=classes, proba=proba, decision=decision)

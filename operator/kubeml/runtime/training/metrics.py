"""Metrics on a split, computed with scikit-learn's own functions (pure).

Choices, where a metric's name alone is ambiguous:

- Binary classification: ``f1``, ``precision`` and ``recall`` score the positive
  class, which is the last of the model's sorted classes (1 of {0, 1}, True of
  {False, True}, "yes" of {"no", "yes"}): scikit-learn's own convention.
- Multiclass: ``f1``, ``precision`` and ``recall`` are support-weighted averages
  (scikit-learn's ``*_weighted``). A weighted average reduces to the binary score's
  spirit (big classes count more) and is always defined; ``*_macro`` is there for
  an unweighted view.
- ``roc_auc``: binary from the positive class's probability (or the decision
  function for models without probabilities); multiclass one-vs-rest, weighted by
  support.
- ``log_loss`` needs probabilities; a model without them gets ``None``.
- ``rmse`` is the square root of ``mse``; ``mape`` is a fraction, not a percentage.

A metric that is undefined on the split (one class only, no probabilities) is
left out of the result rather than reported as NaN: NaN is not JSON, and the
registry's metrics are numbers. A gate on a missing metric fails as "not computed".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from ...api.estimators import METRICS, Task

MetricValues = dict[str, float]


def positive_label(classes: Sequence[Any]) -> Any:
    return classes[-1]


def _classification(
    name: str,
    y_true: Any,
    y_pred: Any,
    classes: Sequence[Any],
    proba: np.ndarray | None,
    decision: np.ndarray | None,
) -> float | None:
    binary = len(classes) == 2
    pos = positive_label(classes)
    averaged: dict[str, Callable[..., Any]] = {
        "f1": skm.f1_score,
        "precision": skm.precision_score,
        "recall": skm.recall_score,
    }
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y_true, y_pred))
    if name in averaged:
        fn = averaged[name]
        if binary:
            return float(fn(y_true, y_pred, pos_label=pos, average="binary", zero_division=0))
        return float(fn(y_true, y_pred, average="weighted", zero_division=0))
    base, _, average = name.partition("_")
    if base in averaged and average in ("macro", "weighted"):
        return float(averaged[base](y_true, y_pred, average=average, zero_division=0))
    if name == "roc_auc":
        return _roc_auc(y_true, classes, proba, decision)
    if name == "log_loss":
        if proba is None:
            return None
        return float(skm.log_loss(y_true, proba, labels=list(classes)))
    raise KeyError(name)


def _roc_auc(
    y_true: Any, classes: Sequence[Any], proba: np.ndarray | None, decision: np.ndarray | None
) -> float | None:
    if len(classes) == 2:
        if proba is not None:
            score = proba[:, 1]
        elif decision is not None:
            score = decision if decision.ndim == 1 else decision[:, -1]
        else:
            return None
        return float(skm.roc_auc_score(np.asarray(y_true) == positive_label(classes), score))
    if proba is not None:
        return float(
            skm.roc_auc_score(
                y_true, proba, multi_class="ovr", average="weighted", labels=list(classes)
            )
        )
    if decision is None:
        return None
    # One-vs-rest on decision scores: each class's AUC depends only on its own
    # column's ranking, so unnormalised scores give the same value as probabilities.
    indicator = label_binarize(y_true, classes=list(classes))
    return float(skm.roc_auc_score(indicator, decision, average="weighted"))


_REGRESSION: dict[str, Callable[[Any, Any], Any]] = {
    "r2": skm.r2_score,
    "mae": skm.mean_absolute_error,
    "mse": skm.mean_squared_error,
    "rmse": skm.root_mean_squared_error,
    "mape": skm.mean_absolute_percentage_error,
    "max_error": skm.max_error,
}


def compute_metrics(
    task: Task,
    names: Sequence[str],
    y_true: Any,
    y_pred: Any,
    *,
    classes: Sequence[Any] | None = None,
    proba: np.ndarray | None = None,
    decision: np.ndarray | None = None,
) -> MetricValues:
    """``{metric: value}`` for each name whose value is defined on this split."""
    if len(y_true) == 0:
        return {}
    out: MetricValues = {}
    for name in names:
        if name not in METRICS[task]:
            raise KeyError(f"{name} is not a {task} metric")
        try:
            with warnings.catch_warnings():
                # Undefined cases (a class absent from the split) are reported as None.
                warnings.simplefilter("ignore")
                if task == "regression":
                    value: float | None = float(_REGRESSION[name](y_true, y_pred))
                else:
                    if classes is None:
                        raise ValueError("classification metrics need the model's classes")
                    value = _classification(name, y_true, y_pred, classes, proba, decision)
        except ValueError:
            value = None
        if value is not None and math.isfinite(value):
            out[name] = value
    return out

"""Metric computation agrees with scikit-learn.metrics, with the documented choices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from kubeml.api.estimators import METRICS
from kubeml.runtime.training.metrics import compute_metrics, positive_label

RNG = np.random.default_rng(7)


def _binary(labels: tuple[str, str] = ("no", "yes")) -> tuple[np.ndarray, ...]:
    y = RNG.choice(labels, 200)
    proba1 = np.clip(np.where(y == labels[1], 0.7, 0.3) + RNG.normal(0, 0.2, 200), 0.01, 0.99)
    proba = np.column_stack([1 - proba1, proba1])
    pred = np.where(proba1 > 0.5, labels[1], labels[0])
    return y, pred, proba


def _multiclass() -> tuple[np.ndarray, ...]:
    y = RNG.integers(0, 3, 300)
    logits = RNG.normal(size=(300, 3)) + np.eye(3)[y] * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba.argmax(axis=1), proba


def test_binary_metrics_match_sklearn_with_the_positive_class() -> None:
    y, pred, proba = _binary()
    classes = ["no", "yes"]
    got = compute_metrics(
        "classification", METRICS["classification"], y, pred, classes=classes, proba=proba
    )
    pos = "yes"
    assert positive_label(classes) == pos
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, pos_label=pos),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "f1_weighted": skm.f1_score(y, pred, average="weighted"),
        "precision": skm.precision_score(y, pred, pos_label=pos),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall": skm.recall_score(y, pred, pos_label=pos),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y == pos, proba[:, 1]),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }
    assert got == pytest.approx(expected)


def test_multiclass_metrics_match_sklearn_weighted_and_ovr() -> None:
    y, pred, proba = _multiclass()
    classes = [0, 1, 2]
    got = compute_metrics(
        "classification", METRICS["classification"], y, pred, classes=classes, proba=proba
    )
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, average="weighted"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "f1_weighted": skm.f1_score(y, pred, average="weighted"),
        "precision": skm.precision_score(y, pred, average="weighted"),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall": skm.recall_score(y, pred, average="weighted"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted"),
        "log_loss": skm.log_loss(y, proba),
    }
    assert got == pytest.approx(expected)


def test_multiclass_roc_auc_from_decision_scores_equals_ovr_on_probabilities() -> None:
    y, pred, proba = _multiclass()
    # Per-class monotone transforms keep each class's ranking, hence its AUC.
    decision = np.log(proba) * 3 + 5
    got = compute_metrics(
        "classification", ["roc_auc"], y, pred, classes=[0, 1, 2], decision=decision
    )
    expected = skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    assert got["roc_auc"] == pytest.approx(expected)


def test_binary_roc_auc_from_a_decision_function() -> None:
    y, pred, proba = _binary(("a", "b"))
    decision = np.log(proba[:, 1] / proba[:, 0])
    got = compute_metrics(
        "classification", ["roc_auc", "log_loss"], y, pred, classes=["a", "b"], decision=decision
    )
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y == "b", proba[:, 1]))
    assert "log_loss" not in got  # no probabilities: not computable, left out


def test_regression_metrics_match_sklearn() -> None:
    y = RNG.normal(10, 3, 200)
    pred = y + RNG.normal(0, 1, 200)
    got = compute_metrics("regression", METRICS["regression"], y, pred)
    expected = {
        "r2": skm.r2_score(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        "mse": skm.mean_squared_error(y, pred),
        "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        "mape": skm.mean_absolute_percentage_error(y, pred),
        "max_error": skm.max_error(y, pred),
    }
    assert got == pytest.approx(expected)


def test_undefined_metric_is_left_out_not_nan() -> None:
    y = np.array([1, 1, 1])  # one class only: roc_auc is undefined
    proba = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    got = compute_metrics(
        "classification",
        ["roc_auc", "accuracy"],
        y,
        np.array([1, 1, 0]),
        classes=[0, 1],
        proba=proba,
    )
    assert "roc_auc" not in got
    assert got["accuracy"] == pytest.approx(2 / 3)


def test_empty_split_gives_no_metrics() -> None:
    assert compute_metrics("regression", ["r2"], np.array([]), np.array([])) == {}


def test_metric_of_the_other_task_is_rejected() -> None:
    with pytest.raises(KeyError):
        compute_metrics("regression", ["accuracy"], np.array([1.0]), np.array([1.0]))

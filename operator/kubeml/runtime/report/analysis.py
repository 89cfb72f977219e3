"""What the report shows, computed from the data and the fitted model (no drawing here).

Everything is measured on the held-out test split, the split the gates judge, with
scikit-learn's own functions. The work is bounded so that a large dataset does not
make the report cost more than the training: permutation importance looks at up to
``IMPORTANCE_ROWS`` rows, plots at up to ``PLOT_ROWS`` points.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.preprocessing import label_binarize

IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 5
PLOT_ROWS = 5000
TOP_CATEGORIES = 10
NUMERIC = frozenset({"integer", "number"})


@dataclass(frozen=True)
class FeatureProfile:
    name: str
    type: str
    count: int  # non-null values in the training split
    nulls: int
    stats: dict[str, float] = field(default_factory=dict)  # numeric: mean, std, min, ...
    distinct: int | None = None
    top: dict[str, int] = field(default_factory=dict)  # categorical: most frequent values
    values: np.ndarray | None = None  # numeric values, for the histogram


def profile(frame: pd.DataFrame, features: Sequence[tuple[str, str]]) -> list[FeatureProfile]:
    """Per feature of the training split: counts, and either summary statistics or the
    most frequent values."""
    out = []
    for name, type_ in features:
        col = frame[name]
        nulls = int(col.isna().sum())
        present = col.dropna()
        if type_ in NUMERIC:
            values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            stats = {}
            if values.size:
                q = np.quantile(values, [0.25, 0.5, 0.75])
                stats = {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "min": float(values.min()),
                    "p25": float(q[0]),
                    "median": float(q[1]),
                    "p75": float(q[2]),
                    "max": float(values.max()),
                }
            out.append(FeatureProfile(name, type_, len(present), nulls, stats, values=values))
        else:
            counts = present.astype(str).value_counts()
            top = {str(k): int(v) for k, v in counts.head(TOP_CATEGORIES).items()}
            out.append(
                FeatureProfile(name, type_, len(present), nulls, distinct=len(counts), top=top)
            )
    return out


@dataclass(frozen=True)
class Curve:
    label: str
    x: np.ndarray
    y: np.ndarray
    area: float


@dataclass(frozen=True)
class ClassifierEvaluation:
    labels: list[Any]
    confusion: np.ndarray
    roc: list[Curve]  # empty when the model gives neither probabilities nor scores
    pr: list[Curve]


@dataclass(frozen=True)
class RegressorEvaluation:
    y_true: np.ndarray
    y_pred: np.ndarray


def _scores(model: Any, X: pd.DataFrame) -> np.ndarray | None:
    """Per-class scores (n_rows x n_classes): probabilities, else decision values."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))
    if hasattr(model, "decision_function"):
        d = np.asarray(model.decision_function(X))
        return np.column_stack([-d, d]) if d.ndim == 1 else d
    return None


def classifier(model: Any, X: pd.DataFrame, y: np.ndarray) -> ClassifierEvaluation:
    labels = list(getattr(model, "classes_", np.unique(y)))
    y_pred = model.predict(X)
    matrix = skm.confusion_matrix(y, y_pred, labels=labels)
    scores = _scores(model, X)
    roc: list[Curve] = []
    pr: list[Curve] = []
    if scores is not None:
        # Binary: the positive class (the last), as the metrics score it; else one
        # curve per class against the rest.
        shown = [len(labels) - 1] if len(labels) == 2 else list(range(len(labels)))
        truth = label_binarize(y, classes=labels)
        if len(labels) == 2:
            truth = np.column_stack([1 - truth[:, 0], truth[:, 0]])
        for i in shown:
            positives = truth[:, i]
            if positives.min() == positives.max():
                continue  # a class absent from the test split has no curve
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fpr, tpr, _ = skm.roc_curve(positives, scores[:, i])
                precision, recall, _ = skm.precision_recall_curve(positives, scores[:, i])
                ap = skm.average_precision_score(positives, scores[:, i])
            roc.append(Curve(str(labels[i]), fpr, tpr, float(skm.auc(fpr, tpr))))
            pr.append(Curve(str(labels[i]), recall, precision, float(ap)))
    return ClassifierEvaluation(labels, matrix, roc, pr)


def regressor(model: Any, X: pd.DataFrame, y: np.ndarray) -> RegressorEvaluation:
    y_pred = np.asarray(model.predict(X), dtype=float)
    return RegressorEvaluation(np.asarray(y, dtype=float), y_pred)


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


@dataclass(frozen=True)
class Importance:
    feature: str
    mean: float
    std: float


def importances(
    model: Any, X: pd.DataFrame, y: np.ndarray, *, scoring: str | None, seed: int
) -> list[Importance]:
    """Permutation importance of each input column (before preprocessing, so the names
    are the dataset's), most important first. ``scoring`` is a scikit-learn scorer
    name; None uses the estimator's own score (accuracy or r2)."""
    result = permutation_importance(
        model,
        X,
        y,
        scoring=scoring,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
        n_jobs=1,
    )
    rows = [
        Importance(str(name), float(m), float(s))
        for name, m, s in zip(
            X.columns, result.importances_mean, result.importances_std, strict=True
        )
    ]
    return sorted(rows, key=lambda r: (-r.mean, r.feature))

"""Hyper-parameter search: scorers with the right sign, pipeline-prefixed spaces,
seeded folds (pure construction; fitting happens in the caller)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sklearn import metrics as skm
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline

from ...api.estimators import LOWER_IS_BETTER, Task
from ...api.trainingrun import Search
from .features import ESTIMATOR_STEP
from .metrics import positive_label

Scorer = str | Any  # a scikit-learn scorer name, or a scorer object from make_scorer

# Metric -> scikit-learn scorer name. Lower-is-better metrics map to the neg_
# scorers: a search always maximises, so their cross-validated score is negative.
_SCORERS: dict[str, str] = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "f1_weighted": "f1_weighted",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "log_loss": "neg_log_loss",
    "r2": "r2",
    "mae": "neg_mean_absolute_error",
    "mse": "neg_mean_squared_error",
    "rmse": "neg_root_mean_squared_error",
    "mape": "neg_mean_absolute_percentage_error",
    "max_error": "neg_max_error",
}
_POSITIVE_CLASS = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
# Metrics whose scorer needs predict_proba (multiclass roc_auc: sklearn's ovr scorer).
NEEDS_PROBA = frozenset({"log_loss"})


def scorer_for(metric: str, classes: Sequence[Any] | None = None) -> Scorer:
    """The scikit-learn scorer that ranks candidates the way ``metric`` does, with the
    same averaging choices as ``metrics.compute_metrics``."""
    binary = classes is not None and len(classes) == 2
    if metric in _POSITIVE_CLASS:
        if binary:
            assert classes is not None
            # The positive class explicitly: sklearn's "f1" assumes pos_label=1, which
            # fails for string labels such as "yes"/"no".
            return skm.make_scorer(
                _POSITIVE_CLASS[metric], pos_label=positive_label(classes), zero_division=0
            )
        return f"{metric}_weighted"
    if metric == "roc_auc":
        return "roc_auc" if binary or classes is None else "roc_auc_ovr_weighted"
    return _SCORERS[metric]


def needs_proba(metric: str, classes: Sequence[Any] | None) -> bool:
    return metric in NEEDS_PROBA or (
        metric == "roc_auc" and classes is not None and len(classes) > 2
    )


def natural_score(metric: str, cv_score: float) -> float:
    """A cross-validated score in the metric's own units (mae positive again)."""
    return -cv_score if metric in LOWER_IS_BETTER else cv_score


def scoring_metric(search: Search, metrics: Sequence[str]) -> str:
    return search.scoring or metrics[0]


def prefixed(params: Mapping[str, Any], step: str = ESTIMATOR_STEP) -> dict[str, Any]:
    return {f"{step}__{k}": v for k, v in params.items()}


def unprefixed(params: Mapping[str, Any], step: str = ESTIMATOR_STEP) -> dict[str, Any]:
    head = f"{step}__"
    return {k.removeprefix(head): v for k, v in params.items() if k.startswith(head)}


def folds(task: Task, n: int, seed: int) -> KFold | StratifiedKFold:
    if task == "classification":
        return StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
    return KFold(n_splits=n, shuffle=True, random_state=seed)


def build_search(
    pipeline: Pipeline,
    search: Search,
    *,
    task: Task,
    metric: str,
    classes: Sequence[Any] | None,
    n_jobs: int,
) -> BaseSearchCV:
    """A seeded grid or random search over the pipeline's estimator step.

    ``refit=False``: the caller refits the winner itself, with the estimator's own
    n_jobs (during the search the cores go to parallel candidates instead).
    ``error_score="raise"``: a candidate that cannot fit is a bad spec, not a NaN to
    rank last silently.
    """
    space = prefixed({k: list(v) for k, v in (search.space or {}).items()})
    common: dict[str, Any] = {
        "scoring": scorer_for(metric, classes),
        "cv": folds(task, search.folds, search.seed),
        "n_jobs": n_jobs,
        "refit": False,
        "error_score": "raise",
    }
    if search.strategy == "grid":
        return GridSearchCV(pipeline, space, **common)
    return RandomizedSearchCV(
        pipeline, space, n_iter=search.trials or 10, random_state=search.seed, **common
    )

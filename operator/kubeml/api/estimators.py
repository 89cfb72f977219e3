"""The estimators a TrainingRun may name, and the metrics each task computes.

This table is the allowlist: only these scikit-learn classes are ever
instantiated, and only with the parameters listed here (checked against the
installed scikit-learn by the unit tests). The CRD's CEL rules are generated
from it, so admission and the operator agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class EstimatorSpec:
    """A short name's class, task and tunable parameters."""

    cls: str  # "module:Class"
    task: Task
    params: tuple[str, ...]


_FOREST = (
    "n_estimators",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
    "max_leaf_nodes",
    "bootstrap",
    "max_samples",
    "ccp_alpha",
    "random_state",
)
_GB = (
    "n_estimators",
    "learning_rate",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "subsample",
    "max_features",
    "max_leaf_nodes",
    "random_state",
    "n_iter_no_change",
    "validation_fraction",
    "tol",
    "ccp_alpha",
)
_HGB = (
    "learning_rate",
    "max_iter",
    "max_leaf_nodes",
    "max_depth",
    "min_samples_leaf",
    "l2_regularization",
    "max_features",
    "max_bins",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
    "tol",
    "random_state",
)
_TREE = (
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
    "max_leaf_nodes",
    "ccp_alpha",
    "random_state",
)
_KNN = ("n_neighbors", "weights", "algorithm", "leaf_size", "p", "metric")
_SVM = ("C", "kernel", "degree", "gamma", "coef0", "tol", "max_iter")

ESTIMATORS: dict[str, EstimatorSpec] = {
    "logistic-regression": EstimatorSpec(
        "sklearn.linear_model:LogisticRegression",
        "classification",
        (
            "C",
            "l1_ratio",
            "fit_intercept",
            "class_weight",
            "solver",
            "max_iter",
            "tol",
            "random_state",
        ),
    ),
    "random-forest-classifier": EstimatorSpec(
        "sklearn.ensemble:RandomForestClassifier",
        "classification",
        (*_FOREST, "criterion", "class_weight"),
    ),
    "random-forest-regressor": EstimatorSpec(
        "sklearn.ensemble:RandomForestRegressor",
        "regression",
        (*_FOREST, "criterion"),
    ),
    "gradient-boosting-classifier": EstimatorSpec(
        "sklearn.ensemble:GradientBoostingClassifier",
        "classification",
        _GB,
    ),
    "gradient-boosting-regressor": EstimatorSpec(
        "sklearn.ensemble:GradientBoostingRegressor",
        "regression",
        (*_GB, "loss", "alpha"),
    ),
    "hist-gradient-boosting-classifier": EstimatorSpec(
        "sklearn.ensemble:HistGradientBoostingClassifier",
        "classification",
        (*_HGB, "class_weight"),
    ),
    "hist-gradient-boosting-regressor": EstimatorSpec(
        "sklearn.ensemble:HistGradientBoostingRegressor",
        "regression",
        (*_HGB, "loss"),
    ),
    "decision-tree-classifier": EstimatorSpec(
        "sklearn.tree:DecisionTreeClassifier",
        "classification",
        (*_TREE, "criterion", "class_weight"),
    ),
    "decision-tree-regressor": EstimatorSpec(
        "sklearn.tree:DecisionTreeRegressor",
        "regression",
        (*_TREE, "criterion"),
    ),
    "svc": EstimatorSpec(
        "sklearn.svm:SVC",
        "classification",
        (*_SVM, "class_weight", "random_state"),
    ),
    "svr": EstimatorSpec("sklearn.svm:SVR", "regression", (*_SVM, "epsilon")),
    "knn-classifier": EstimatorSpec(
        "sklearn.neighbors:KNeighborsClassifier",
        "classification",
        _KNN,
    ),
    "knn-regressor": EstimatorSpec("sklearn.neighbors:KNeighborsRegressor", "regression", _KNN),
    "ridge": EstimatorSpec(
        "sklearn.linear_model:Ridge",
        "regression",
        ("alpha", "fit_intercept", "solver", "max_iter", "tol", "positive", "random_state"),
    ),
    "ridge-classifier": EstimatorSpec(
        "sklearn.linear_model:RidgeClassifier",
        "classification",
        (
            "alpha",
            "fit_intercept",
            "solver",
            "max_iter",
            "tol",
            "class_weight",
            "positive",
            "random_state",
        ),
    ),
    "linear-regression": EstimatorSpec(
        "sklearn.linear_model:LinearRegression",
        "regression",
        ("fit_intercept", "positive"),
    ),
}

# Every parameter any allowlisted estimator takes: the CRD declares exactly these,
# so a misspelt name is rejected at admission (strict field validation).
ALL_PARAMS: tuple[str, ...] = tuple(sorted({p for e in ESTIMATORS.values() for p in e.params}))

EstimatorName = Literal[
    "logistic-regression",
    "random-forest-classifier",
    "random-forest-regressor",
    "gradient-boosting-classifier",
    "gradient-boosting-regressor",
    "hist-gradient-boosting-classifier",
    "hist-gradient-boosting-regressor",
    "decision-tree-classifier",
    "decision-tree-regressor",
    "svc",
    "svr",
    "knn-classifier",
    "knn-regressor",
    "ridge",
    "ridge-classifier",
    "linear-regression",
]

METRICS: dict[Task, tuple[str, ...]] = {
    "classification": (
        "accuracy",
        "balanced_accuracy",
        "f1",
        "f1_macro",
        "f1_weighted",
        "precision",
        "precision_macro",
        "recall",
        "recall_macro",
        "roc_auc",
        "log_loss",
    ),
    "regression": ("r2", "mae", "mse", "rmse", "mape", "max_error"),
}
# Metrics where smaller is better; gates and searches need the direction.
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "mse", "rmse", "mape", "max_error"})
ALL_METRICS = tuple(sorted({m for ms in METRICS.values() for m in ms}))
DEFAULT_METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "f1_macro"),
    "regression": ("r2", "rmse"),
}

MetricName = Literal[
    "accuracy",
    "balanced_accuracy",
    "f1",
    "f1_macro",
    "f1_weighted",
    "precision",
    "precision_macro",
    "recall",
    "recall_macro",
    "roc_auc",
    "log_loss",
    "r2",
    "mae",
    "mse",
    "rmse",
    "mape",
    "max_error",
]


def task_of(estimator: str) -> Task:
    return ESTIMATORS[estimator].task


def names_for(task: Task) -> list[str]:
    return sorted(n for n, e in ESTIMATORS.items() if e.task == task)


def _cel_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def metrics_rule() -> str:
    """CEL on a TrainingRun spec: listed metrics fit the estimator's task."""
    classifiers = _cel_list(names_for("classification"))
    return (
        "!has(self.metrics) || ("
        f"self.estimator.name in {classifiers}"
        f" ? self.metrics.all(m, m in {_cel_list(METRICS['classification'])})"
        f" : self.metrics.all(m, m in {_cel_list(METRICS['regression'])}))"
    )

"""Fitting the pipeline, with the search when the spec asks for one."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from ...api.estimators import DEFAULT_METRICS, ESTIMATORS, METRICS, Task
from ...api.trainingrun import Preprocessing, TrainingRunSpec
from . import trials
from .errors import TrainError
from .estimator import PARALLEL_FIT, effective_params, make_estimator, validate_space
from .features import ESTIMATOR_STEP, FeatureColumn, build_pipeline
from .search import folds, natural_score, needs_proba, scorer_for, scoring_metric


@dataclass
class Fitted:
    model: Pipeline
    task: Task
    best_params: dict[str, Any]
    cv_score: float | None = None
    cv_metric: str | None = None
    trials: list[trials.Trial] | None = None
    plan: SearchPlan | None = None
    seconds: float = 0.0  # the search and the final fit
    search_seconds: float = 0.0  # scoring every candidate on every fold


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Params as plain JSON values (numpy scalars from a search become Python ones)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


def run_seed(spec: TrainingRunSpec) -> int:
    """The run's seed: the search's (the only seed a TrainingRun spec has), else 0.
    Fixed either way, so a rerun with the same spec gives the same model."""
    return spec.search.seed if spec.search else 0


def metric_names(spec: TrainingRunSpec) -> list[str]:
    task = ESTIMATORS[spec.estimator.name].task
    names = list(spec.metrics or DEFAULT_METRICS[task])
    return [m for m in names if m in METRICS[task]]


def fit(
    spec: TrainingRunSpec,
    features: Sequence[FeatureColumn],
    X: pd.DataFrame,
    y: pd.Series,
    *,
    cpu: int,
    source: TrialSource | None = None,
) -> Fitted:
    """Fit on ``X``/``y`` with at most ``cpu`` cores.

    threadpool_limits bounds BLAS and OpenMP (HistGradientBoosting, k-NN): left
    alone they start one thread per core of the node, not of the pod's CPU limit.
    """
    name = spec.estimator.name
    task = ESTIMATORS[name].task
    searched = list(spec.search.space or {}) if spec.search else []
    params = effective_params(name, spec.estimator.params, seed=run_seed(spec), searched=searched)
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=cpu):
            if spec.search is None:
                model = build_pipeline(
                    features, make_estimator(name, params, n_jobs=cpu), spec.preprocessing
                )
                model.fit(X, y)
                result = Fitted(model, task, jsonable(params))
            else:
                result = _search_then_refit(spec, features, X, y, params, cpu, source)
    except InvalidParameterError as err:
        raise TrainError("InvalidParams", f"estimator {name}: {err}") from err
    except ValueError as err:
        # Deterministic: the same data and params fail the same way on a retry.
        raise TrainError("FitFailed", f"estimator {name} could not fit: {err}") from err
    result.seconds = time.perf_counter() - started
    if name in PARALLEL_FIT:
        # The artifact should not carry this pod's core count into the server.
        result.model.set_params(**{f"{ESTIMATOR_STEP}__n_jobs": None})
    return result


@dataclass(frozen=True)
class CandidateBuilder:
    """A candidate's unfitted pipeline: the estimator's fixed parameters overlaid with
    the candidate's, and the run's preprocessing with the candidate's choices."""

    features: tuple[FeatureColumn, ...]
    estimator: BaseEstimator
    preprocessing: Preprocessing

    def __call__(self, params: Mapping[str, Any]) -> Pipeline:
        est, pre = trials.split(params)
        return build_pipeline(
            self.features,
            clone(self.estimator).set_params(**est),
            with_choices(self.preprocessing, pre),
        )


def with_choices(options: Preprocessing, choices: Mapping[str, Any]) -> Preprocessing:
    """The run's preprocessing with a candidate's searched choices applied."""
    if not choices:
        return options
    numeric = {"scaler": choices.get("scaler"), "imputer": choices.get("numericImputer")}
    categorical = {"max_categories": choices.get("maxCategories")}
    return options.model_copy(
        update={
            "numeric": options.numeric.model_copy(
                update={k: v for k, v in numeric.items() if v is not None}
            ),
            "categorical": options.categorical.model_copy(
                update={k: v for k, v in categorical.items() if v is not None}
            ),
        }
    )


@dataclass
class SearchPlan:
    """Everything every pod of a search agrees on: candidates, folds and scorer."""

    make: CandidateBuilder
    X: pd.DataFrame
    y: pd.Series
    candidates: list[dict[str, Any]]
    splits: list[tuple[np.ndarray, np.ndarray]]
    scorer: Any
    metric: str

    def natural(self, score: float) -> float:
        return natural_score(self.metric, score)

    def evaluate(self, indices: Sequence[int], *, shard: int, cpu: int) -> list[trials.Trial]:
        chosen = [(i, self.candidates[i]) for i in indices]
        try:
            with threadpool_limits(limits=1):
                return trials.evaluate(
                    self.make,
                    chosen,
                    self.X,
                    self.y,
                    splits=self.splits,
                    scorer=self.scorer,
                    metric=self.metric,
                    shard=shard,
                    n_jobs=cpu,
                    natural=self.natural,
                )
        except InvalidParameterError as err:
            raise TrainError("InvalidParams", f"search candidate: {err}") from err
        except ValueError as err:
            raise TrainError("FitFailed", f"a search candidate could not fit: {err}") from err

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline with no candidate's choices applied."""
        return self.make({})


# Where a search's trials come from: scored here, or read from the shards other pods wrote.
TrialSource = Callable[[SearchPlan], list[trials.Trial]]


def plan_search(
    spec: TrainingRunSpec, features: Sequence[FeatureColumn], X: pd.DataFrame, y: pd.Series
) -> SearchPlan:
    """The search's candidates, seeded folds and scorer; raise TrainError for a space
    the estimator cannot take."""
    assert spec.search is not None
    name = spec.estimator.name
    task = ESTIMATORS[name].task
    space = spec.search.space or {}
    params = effective_params(name, spec.estimator.params, seed=run_seed(spec), searched=space)
    # The labels as the fitted classifier will order them (classes_ is np.unique's order).
    classes = np.unique(y.to_numpy()).tolist() if task == "classification" else []
    # One core per candidate: the search parallelises over candidates and folds.
    base = make_estimator(name, params, n_jobs=1)
    validate_space(base, name, space)
    make = CandidateBuilder(tuple(features), base, spec.preprocessing or Preprocessing())
    pipeline = make({})
    metric = scoring_metric(spec.search, metric_names(spec))
    if needs_proba(metric, classes or None) and not hasattr(pipeline, "predict_proba"):
        raise TrainError(
            "InvalidParams",
            f"search.scoring {metric} needs predicted probabilities, which {name} "
            "does not provide with these params",
        )
    try:
        splits = list(folds(task, spec.search.folds, spec.search.seed).split(X, y))
    except ValueError as err:  # e.g. fewer members in a class than folds
        raise TrainError("FitFailed", f"search.folds={spec.search.folds}: {err}") from err
    return SearchPlan(
        make,
        X,
        y,
        trials.candidates(spec.search),
        splits,
        scorer_for(metric, classes or None),
        metric,
    )


def evaluate_all(plan: SearchPlan, cpu: int) -> list[trials.Trial]:
    return plan.evaluate(range(len(plan.candidates)), shard=0, cpu=cpu)


def _search_then_refit(
    spec: TrainingRunSpec,
    features: Sequence[FeatureColumn],
    X: pd.DataFrame,
    y: pd.Series,
    params: dict[str, Any],
    cpu: int,
    source: TrialSource | None,
) -> Fitted:
    name = spec.estimator.name
    task = ESTIMATORS[name].task
    started = time.perf_counter()
    plan = plan_search(spec, features, X, y)
    found = source(plan) if source is not None else evaluate_all(plan, cpu)
    searched = time.perf_counter() - started
    winner = trials.best(found)
    best, choices = trials.split(plan.candidates[winner.candidate])
    final_params = {**params, **best}
    options = with_choices(spec.preprocessing or Preprocessing(), choices)
    model = build_pipeline(features, make_estimator(name, final_params, n_jobs=cpu), options)
    model.fit(X, y)
    cv = plan.natural(winner.mean)
    reported = {
        **jsonable(final_params),
        **{trials.PREPROCESSING + k: v for k, v in choices.items()},
    }
    return Fitted(model, task, reported, cv, plan.metric, found, plan, search_seconds=searched)

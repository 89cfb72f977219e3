"""Constructing an allowlisted estimator with the run's parameters."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import InvalidParameterError

from ...api.estimators import ESTIMATORS
from .errors import TrainError

# Estimators whose n_jobs splits the fit itself across cores. Others either have no
# n_jobs or one that has no effect (LogisticRegression warns since 1.8).
PARALLEL_FIT = frozenset(
    {"random-forest-classifier", "random-forest-regressor", "knn-classifier", "knn-regressor"}
)


def estimator_class(name: str) -> type[BaseEstimator]:
    """The class behind an allowlisted short name (the table, not user input, names it)."""
    module, _, cls = ESTIMATORS[name].cls.partition(":")
    found: type[BaseEstimator] = getattr(importlib.import_module(module), cls)
    return found


def effective_params(
    name: str,
    params: Mapping[str, Any] | None,
    *,
    seed: int,
    searched: Iterable[str] = (),
) -> dict[str, Any]:
    """The user's params plus random_state=seed where the estimator has one and
    neither the params nor the search set it: the same seed gives the same model."""
    out = dict(params or {})
    has_seed = "random_state" in ESTIMATORS[name].params
    if has_seed and "random_state" not in out and "random_state" not in set(searched):
        out["random_state"] = seed
    return out


def make_estimator(name: str, params: Mapping[str, Any], *, n_jobs: int | None) -> BaseEstimator:
    """The estimator, its parameters validated by scikit-learn's own constraints.

    scikit-learn only validates parameters in fit; doing it now fails in seconds
    with a message naming the parameter, not after the data has been loaded.
    """
    cls = estimator_class(name)
    kwargs = dict(params)
    if n_jobs is not None and name in PARALLEL_FIT:
        kwargs["n_jobs"] = n_jobs
    try:
        est = cls(**kwargs)
    except TypeError as err:  # an unknown keyword: admission normally stops it
        raise TrainError("InvalidParams", f"estimator {name}: {err}") from err
    validate(est, name)
    return est


def validate(est: BaseEstimator, name: str) -> None:
    check = getattr(est, "_validate_params", None)
    if check is None:  # a scikit-learn without the private hook: fit will validate
        return
    try:
        check()
    except InvalidParameterError as err:
        raise TrainError("InvalidParams", f"estimator {name}: {err}") from err


def validate_space(est: BaseEstimator, name: str, space: Mapping[str, list[Any]]) -> None:
    """Every candidate value of the search space is a valid value of its parameter."""
    for param, values in space.items():
        for value in values:
            try:
                candidate = clone(est).set_params(**{param: value})
            except (ValueError, TypeError) as err:
                raise TrainError(
                    "InvalidParams", f"search.space.{param}={value!r} for {name}: {err}"
                ) from err
            try:
                validate(candidate, name)
            except TrainError as err:
                raise TrainError(
                    "InvalidParams", f"search.space.{param}={value!r}: {err.message}"
                ) from err

"""The estimator allowlist matches the installed scikit-learn."""

from __future__ import annotations

import importlib
import inspect
from typing import get_args

import pytest

from kubeml.api.estimators import ALL_METRICS, ESTIMATORS, EstimatorName, MetricName


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_allowed_param_is_a_real_parameter(name: str) -> None:
    module, cls_name = ESTIMATORS[name].cls.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    real = set(inspect.signature(cls).parameters)
    assert set(ESTIMATORS[name].params) <= real, set(ESTIMATORS[name].params) - real


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_task_matches_the_estimator_kind(name: str) -> None:
    module, cls_name = ESTIMATORS[name].cls.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    from sklearn.base import is_classifier, is_regressor

    instance = cls()
    assert is_classifier(instance) != is_regressor(instance)
    expected = "classification" if is_classifier(instance) else "regression"
    assert ESTIMATORS[name].task == expected


def test_literals_match_the_tables() -> None:
    assert set(get_args(EstimatorName)) == set(ESTIMATORS)
    assert set(get_args(MetricName)) == set(ALL_METRICS)

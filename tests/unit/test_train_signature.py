"""The signature the ModelVersion records."""

from __future__ import annotations

import numpy as np

from kubeml.api.modelversion import Signature
from kubeml.runtime.training.features import FeatureColumn
from kubeml.runtime.training.signature import build_signature, class_labels

FEATURES = [
    FeatureColumn("a", "number"),
    FeatureColumn("n", "integer"),
    FeatureColumn("c", "category"),
    FeatureColumn("f", "boolean"),
]


def test_classifier_signature() -> None:
    sig = build_signature(
        "classification",
        FEATURES,
        target_type="integer",
        classes=list(np.array([0, 1, 2])),
        has_proba=True,
    )
    assert sig == {
        "task": "classification",
        "inputs": [
            {"name": "a", "dtype": "number"},
            {"name": "n", "dtype": "integer"},
            {"name": "c", "dtype": "category"},
            {"name": "f", "dtype": "boolean"},
        ],
        "outputs": [
            {"name": "predict", "dtype": "integer"},
            {"name": "predict_proba", "dtype": "number"},
        ],
        "classes": ["0", "1", "2"],
    }
    Signature.model_validate(sig)


def test_classifier_without_probabilities_and_string_labels() -> None:
    sig = build_signature(
        "classification",
        FEATURES[:1],
        target_type="category",
        classes=["no", "yes"],
        has_proba=False,
    )
    assert sig["outputs"] == [{"name": "predict", "dtype": "category"}]
    assert sig["classes"] == ["no", "yes"]


def test_regressor_signature() -> None:
    sig = build_signature("regression", FEATURES[:2], target_type="number")
    assert sig["outputs"] == [{"name": "predict", "dtype": "number"}]
    assert "classes" not in sig


def test_class_labels_are_plain_strings() -> None:
    assert class_labels([np.int64(1), np.float64(2.5), np.bool_(True), "x"]) == [
        "1",
        "2.5",
        "True",
        "x",
    ]

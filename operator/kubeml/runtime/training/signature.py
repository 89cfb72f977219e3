"""The model's signature: its inputs, outputs and classes, for the registry and the
server that validates requests against it (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...api.estimators import Task
from ...api.modelversion import Signature
from ...data.types import ColumnType
from .features import FeatureColumn


def prediction_dtype(task: Task, target_type: ColumnType) -> ColumnType:
    # A classifier predicts one of its labels, so its output has the target's type.
    return "number" if task == "regression" else target_type


def class_labels(classes: Sequence[Any]) -> list[str]:
    """Labels as strings, in the order of predict_proba's columns. numpy scalars
    become their Python values first so that 1 is "1", not "np.int64(1)"."""
    return [str(c.item() if hasattr(c, "item") else c) for c in classes]


def build_signature(
    task: Task,
    features: Sequence[FeatureColumn],
    *,
    target_type: ColumnType,
    classes: Sequence[Any] | None = None,
    has_proba: bool = False,
) -> dict[str, Any]:
    outputs: list[dict[str, str]] = [
        {"name": "predict", "dtype": prediction_dtype(task, target_type)}
    ]
    if task == "classification" and has_proba:
        outputs.append({"name": "predict_proba", "dtype": "number"})
    doc: dict[str, Any] = {
        "task": task,
        "inputs": [{"name": f.name, "dtype": f.type} for f in features],
        "outputs": outputs,
    }
    if task == "classification" and classes is not None:
        doc["classes"] = class_labels(classes)
    # Validated by the ModelVersion's own model: what we write, the operator accepts.
    return Signature.model_validate(doc).to_wire()

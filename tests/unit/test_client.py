"""The Python client's pure parts: rows into v2 columns, kinds by name or model, and
what a wait makes of an object's conditions."""

from __future__ import annotations

import pandas as pd
import pytest

from kubeml import client
from kubeml.api import Dataset, TrainingRun

NAMES = ["a", "b"]


def test_rows_become_one_column_per_input_in_signature_order() -> None:
    assert client._columns([[1, 2], [3, 4]], NAMES) == [[1, 3], [2, 4]]
    frame = pd.DataFrame({"b": [2, 4], "a": [1, 3], "extra": [0, 0]})
    assert client._columns(frame, NAMES) == [[1, 3], [2, 4]]
    with pytest.raises(client.KubeMLError, match=r"rows \[1\] do not have 2 values"):
        client._columns([[1, 2], [3]], NAMES)
    with pytest.raises(client.KubeMLError, match=r"lack the model's inputs \['a'\]"):
        client._columns(pd.DataFrame({"b": [1]}), NAMES)


def test_kinds_by_name_or_model() -> None:
    assert client._kind("Dataset") == client._kind(Dataset) == "Dataset"
    assert client._kind(TrainingRun) == "TrainingRun"
    with pytest.raises(client.KubeMLError, match="kind must be one of"):
        client._kind("Job")


def _run(status: str, reason: str, generation: int = 1, observed: int = 1) -> dict[str, object]:
    cond = {"type": "Succeeded", "status": status, "reason": reason, "message": "m"}
    return {
        "metadata": {"generation": generation},
        "status": {"observedGeneration": observed, "conditions": [cond]},
    }


def test_a_wait_ends_on_success_fails_on_failure_and_waits_for_the_current_generation() -> None:
    judge = client.Client._judge
    assert judge("TrainingRun", None, None)[0] == "Progressing"
    assert judge("TrainingRun", _run("Unknown", "Running"), None)[0] == "Progressing"
    assert judge("TrainingRun", _run("True", "Succeeded"), None)[0] == "Healthy"
    verdict, message = judge("TrainingRun", _run("False", "GateFailed"), None)
    assert verdict == "Degraded" and "GateFailed" in message
    assert judge("TrainingRun", _run("True", "Succeeded", 2, 1), None)[0] == "Progressing"
    # A named condition: done when it is True.
    assert judge("TrainingRun", _run("True", "Succeeded"), "Ready")[0] == "Progressing"
    assert judge("TrainingRun", _run("True", "Succeeded"), "Succeeded")[0] == "Healthy"


def test_report_names() -> None:
    assert client.REPORT_KINDS[""] == client.REPORT_KINDS["mv"] == "ModelVersion"
    assert client.REPORT_KINDS["trainingrun"] == "TrainingRun"

"""The Python client's example (examples/python/iris_pipeline.py) runs the iris pipeline
end to end against the local control plane: data, a tuned model, its report, a
Deployment, and predictions through the apiserver's service proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeml_local import cluster
from tests.support.cases import ROOT
from tests.support.operator import OperatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
EXAMPLE = ROOT / "examples" / "python" / "iris_pipeline.py"


def test_the_python_example_runs_the_iris_pipeline_to_predictions(
    operator: OperatorProcess,
    ml_namespace: str,
    local_cluster: cluster.Connection,
    tmp_path: Path,
) -> None:
    report = tmp_path / "iris-report.html"
    env = {
        **os.environ,
        **local_cluster.s3.env(),
        "KUBECONFIG": str(local_cluster.kubeconfig),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "-n",
            ml_namespace,
            "--replicas",
            "1",
            "--report",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Progress as each object moved, then the results.
    assert any("Dataset iris: " in line for line in lines)
    assert any("TrainingRun iris-rf: Succeeded=True" in line for line in lines), lines
    assert any(line.startswith("model version iris-classifier-v1: accuracy=") for line in lines)
    assert "rank" in done.stdout and "mean_score" in done.stdout  # the trial table
    assert b"Model report: iris-classifier" in report.read_bytes()
    # Setosa, virginica, versicolor: the classes of the three rows.
    assert lines[-1].endswith(": [0, 2, 1]"), lines[-1]
    # The lineage tree the example prints before predicting: data -> run -> version -> deployment.
    assert any(line.startswith("dataset iris@") for line in lines), lines
    assert any("deployment iris  stable 100%" in line for line in lines), lines

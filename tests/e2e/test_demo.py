"""The README's flows, as a newcomer runs them, on a cluster of their own.

First by hand: `kubeml local up`, `kubectl apply -f examples/iris/`, `kubectl wait`, then a
prediction through the model's Service. Then `kubeml demo` on the same cluster, twice: the
second run must start over from nothing (an earlier run's namespace is removed first), not
report stale statuses.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeml_local.readiness import poll
from tests.support.cases import ROOT

pytestmark = pytest.mark.e2e
PREDICTION = re.compile(r"^  \[[^\]]+\] -> class (\d+)$", re.M)
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def kubeml(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeml.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("newcomer") / "local"
    yield state
    out = kubeml("local", "down", "--state-dir", str(state), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def shell_env(state_dir: Path) -> dict[str, str]:
    """The environment after `eval "$(kubeml local env)"`."""
    out = kubeml("local", "env", "--state-dir", str(state_dir), timeout=60)
    assert out.returncode == 0, out.stderr
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        value = shlex.split(value)[0] if value else ""
        env[key] = value.replace("$PATH", env.get("PATH", ""))
    return env


def infer_v2(base: str) -> list[int]:
    # The model's metadata, through the Service too: the input names to send.
    with urllib.request.urlopen(f"{base}/v2/models/iris-classifier", timeout=10) as resp:
        names = [i["name"] for i in json.loads(resp.read())["inputs"]]
    body = {
        "inputs": [
            {"name": n, "shape": [len(ROWS)], "datatype": "FP64", "data": [r[i] for r in ROWS]}
            for i, n in enumerate(names)
        ]
    }
    req = urllib.request.Request(
        f"{base}/v2/models/iris-classifier/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return [int(x) for x in json.loads(resp.read())["outputs"][0]["data"]]


def test_local_up_then_kubectl_apply_serves_through_the_service(state_dir: Path) -> None:
    up = kubeml("local", "up", "--state-dir", str(state_dir), timeout=900)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "KubeML operator ready in kubeml-system" in up.stderr

    env = shell_env(state_dir)

    def kubectl(*args: str, timeout: float = 60) -> str:
        out = subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stdout}{out.stderr}"
        return out.stdout

    kubectl("apply", "-f", str(ROOT / "examples" / "iris") + "/")
    kubectl(
        "wait",
        "--for=condition=Ready",
        "deployments.kubeml.io/iris",
        "--timeout=600s",
        timeout=660,
    )
    cluster_ip = kubectl("get", "service", "iris", "-o", "jsonpath={.spec.clusterIP}")
    predictions = poll(
        lambda: infer_v2(f"http://{cluster_ip}"),
        timeout=60,
        what=f"a prediction through Service iris at {cluster_ip}:80",
    )
    # One flower of each species: setosa, virginica, versicolor.
    assert predictions == [0, 2, 1]
    # The operator is the chart's pod, under the chart's ServiceAccount.
    sa = kubectl(
        "get", "pods", "-n", "kubeml-system", "-l", "app.kubernetes.io/component=operator",
        "-o", "jsonpath={.items[*].spec.serviceAccountName}",
    )  # fmt: skip
    assert sa == "kubeml"
    # Where the served model came from, in the kubeconfig context's namespace.
    tree = kubeml("lineage", "deployment/iris", env=env, timeout=60)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith("dataset iris@") and "150 rows" in lines[0], tree.stdout
    assert lines[1].startswith("└── trainingrun iris-rf  True Succeeded  accuracy="), tree.stdout
    assert "modelversion iris-classifier-v1" in lines[2] and "champion" in lines[2]
    assert "deployment iris  stable 100%" in lines[3], tree.stdout


def check_run(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    for step in ("Dataset ready", "TrainingRun succeeded", "verified: sha256", "Deployment ready"):
        assert step in text, (step, text[-3000:])
    assert "predictions through Service kubeml-demo/iris" in text
    # The two protocols agree on the same rows.
    v2 = [int(c) for c in PREDICTION.findall(text)]
    v1_line = re.search(r"KServe v1 answer: (\[.*\])", text)
    assert v1_line is not None and len(v2) == 3, text[-3000:]
    assert v2 == ast.literal_eval(v1_line.group(1))
    # And the server pods counted them, each protocol on some pod.
    for protocol in ("v1", "v2"):
        assert re.search(rf'kubeml_requests_total\{{code="200",.*protocol="{protocol}"', text)


def test_demo_runs_the_lifecycle_and_runs_again_from_scratch(state_dir: Path) -> None:
    first = kubeml("demo", "--state-dir", str(state_dir), timeout=900)
    check_run(first)
    assert "left by an earlier demo" not in first.stdout

    second = kubeml("demo", "--state-dir", str(state_dir), timeout=900)
    check_run(second)
    assert "removing namespace kubeml-demo left by an earlier demo" in second.stdout
    assert "local cluster already running" in second.stdout

    # The whole chain behind the demo's Deployment: data -> run -> version -> serving.
    out = kubeml(
        "lineage", "deployment/iris", "-n", "kubeml-demo", "-o", "json",
        env=shell_env(state_dir), timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (data,) = json.loads(out.stdout)["datasetVersions"]
    assert (data["dataset"], data["current"], data["rows"]["total"]) == ("iris", True, 150)
    assert re.fullmatch(r"[0-9a-f]{64}", data["version"])
    (run,) = data["runs"]
    assert (run["name"], run["state"], run["keyMetric"]) == (
        "iris-rf",
        "True Succeeded",
        "accuracy",
    )
    assert run["keyValue"] >= 0.85 and run["gates"]["passed"] == run["gates"]["total"] >= 1
    mv = run["modelVersion"]
    assert (mv["name"], mv["aliases"], mv["ready"]) == ("iris-classifier-v1", ["champion"], "True")
    assert mv["keyMetric"].startswith("accuracy=")
    (served,) = mv["deployments"]
    assert (served["name"], served["track"], served["trafficPercent"]) == ("iris", "stable", 100)
    assert served["ready"] == "True" and served["readyReplicas"] >= 1

"""The README's first command, as a newcomer runs it: `kubeml demo` on its own cluster.

Run twice on one state directory: the second run must start over from nothing
(an earlier run's namespace is removed first), not report stale statuses.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeml_local import procs
from tests.support.cases import ROOT

pytestmark = pytest.mark.e2e
PREDICTION = re.compile(r"^  \[[^\]]+\] -> class (\d+)$", re.M)


def kubeml(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeml.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "demo"
    yield state
    out = kubeml("local", "down", "--state-dir", str(state), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def check_run(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    for step in ("Dataset ready", "TrainingRun succeeded", "verified: sha256", "Deployment ready"):
        assert step in text, (step, text[-3000:])
    # The two protocols agree on the same rows.
    v2 = [int(c) for c in PREDICTION.findall(text)]
    v1_line = re.search(r"KServe v1 answer: (\[.*\])", text)
    assert v1_line is not None and len(v2) == 3, text[-3000:]
    assert v2 == ast.literal_eval(v1_line.group(1))
    # And the server counted them.
    for protocol in ("v1", "v2"):
        assert re.search(rf'kubeml_requests_total\{{code="200",.*protocol="{protocol}"', text)


def test_demo_runs_the_lifecycle_and_runs_again_from_scratch(state_dir: Path) -> None:
    first = kubeml("demo", "--state-dir", str(state_dir), timeout=900)
    check_run(first)
    assert "left by an earlier demo" not in first.stdout
    operator_pid = int((state_dir / "operator.pid").read_text())
    assert procs.alive(operator_pid)

    second = kubeml("demo", "--state-dir", str(state_dir), timeout=900)
    check_run(second)
    assert "removing namespace kubeml-demo left by an earlier demo" in second.stdout
    assert "operator already running" in second.stdout

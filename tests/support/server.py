"""The model server as a process against the local cluster's real S3: a real skops
artifact, the process's address, log, termination log and resident memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml import models
from kubeml.data.profile import profile_frame
from kubeml.storage import ArtifactStore, S3Settings, sha256_bytes

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SIGNATURE = {
    "task": "classification",
    "inputs": [{"name": f, "dtype": "number"} for f in FEATURES],
    "outputs": [
        {"name": "predict", "dtype": "integer"},
        {"name": "predict_proba", "dtype": "number"},
    ],
    "classes": ["0", "1", "2"],
}
DEADLINE_S = 90.0
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value is not None:
                return value
        except (OSError, urllib.error.URLError) as err:
            last = err
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout:.0f}s (last error: {last})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post(url: str, doc: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@dataclass
class Artifacts:
    model: RandomForestClassifier
    X: np.ndarray
    uri: str
    tampered_uri: str
    sha256: str
    profile_uri: str


@contextmanager
def stored_artifacts(s3_env: dict[str, str]) -> Iterator[Artifacts]:
    """A 20-tree forest on iris, its skops artifact, a tampered copy and the profile in S3."""
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    data = models.save(model)
    store = ArtifactStore(S3Settings.from_env(s3_env), env=s3_env)
    store.ensure_bucket()
    prefix = f"test-server/{uuid.uuid4().hex[:8]}/"
    store.put_bytes(prefix + "model.skops", data)
    # One flipped byte late in the archive: still a zip, no longer the recorded bytes.
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    store.put_bytes(prefix + "tampered.skops", bytes(tampered))
    frame = pd.DataFrame(X, columns=FEATURES)
    store.put_json(
        prefix + "profile.json", profile_frame(frame, [(f, "number", "feature") for f in FEATURES])
    )
    yield Artifacts(
        model,
        X,
        store.uri(prefix + "model.skops"),
        store.uri(prefix + "tampered.skops"),
        sha256_bytes(data),
        store.uri(prefix + "profile.json"),
    )
    store.delete_prefix(prefix)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path
    termination_log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_server(
    s3_env: dict[str, str],
    a: Artifacts,
    tmp: Path,
    uri: str,
    overrides: dict[str, str] | None = None,
) -> ServerProcess:
    """`kubeml serve` as a process; ``overrides`` replace (or with "" remove) variables."""
    port = free_port()
    log = tmp / "server.log"
    termination = tmp / "termination-log"
    env = {
        **os.environ,
        **s3_env,
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "1",
        "KUBEML_MODELVERSION": "iris-v1",
        "KUBEML_ARTIFACT_URI": uri,
        "KUBEML_ARTIFACT_SHA256": a.sha256,
        "KUBEML_SIGNATURE": json.dumps(SIGNATURE),
        "KUBEML_PROFILE_URI": a.profile_uri,
        "KUBEML_MAX_BATCH_SIZE": "32",
        "KUBEML_MAX_BATCH_DELAY_MS": "2",
        "KUBEML_MAX_REQUEST_BYTES": "65536",
        "KUBEML_HOST": "127.0.0.1",
        "KUBEML_PORT": str(port),
        "KUBEML_TERMINATION_LOG": str(termination),
        "KUBEML_SHUTDOWN_DELAY_SECONDS": "0",
    }
    for k, v in (overrides or {}).items():
        if v:
            env[k] = v
        else:
            env.pop(k, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubeml.runtime.serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log, termination)

    def live() -> bool | None:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
        return True if get(server.base + "/v2/health/live")[0] == 200 else None

    wait_for(live, "liveness")
    return server


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")

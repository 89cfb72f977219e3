"""Loading the model: verified before deserialising, final failures named, transient
S3 failures retried, the profile optional; and the server's environment contract."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml import models
from kubeml.api.deployment import ServerOptions
from kubeml.serving.config import ConfigError, ServerConfig
from kubeml.serving.errors import NotReady
from kubeml.serving.loader import load_once, load_with_retries
from kubeml.storage import EndpointUnreachable, KeyNotFound, sha256_bytes

FEATURES = ["a", "b", "c", "d"]
SIG = {
    "task": "classification",
    "inputs": [{"name": f, "dtype": "number"} for f in FEATURES],
    "outputs": [{"name": "predict", "dtype": "integer"}],
    "classes": ["0", "1", "2"],
}


@pytest.fixture(scope="module")
def artifact() -> bytes:
    X, y = load_iris(return_X_y=True)
    return models.save(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y))


class FakeStore:
    def __init__(self, objects: dict[str, Any], failures: list[Exception] | None = None) -> None:
        self.objects = objects
        self.failures = list(failures or [])
        self.calls = 0

    def get_bytes(self, key: str) -> bytes:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if key not in self.objects:
            raise KeyNotFound(f"s3://b/{key}: no such key", bucket="b", key=key)
        value = self.objects[key]
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    def get_json(self, key: str) -> Any:
        if key not in self.objects:
            raise KeyNotFound(f"s3://b/{key}: no such key", bucket="b", key=key)
        return self.objects[key]


def env(data: bytes, **kw: str) -> dict[str, str]:
    return {
        "KUBEML_MODEL": "iris",
        "KUBEML_MODEL_VERSION": "4",
        "KUBEML_MODELVERSION": "iris-v4",
        "KUBEML_ARTIFACT_URI": "s3://b/models/iris/4.skops",
        "KUBEML_ARTIFACT_SHA256": sha256_bytes(data),
        "KUBEML_SIGNATURE": json.dumps(SIG),
        **kw,
    }


def test_config_from_env(artifact: bytes) -> None:
    cfg = ServerConfig.from_env(
        env(
            artifact,
            KUBEML_MAX_BATCH_SIZE="64",
            KUBEML_MAX_BATCH_DELAY_MS="0.5",
            KUBEML_MAX_REQUEST_BYTES="65536",
            KUBEML_HOST="127.0.0.5",
            KUBEML_PORT="9000",
            KUBEML_PROFILE_URI="s3://b/datasets/x/profile.json",
        )
    )
    assert (cfg.model, cfg.version, cfg.modelversion) == ("iris", 4, "iris-v4")
    assert cfg.max_batch_size == 64 and cfg.max_batch_delay_ms == 0.5
    assert cfg.max_request_bytes == 65536 and (cfg.host, cfg.port) == ("127.0.0.5", 9000)
    assert cfg.signature.features == tuple(FEATURES)
    defaults = ServerConfig.from_env(env(artifact))
    assert (defaults.host, defaults.port, defaults.grpc_port) == ("0.0.0.0", 8080, 0)
    # Without the operator's variables the server batches as the API's defaults say.
    opts = ServerOptions()
    assert (defaults.max_batch_size, defaults.max_batch_requests) == (
        opts.max_batch_size,
        opts.max_batch_requests,
    )
    assert (defaults.max_request_bytes, defaults.max_connections) == (
        opts.max_request_bytes,
        opts.max_connections,
    )
    assert defaults.profile_uri is None


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"KUBEML_MODEL": ""}, "KUBEML_MODEL"),
        ({"KUBEML_MODEL_VERSION": "x"}, "KUBEML_MODEL_VERSION"),
        ({"KUBEML_MODEL_VERSION": "0"}, "KUBEML_MODEL_VERSION"),
        ({"KUBEML_SIGNATURE": "{"}, "KUBEML_SIGNATURE"),
        ({"KUBEML_SIGNATURE": json.dumps({"task": "x"})}, "KUBEML_SIGNATURE"),
        ({"KUBEML_ARTIFACT_SHA256": "abc"}, "sha256"),
        ({"KUBEML_ARTIFACT_URI": "http://x/y"}, "s3://"),
        ({"KUBEML_MAX_BATCH_SIZE": "0"}, "KUBEML_MAX_BATCH_SIZE"),
        ({"KUBEML_PORT": "http"}, "KUBEML_PORT"),
    ],
)
def test_bad_environment(artifact: bytes, override: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ServerConfig.from_env({**env(artifact), **override})


def test_loads_a_verified_artifact(artifact: bytes) -> None:
    cfg = ServerConfig.from_env(env(artifact))
    store = FakeStore({"models/iris/4.skops": artifact})
    loaded = load_once(cfg, lambda bucket: store)  # type: ignore[arg-type,return-value]
    assert loaded.predictor.mode == "matrix" and loaded.drift is None


def test_tampered_artifact_is_refused_before_parsing(
    artifact: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ServerConfig.from_env(env(artifact))
    tampered = artifact[:-1] + bytes([artifact[-1] ^ 1])
    parsed: list[bytes] = []
    monkeypatch.setattr("skops.io.loads", lambda *a, **k: parsed.append(a[0]))
    store = FakeStore({"models/iris/4.skops": tampered})
    with pytest.raises(NotReady) as err:
        load_once(cfg, lambda bucket: store)  # type: ignore[arg-type,return-value]
    assert err.value.reason == "ArtifactMismatch"
    assert cfg.artifact_sha256 in err.value.message and sha256_bytes(tampered) in err.value.message
    assert parsed == []


def test_signature_that_does_not_fit_the_model(artifact: bytes) -> None:
    sig = {**SIG, "inputs": SIG["inputs"][:3]}
    cfg = ServerConfig.from_env(env(artifact, KUBEML_SIGNATURE=json.dumps(sig)))
    store = FakeStore({"models/iris/4.skops": artifact})
    with pytest.raises(NotReady) as err:
        load_once(cfg, lambda bucket: store)  # type: ignore[arg-type,return-value]
    assert err.value.reason == "SignatureMismatch" and "4 features" in err.value.message
    bad_classes = {**SIG, "classes": ["x", "y", "z"]}
    cfg2 = ServerConfig.from_env(env(artifact, KUBEML_SIGNATURE=json.dumps(bad_classes)))
    with pytest.raises(NotReady, match="classes"):
        load_once(cfg2, lambda bucket: store)  # type: ignore[arg-type,return-value]


def test_what_the_store_may_fix_is_retried_what_the_bytes_say_is_not(
    artifact: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubeml.serving.loader.RETRY_FIRST_S", 0.01)
    cfg = ServerConfig.from_env(env(artifact))
    down = EndpointUnreachable("S3 unreachable", bucket="b", key="k")
    store = FakeStore({"models/iris/4.skops": artifact}, [down, down])
    reasons: list[str] = []
    loaded = load_with_retries(
        cfg,
        lambda bucket: store,
        threading.Event(),
        lambda reason, msg: reasons.append(reason),  # type: ignore[arg-type,return-value]
    )
    assert loaded.predictor is not None and reasons == ["EndpointUnreachable"] * 2

    # Missing, then tampered, then restored: the server becomes ready by itself.
    key = "models/iris/4.skops"
    store = FakeStore({})
    seen: list[str] = []

    def on_retry(reason: str, message: str) -> None:
        seen.append(reason)
        if reason == "KeyNotFound":
            store.objects[key] = artifact[:-1] + bytes([artifact[-1] ^ 1])
        else:
            store.objects[key] = artifact

    loaded = load_with_retries(cfg, lambda bucket: store, threading.Event(), on_retry)  # type: ignore[arg-type,return-value]
    assert loaded.predictor is not None and seen == ["KeyNotFound", "ArtifactMismatch"]

    sig = {**SIG, "inputs": SIG["inputs"][:3]}
    wrong = ServerConfig.from_env(env(artifact, KUBEML_SIGNATURE=json.dumps(sig)))
    store = FakeStore({key: artifact})
    with pytest.raises(NotReady) as err:
        load_with_retries(wrong, lambda bucket: store, threading.Event(), lambda r, m: None)  # type: ignore[arg-type,return-value]
    assert err.value.reason == "SignatureMismatch" and store.calls == 1


def test_profile_enables_drift_and_its_absence_does_not_block(artifact: bytes) -> None:
    profile = {
        "columns": {
            "a": {"kind": "numeric", "bins": {"cuts": [5.0, 6.0], "fractions": [0.3, 0.4, 0.3]}},
            "c": {"kind": "numeric", "bins": {"cuts": [2.0], "fractions": [0.5, 0.5]}},
        }
    }
    store = FakeStore({"models/iris/4.skops": artifact, "p.json": profile})
    cfg = ServerConfig.from_env(env(artifact, KUBEML_PROFILE_URI="s3://b/p.json"))
    loaded = load_once(cfg, lambda bucket: store)  # type: ignore[arg-type,return-value]
    assert loaded.drift is not None and loaded.drift.features == ["a", "c"]
    cfg_missing = ServerConfig.from_env(env(artifact, KUBEML_PROFILE_URI="s3://b/none.json"))
    assert load_once(cfg_missing, lambda bucket: store).drift is None  # type: ignore[arg-type,return-value]

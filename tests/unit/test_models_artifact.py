"""kubeml.models: skops artifacts round-trip, and tampered or untrusted bytes are refused
before anything is deserialized."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import warnings
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from kubeml import models
from kubeml.api.estimators import ESTIMATORS
from kubeml.runtime.training.estimator import make_estimator
from kubeml.runtime.training.features import FeatureColumn, build_pipeline

FEATURES = [
    FeatureColumn("x", "number", nullable=True),
    FeatureColumn("n", "integer"),
    FeatureColumn("color", "category"),
    FeatureColumn("flag", "boolean"),
]


def _frame(rows: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    x[::7] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "n": rng.integers(0, 10, rows),
            "color": rng.choice(["red", "green", "blue"], rows),
            "flag": rng.integers(0, 2, rows).astype(bool),
        }
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fitted(name: str) -> tuple[Any, pd.DataFrame]:
    X = _frame()
    task = ESTIMATORS[name].task
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, len(X)) if task == "classification" else rng.normal(size=len(X))
    params: dict[str, Any] = (
        {"random_state": 0} if "random_state" in ESTIMATORS[name].params else {}
    )
    if name.startswith(("random-forest", "gradient-boosting")):
        params["n_estimators"] = 5
    if name.startswith("hist-gradient"):
        params["max_iter"] = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_pipeline(FEATURES, make_estimator(name, params, n_jobs=None)).fit(X, y)
    return model, X


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_round_trip_every_allowlisted_estimator(name: str) -> None:
    model, X = _fitted(name)
    data = models.save(model)
    loaded = models.load(data, _sha(data))
    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_save_file_matches_save(tmp_path: Any) -> None:
    model, X = _fitted("random-forest-classifier")
    sha, size = models.save_file(model, tmp_path / "m.skops")
    data = (tmp_path / "m.skops").read_bytes()
    assert (sha, size) == (_sha(data), len(data))
    np.testing.assert_array_equal(models.load(data, sha).predict(X), model.predict(X))


def test_tampered_bytes_raise_mismatch_before_deserializing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _ = _fitted("logistic-regression")
    data = models.save(model)
    expected = _sha(data)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("skops was called on bytes whose digest did not match")

    monkeypatch.setattr(sio, "loads", refuse)
    monkeypatch.setattr(sio, "get_untrusted_types", refuse)
    with pytest.raises(models.ArtifactMismatch) as err:
        models.load(bytes(tampered), expected)
    assert err.value.expected == expected
    assert err.value.actual == _sha(bytes(tampered))
    assert err.value.reason == "ArtifactMismatch"


def test_expected_digest_is_case_insensitive() -> None:
    model, _ = _fitted("ridge")
    data = models.save(model)
    assert models.load(data, _sha(data).upper()) is not None


def test_artifact_with_an_untrusted_callable_is_refused() -> None:
    X = _frame()[["x", "n"]].fillna(0)
    y = np.arange(len(X)) % 2
    evil = Pipeline([("f", FunctionTransformer(func=builtins.eval)), ("m", LogisticRegression())])
    # Only dump it: eval never runs, and loading must refuse to resolve it.
    evil.steps[1][1].fit(X, y)
    data = sio.dumps(evil)
    with pytest.raises(models.UntrustedArtifact) as err:
        models.load(data, _sha(data))
    assert "builtins.eval" in err.value.types
    assert "builtins.eval" in str(err.value)


def test_artifact_with_a_foreign_class_is_refused() -> None:
    data = sio.dumps({"counts": __import__("collections").Counter(a=1)})
    with pytest.raises(models.UntrustedArtifact) as err:
        models.load(data, _sha(data))
    assert err.value.types == ["collections.Counter"]


def _rewrite_schema(data: bytes, edit: Any) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "schema.json":
                body = json.dumps(edit(json.loads(body))).encode()
            dst.writestr(info, body)
    return out.getvalue()


def test_type_outside_trusted_libraries_is_refused_even_if_skops_trusts_it() -> None:
    model, _ = _fitted("logistic-regression")

    def relabel(schema: dict[str, Any]) -> dict[str, Any]:
        schema["__module__"] = "evil.module"  # the root object claims a foreign module
        return schema

    data = _rewrite_schema(models.save(model), relabel)
    with pytest.raises(models.UntrustedArtifact) as err:
        models.load(data, _sha(data))
    assert any(t.startswith("evil.module.") for t in err.value.types)


def test_bytes_that_are_not_a_skops_archive_are_corrupt() -> None:
    data = b"not a zip file"
    with pytest.raises(models.CorruptArtifact):
        models.load(data, _sha(data))


def test_allowlist_holds_only_scientific_python_types() -> None:
    roots = {t.split(".", 1)[0] for t in models.TRUSTED_TYPES}
    assert roots <= {"numpy", "scipy", "sklearn"}
    assert not any("PyFunc" in t for t in models.TRUSTED_TYPES)

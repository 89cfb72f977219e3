"""The loaded model behind one ``predict(rows, want_proba)`` call, set up once.

Models from our trainer are ``Pipeline([ColumnTransformer, estimator])`` fitted on
DataFrames. When the ColumnTransformer only passes numeric columns through, it is
nothing but a column selection; we do that selection with a precomputed index on
the float64 matrix and call the final estimator directly, skipping a DataFrame
build and the transformer's per-call overhead (the results are identical: the
passthrough output is the same float64 matrix). Any other pipeline gets a
DataFrame in the signature's column order, exactly as in training.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble._forest import ForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags

from .decode import Rows
from .signature import CompiledSignature

log = logging.getLogger("kubeml.serve")


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Warnings ignored while predicting.

    scikit-learn's joblib wrapper re-installs every active warning filter around each
    task, i.e. around every tree of a forest: with the dozen filters a server's
    imports leave behind, that is a fifth of a 100-tree predict. With one filter the
    predictions are the same and the call is cheaper. What predict-time warnings
    would say (feature names, dtypes) the signature check at load time has covered,
    and repeated for every request they would only flood the log. The filter list is
    process-global, as it already is for scikit-learn's own per-task swapping.
    """
    with warnings.catch_warnings():
        warnings.resetwarnings()
        # exactly one filter: with none, scikit-learn warns that its config was lost
        warnings.simplefilter("ignore")
        yield


def _final(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def _single_thread(model: Any) -> None:
    """n_jobs=1 everywhere: one predict per batch on one worker thread is the plan,
    and joblib fan-out for a 32-row batch costs more than it saves."""
    parts = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    for part in parts:
        if hasattr(part, "n_jobs"):
            part.n_jobs = 1


def passthrough_index(model: Any, sig: CompiledSignature) -> np.ndarray | None:
    """Column indices when ``model`` is [ColumnTransformer of numeric passthroughs,
    estimator]; None when the pipeline does real preprocessing."""
    if not isinstance(model, Pipeline) or len(model.steps) != 2 or not sig.numeric:
        return None
    ct = model.steps[0][1]
    if not isinstance(ct, ColumnTransformer) or not hasattr(ct, "transformers_"):
        return None
    picked: list[int] = []
    for _, transformer, cols in ct.transformers_:
        if transformer == "drop":
            continue
        if not _is_passthrough(transformer) or not isinstance(cols, list | tuple):
            return None
        for c in cols:
            if not isinstance(c, str) or c not in sig.index:
                return None
            picked.append(sig.index[c])
    return np.asarray(picked, dtype=np.intp) if picked else None


def _is_passthrough(transformer: Any) -> bool:
    # Fitted, "passthrough" becomes an identity FunctionTransformer (func=None).
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


def _datatype(arr: np.ndarray | None, task: str) -> str:
    if task == "regression" or arr is None:
        return "FP64"
    kind = arr.dtype.kind
    return {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


class Predictor:
    def __init__(self, model: Any, sig: CompiledSignature) -> None:
        self.model = model
        self.sig = sig
        _single_thread(model)
        final = _final(model)
        index = passthrough_index(model, sig)
        plain = not isinstance(model, Pipeline | ColumnTransformer)
        if index is not None:
            self._fast: Any = final
            # the identity selection needs no copy
            same = len(index) == sig.n_features and bool(np.all(index == np.arange(len(index))))
            self._select: np.ndarray | None = None if same else index
        elif plain and sig.numeric:
            self._fast, self._select = model, None
        else:
            self._fast, self._select = None, None
        self.classes: np.ndarray | None = getattr(final, "classes_", None)
        if sig.task != "classification":
            self.classes = None
        self.has_proba = self.classes is not None and hasattr(model, "predict_proba")
        # RandomForest's predict *is* classes_[argmax(predict_proba)]: one call gives both.
        self._proba_argmax = (
            self._fast is not None
            and isinstance(self._fast, ForestClassifier)
            and getattr(self._fast, "n_outputs_", 1) == 1
        )
        self.allow_missing = _allows_nan(self._fast if self._fast is not None else model)
        self.output_datatype = _datatype(self.classes, sig.task)

    @property
    def mode(self) -> str:
        if self._fast is None:
            return "dataframe"
        return "matrix" if self._select is None else "matrix+select"

    def _inputs(self, rows: Rows) -> Any:
        if self._fast is not None:
            assert isinstance(rows, np.ndarray)
            return rows if self._select is None else rows[:, self._select]
        import pandas as pd  # only models with preprocessing need it; slow to import

        if isinstance(rows, np.ndarray):
            return pd.DataFrame(rows, columns=list(self.sig.features))
        return pd.DataFrame(dict(zip(self.sig.features, rows, strict=True)))

    def predict(self, rows: Rows, want_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities or None) for all rows."""
        target = self._fast if self._fast is not None else self.model
        X = self._inputs(rows)
        with quiet_warnings():
            if self._proba_argmax:
                proba = target.predict_proba(X)
                assert self.classes is not None
                return self.classes.take(np.argmax(proba, axis=1), axis=0), proba
            pred = np.asarray(target.predict(X))
            proba = np.asarray(target.predict_proba(X)) if want_proba and self.has_proba else None
        return pred, proba

    def warm_up(self) -> None:
        """One prediction at startup: the first call pays one-off costs (imports,
        validation caches), which should not land on a client's request."""
        try:
            self.predict(sample_rows(self.sig), self.has_proba)
        except Exception as err:  # a model that cannot predict on zeros may still serve
            log.warning("warm-up prediction failed (serving anyway): %s", err)


def sample_rows(sig: CompiledSignature, n: int = 1) -> Rows:
    if sig.numeric:
        return np.zeros((n, sig.n_features), dtype=np.float64)
    cols: list[np.ndarray] = []
    for dtype in sig.dtypes:
        if dtype in ("integer", "number"):
            cols.append(np.zeros(n, dtype=np.float64))
        elif dtype == "boolean":
            cols.append(np.zeros(n, dtype=bool))
        else:
            cols.append(np.asarray([""] * n, dtype=object))
    return cols


def _allows_nan(model: Any) -> bool:
    try:
        return bool(get_tags(model).input_tags.allow_nan)
    except Exception:  # third-party or old estimators without tags: be strict
        return False

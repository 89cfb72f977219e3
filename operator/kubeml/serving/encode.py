"""Response bodies of the two protocols, serialised with orjson (numpy arrays of
numbers and booleans go straight to JSON without a Python list in between)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import orjson

from . import binary
from .decode import PREDICT, PREDICT_PROBA

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=_NUMPY)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _json_array(arr: np.ndarray) -> Any:
    # orjson serialises numeric/bool arrays itself; str/object arrays need a list
    return arr if arr.dtype.kind in "biuf" else arr.tolist()


class Encoder:
    def __init__(self, model: str, version: str, datatype: str, classes: list[str] | None) -> None:
        self.model = model
        self.version = version
        self.datatype = datatype
        self.classes = classes
        # Request ids need only be unique per server: a random prefix and a counter
        # cost far less than a uuid4 per request.
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def v2(
        self,
        req_id: str | None,
        pred: np.ndarray,
        proba: np.ndarray | None,
        want_predict: bool,
        want_proba: bool,
        binary_out: frozenset[str] = frozenset(),
    ) -> tuple[bytes, int | None]:
        """(body, JSON header length when outputs travel as raw bytes after it)."""
        outputs: list[dict[str, Any]] = []
        raw: list[bytes] = []
        n = len(pred)

        def add(out: dict[str, Any], arr: np.ndarray) -> None:
            if out["name"] in binary_out:
                data = binary.encode(out["datatype"], arr)
                out.setdefault("parameters", {})["binary_data_size"] = len(data)
                raw.append(data)
            else:
                out["data"] = _json_array(arr)
            outputs.append(out)

        if want_predict:
            add({"name": PREDICT, "datatype": self.datatype, "shape": [n]}, pred)
        if want_proba and proba is not None:
            out: dict[str, Any] = {
                "name": PREDICT_PROBA,
                "datatype": "FP64",
                "shape": [n, proba.shape[1]],
            }
            if self.classes is not None:
                out["parameters"] = {"classes": self.classes}
            add(out, proba.ravel())
        head = dumps(
            {
                "model_name": self.model,
                "model_version": self.version,
                "id": req_id if req_id is not None else self.next_id(),  # set by submit
                "outputs": outputs,
            }
        )
        if not raw:
            return head, None
        return b"".join([head, *raw]), len(head)

    def next_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def v1(self, pred: np.ndarray, proba: np.ndarray | None) -> bytes:
        doc: dict[str, Any] = {"predictions": _json_array(pred)}
        if proba is not None:
            doc["probabilities"] = proba
            if self.classes is not None:
                doc["classes"] = self.classes
        return dumps(doc)

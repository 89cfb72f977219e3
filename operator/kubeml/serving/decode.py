"""Parsing and validating inference requests (Open Inference Protocol v2, KServe v1)
into the rows the model predicts on.

The hot path (an all-numeric signature, which is every model trained on numeric
features) ends in one float64 matrix in the signature's feature order. Models with
string, category or boolean inputs get one array per feature instead, which the
predictor assembles into a DataFrame.

Floats from orjson are always finite: it refuses NaN/Infinity literals and numbers
that overflow a double, so missing values can only arrive as JSON null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from . import binary, values
from .errors import bad_request
from .signature import ACCEPTED_DATATYPES, CompiledSignature

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
Rows = np.ndarray | list[np.ndarray]


@dataclass(slots=True)
class InferRequest:
    """Validated rows plus what the client asked to get back."""

    rows: Rows  # float64 (n, F) matrix, or one array of n values per feature
    n: int
    want_predict: bool = True
    want_proba: bool = False
    id: str | None = None
    # Outputs to answer as raw bytes (the binary tensor data extension).
    binary: frozenset[str] = frozenset()


class Decoder:
    """Everything request-independent (names, index, limits) is fixed here once."""

    def __init__(
        self,
        sig: CompiledSignature,
        *,
        max_rows: int,
        has_proba: bool,
        allow_missing: bool,
    ) -> None:
        self.sig = sig
        self.max_rows = max_rows
        self.has_proba = has_proba
        self.allow_missing = allow_missing
        self._features = sig.features
        self._index = sig.index
        self._n = sig.n_features
        self._feature_set = frozenset(sig.features)
        self._outputs = frozenset({PREDICT, PREDICT_PROBA} if has_proba else {PREDICT})

    # -- shared ---------------------------------------------------------------------

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise bad_request(f"malformed JSON: {err}") from err
        if not isinstance(doc, dict):
            raise bad_request("request body must be a JSON object")
        return doc

    def _probabilities_flag(self, params: Any) -> bool:
        if params is None:
            return False
        if not isinstance(params, dict):
            raise bad_request("parameters must be a JSON object")
        flag = params.get("probabilities", False)
        if not isinstance(flag, bool):
            raise bad_request("parameters.probabilities must be true or false")
        if flag and not self.has_proba:
            raise bad_request("this model does not predict probabilities")
        return flag

    # -- Open Inference Protocol v2 ---------------------------------------------------

    def v2(self, body: bytes, header_length: int | None = None) -> InferRequest:
        """A JSON body, or with ``header_length`` one in the binary tensor data extension."""
        if header_length is None:
            return self.v2_doc(self._json(body))
        head, tail = binary.split_request(body, header_length)
        doc = self._json(head)
        binary.attach_inputs(doc, tail)
        return self.v2_doc(doc)

    def v2_doc(self, doc: dict[str, Any]) -> InferRequest:
        """The request as a JSON-shaped document whose tensors' ``data`` may already be
        arrays (raw bytes decoded); HTTP and gRPC both end here."""
        inputs = doc.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise bad_request("inputs must be a non-empty list of tensors")
        req_id = doc.get("id")
        if req_id is not None and not isinstance(req_id, str):
            raise bad_request("id must be a string")
        want_predict, want_proba, binary_out = self._v2_outputs(doc)
        for t in inputs:
            if not isinstance(t, dict):
                raise bad_request("every input must be an object with name, shape, datatype, data")
        name = inputs[0].get("name")
        if len(inputs) == 1 and not (isinstance(name, str) and name in self._feature_set):
            rows, n = self._v2_tensor(inputs[0])
        else:
            rows, n = self._v2_columns(inputs)
        values.check_rows(n, self.max_rows)
        return InferRequest(rows, n, want_predict, want_proba, req_id, binary_out)

    def _v2_outputs(self, doc: dict[str, Any]) -> tuple[bool, bool, frozenset[str]]:
        params = doc.get("parameters")
        proba = self._probabilities_flag(params)
        all_binary = _flag(params, "binary_data_output", "parameters")
        outputs = doc.get("outputs")
        if outputs is None:
            wanted = {PREDICT, PREDICT_PROBA} if proba else {PREDICT}
            return True, proba, frozenset(wanted if all_binary else ())
        if not isinstance(outputs, list) or not outputs:
            raise bad_request("outputs must be a non-empty list of {name}")
        names = set()
        binary_out = set()
        for o in outputs:
            name = o.get("name") if isinstance(o, dict) else None
            if not isinstance(name, str):
                raise bad_request("every requested output must be an object with a name")
            if name not in self._outputs:
                known = ", ".join(sorted(self._outputs))
                raise bad_request(f"unknown output {name!r}; this model has: {known}")
            names.add(name)
            own = _flag(o.get("parameters"), "binary_data", f"output {name!r} parameters")
            if own or (all_binary and "binary_data" not in (o.get("parameters") or {})):
                binary_out.add(name)
        want_proba = proba or PREDICT_PROBA in names
        if proba and all_binary:
            binary_out.add(PREDICT_PROBA)
        return PREDICT in names, want_proba, frozenset(binary_out)

    @staticmethod
    def _tensor_header(t: dict[str, Any]) -> tuple[str, list[int], str]:
        name = t.get("name")
        if not isinstance(name, str):
            raise bad_request("every input needs a string name")
        datatype = t.get("datatype")
        if not isinstance(datatype, str):
            raise bad_request(f"input {name!r}: datatype must be a string such as FP64")
        shape = values.shape_of(t.get("shape"), f"input {name!r}")
        if "data" not in t:
            raise bad_request(f"input {name!r}: no data")
        return name, shape, datatype

    def _v2_tensor(self, t: dict[str, Any]) -> tuple[Rows, int]:
        """One [n, n_features] tensor holding whole rows, whatever its name."""
        name, shape, datatype = self._tensor_header(t)
        what = f"input {name!r}"
        if len(shape) != 2 or shape[1] != self._n:
            if self._n == 1 and len(shape) == 1:
                shape = [shape[0], 1]
            else:
                raise bad_request(
                    f"{what}: shape {shape} does not match [n, {self._n}]; send one "
                    f"[n, {self._n}] tensor or one input per feature "
                    f"({', '.join(self._features[:8])}{', ...' if self._n > 8 else ''})"
                )
        if not self.sig.numeric:
            raise bad_request(
                f"{what}: this model has non-numeric inputs; send one input per feature"
            )
        if datatype not in ACCEPTED_DATATYPES["number"]:
            raise bad_request(f"{what}: datatype {datatype} is not numeric (use FP64 or INT64)")
        arr = values.numeric(t["data"], what, datatype, self.allow_missing)
        n = shape[0]
        if arr.size != n * self._n:
            raise bad_request(f"{what}: shape {shape} needs {n * self._n} values, got {arr.size}")
        return arr.reshape(n, self._n), n

    def _v2_columns(self, inputs: list[dict[str, Any]]) -> tuple[Rows, int]:
        """One input per feature, each of shape [n] or [n, 1]."""
        seen: dict[int, tuple[Any, str, str]] = {}
        n: int | None = None
        for t in inputs:
            name, shape, datatype = self._tensor_header(t)
            idx = self._index.get(name)
            if idx is None:
                raise self._names_error([x.get("name") for x in inputs])
            if idx in seen:
                raise bad_request(f"input {name!r} appears more than once")
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise bad_request(f"input {name!r}: shape {shape} must be [n] or [n, 1]")
            if n is None:
                n = shape[0]
            elif shape[0] != n:
                raise bad_request(f"input {name!r}: {shape[0]} rows, but other inputs have {n}")
            dtype = self.sig.dtypes[idx]
            if datatype not in ACCEPTED_DATATYPES[dtype]:
                raise bad_request(
                    f"input {name!r}: datatype {datatype} does not fit a {dtype} feature"
                )
            seen[idx] = (t["data"], datatype, name)
        if len(seen) != self._n:
            raise self._names_error([t.get("name") for t in inputs])
        assert n is not None
        cols = []
        for idx in range(self._n):
            data, datatype, name = seen[idx]
            what = f"input {name!r}"
            arr = values.column(data, what, self.sig.dtypes[idx], datatype, self.allow_missing)
            if arr.size != n:
                raise bad_request(f"{what}: shape says {n} values, data has {arr.size}")
            cols.append(arr.reshape(n))
        if self.sig.numeric:
            return np.stack(cols, axis=1), n
        return cols, n

    def _names_error(self, names: list[Any]) -> Exception:
        given = {x for x in names if isinstance(x, str)}
        missing = [f for f in self._features if f not in given]
        unknown = sorted(given - self._feature_set)
        parts = []
        if unknown:
            parts.append(f"unknown inputs: {', '.join(map(repr, unknown[:10]))}")
        if missing:
            parts.append(f"missing inputs: {', '.join(map(repr, missing[:10]))}")
        if not parts:
            parts.append("input names do not match the model's features")
        return bad_request(
            "; ".join(parts)
            + f" (expected {self._n} features: {', '.join(self._features[:10])}"
            + (", ...)" if self._n > 10 else ")")
        )

    # -- KServe v1 --------------------------------------------------------------------

    def v1(self, body: bytes) -> InferRequest:
        doc = self._json(body)
        instances = doc.get("instances")
        if not isinstance(instances, list):
            raise bad_request("instances must be a list of rows (lists or objects)")
        want_proba = self._probabilities_flag(doc.get("parameters"))
        n = len(instances)
        values.check_rows(n, self.max_rows)
        first = instances[0]
        if isinstance(first, dict):
            rows = self._v1_objects(instances)
        elif isinstance(first, list):
            rows = self._v1_lists(instances)
        else:
            raise bad_request("each instance must be a list of feature values or an object")
        return InferRequest(rows, n, True, want_proba, None)

    def _v1_lists(self, instances: list[Any]) -> Rows:
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != self._n:
                raise bad_request(
                    f"instance {i}: expected a list of {self._n} values "
                    f"({', '.join(self._features[:10])}{', ...' if self._n > 10 else ''})"
                )
        if self.sig.numeric:
            return self._matrix(instances)
        return self._columns(list(zip(*instances, strict=True)))

    def _v1_objects(self, instances: list[Any]) -> Rows:
        features = self._features
        try:
            table = [[row[f] for f in features] for row in instances]
            extra = next((i for i, row in enumerate(instances) if len(row) != self._n), None)
        except (KeyError, TypeError):
            extra = None
            table = []
        if not table or extra is not None:
            for i, row in enumerate(instances):
                if not isinstance(row, dict):
                    raise bad_request(f"instance {i}: expected an object keyed by feature name")
                if set(row) != self._feature_set:
                    raise bad_request(f"instance {i}: " + str(self._names_error(list(row))))
            raise bad_request("instances do not match the model's features")
        if self.sig.numeric:
            return self._matrix(table)
        return self._columns(list(zip(*table, strict=True)))

    def _matrix(self, table: list[Any]) -> np.ndarray:
        arr = values.numeric(table, "instances", None, self.allow_missing)
        if arr.ndim != 2:
            raise bad_request("instances: every feature value must be a single number")
        return arr

    def _columns(self, cols: list[tuple[Any, ...]]) -> list[np.ndarray]:
        out = []
        for idx, col in enumerate(cols):
            name = self._features[idx]
            dtype = self.sig.dtypes[idx]
            out.append(
                values.column(list(col), f"feature {name!r}", dtype, None, self.allow_missing)
            )
        return out


def _flag(params: Any, key: str, where: str) -> bool:
    if params is None:
        return False
    if not isinstance(params, dict):
        raise bad_request(f"{where} must be a JSON object")
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f"{where}.{key} must be true or false")
    return value


def concat(batches: Sequence[Rows]) -> Rows:
    """The rows of several requests as one batch, in order."""
    first = batches[0]
    if len(batches) == 1:
        return first
    if isinstance(first, np.ndarray):
        return np.concatenate(batches)
    return [np.concatenate([b[j] for b in batches]) for j in range(len(first))]

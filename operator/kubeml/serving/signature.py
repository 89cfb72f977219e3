"""The model's signature compiled once at startup into what each request needs:
feature order, name -> column index, per-column checks, v2 datatypes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.modelversion import Signature

# Open Inference Protocol datatypes of our column types.
V2_DATATYPE: dict[str, str] = {
    "integer": "INT64",
    "number": "FP64",
    "boolean": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
}
NUMERIC_TYPES = frozenset({"integer", "number"})
INT_DATATYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
NUMERIC_DATATYPES = INT_DATATYPES | FLOAT_DATATYPES
# Which request datatypes each column type accepts. Integer columns take floats too:
# clients commonly send every feature as FP32/FP64, and the model sees float64 anyway.
ACCEPTED_DATATYPES: dict[str, frozenset[str]] = {
    "integer": NUMERIC_DATATYPES,
    "number": NUMERIC_DATATYPES,
    "boolean": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
    "category": frozenset({"BYTES"}),
}


@dataclass(frozen=True)
class CompiledSignature:
    task: str
    features: tuple[str, ...]
    dtypes: tuple[str, ...]
    classes: tuple[str, ...] | None
    outputs: tuple[tuple[str, str], ...]
    index: Mapping[str, int] = field(repr=False)
    # True when every feature is integer/number: requests become one float64 matrix.
    numeric: bool = True

    @property
    def n_features(self) -> int:
        return len(self.features)

    @classmethod
    def from_signature(cls, sig: Signature) -> CompiledSignature:
        features = tuple(c.name for c in sig.inputs)
        if len(set(features)) != len(features):
            raise ValueError("signature has duplicate input names")
        dtypes = tuple(c.dtype for c in sig.inputs)
        return cls(
            task=sig.task,
            features=features,
            dtypes=dtypes,
            classes=tuple(sig.classes) if sig.classes is not None else None,
            outputs=tuple((c.name, c.dtype) for c in sig.outputs),
            index={name: i for i, name in enumerate(features)},
            numeric=all(d in NUMERIC_TYPES for d in dtypes),
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CompiledSignature:
        """From the wire form (camelCase JSON of ModelVersion spec.signature)."""
        return cls.from_signature(Signature.model_validate(doc))

    def input_metadata(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "datatype": V2_DATATYPE[d], "shape": [-1]}
            for n, d in zip(self.features, self.dtypes, strict=True)
        ]

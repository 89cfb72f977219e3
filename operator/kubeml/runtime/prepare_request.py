"""The preparation Job's input: the Dataset as the operator hands it over in env."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from ..api.dataset import DatasetSpec
from ..data.errors import DataError

DATASET_ENV = "KUBEML_DATASET"
RESULT_KEY_ENV = "KUBEML_RESULT_KEY"
MEMORY_LIMIT_ENV = "KUBEML_MEMORY_LIMIT_BYTES"


@dataclass(frozen=True)
class BaseDataset:
    """The version of another Dataset to append the production rows to, as the
    operator resolved it (source.production.appendTo)."""

    name: str
    version: str
    uri: str


@dataclass(frozen=True)
class PrepareRequest:
    namespace: str
    name: str
    generation: int | None
    spec: DatasetSpec
    base: BaseDataset | None = None

    @property
    def display(self) -> str:
        return f"dataset {self.namespace}/{self.name}"


def result_key(env: Mapping[str, str]) -> str | None:
    return env.get(RESULT_KEY_ENV) or None


def memory_limit(env: Mapping[str, str]) -> int | None:
    raw = env.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None  # a malformed hint must not fail the Job: just skip the check
    return value if value > 0 else None


def read_request(env: Mapping[str, str]) -> PrepareRequest:
    raw = env.get(DATASET_ENV)
    if not raw:
        raise DataError("InvalidRequest", f"{DATASET_ENV} is not set")
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise DataError("InvalidRequest", f"{DATASET_ENV} is not JSON: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        raise DataError("InvalidRequest", f"{DATASET_ENV} must be an object with a spec")
    namespace, name = str(doc.get("namespace") or ""), str(doc.get("name") or "")
    try:
        spec = DatasetSpec.model_validate(doc["spec"])
    except ValidationError as err:
        raise _spec_error(err, f"dataset {namespace}/{name}") from err
    generation = doc.get("generation")
    return PrepareRequest(
        namespace,
        name,
        int(generation) if isinstance(generation, int) else None,
        spec,
        _base(doc.get("base"), spec, f"dataset {namespace}/{name}"),
    )


def _base(raw: object, spec: DatasetSpec, what: str) -> BaseDataset | None:
    production = spec.source.production
    wanted = production.append_to.dataset if production and production.append_to else None
    if wanted is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) and raw[k] for k in ("name", "version", "uri")
    ):
        raise DataError("InvalidRequest", f"{what}: {DATASET_ENV} names no base dataset version")
    if raw["name"] != wanted:
        raise DataError(
            "InvalidRequest",
            f"{what}: the base dataset {raw['name']} is not appendTo's {wanted}",
        )
    return BaseDataset(raw["name"], raw["version"], raw["uri"])


def _spec_error(err: ValidationError, what: str) -> DataError:
    problems = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    # The CRD's enum normally stops this at admission; an older CRD might not.
    unknown = any(tuple(e["loc"][:3]) == ("source", "builtin", "name") for e in err.errors())
    return DataError(
        "UnknownBuiltin" if unknown else "InvalidSpec",
        f"{what}: invalid spec: {'; '.join(problems)}",
    )

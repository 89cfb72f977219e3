"""The training Job's input: the TrainingRun, its dataset version and the champion,
as the operator hands them over in ``KUBEML_TRAININGRUN``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ...api.base import Sha256
from ...api.modelversion import Artifact
from ...api.trainingrun import TrainingRunSpec
from .errors import TrainError

REQUEST_ENV = "KUBEML_TRAININGRUN"
RESULT_KEY_ENV = "KUBEML_RESULT_KEY"
CPU_LIMIT_ENV = "KUBEML_CPU_LIMIT"
# Set by the Job controller in every pod of an Indexed Job.
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"


class _Envelope(BaseModel):
    # The envelope tolerates fields a newer operator may add; the spec inside is
    # strict (TrainingRunSpec forbids unknown fields, as the CRD does).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class DatasetInput(_Envelope):
    name: str
    version: Sha256
    uri: str


class ChampionInput(_Envelope):
    name: str
    version: int
    artifact: Artifact
    dataset_version: str | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)


class TrainRequest(_Envelope):
    namespace: str
    name: str
    generation: int | None = None
    spec: TrainingRunSpec
    dataset: DatasetInput
    champion: ChampionInput | None = None

    @property
    def display(self) -> str:
        return f"trainingrun {self.namespace}/{self.name}"


def read_request(env: Mapping[str, str] | None = None) -> TrainRequest:
    e = os.environ if env is None else env
    raw = e.get(REQUEST_ENV)
    if not raw:
        raise TrainError("InvalidRequest", f"{REQUEST_ENV} is not set")
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise TrainError("InvalidRequest", f"{REQUEST_ENV} is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise TrainError("InvalidRequest", f"{REQUEST_ENV} must be a JSON object")
    try:
        return TrainRequest.model_validate(doc)
    except ValidationError as err:
        raise _request_error(err, doc) from err


def _request_error(err: ValidationError, doc: dict[str, Any]) -> TrainError:
    what = f"trainingrun {doc.get('namespace', '?')}/{doc.get('name', '?')}"
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    locs = [tuple(str(p) for p in e["loc"]) for e in err.errors()]
    # Admission (CEL) normally stops these; an older CRD might not.
    if all(loc[:3] == ("spec", "estimator", "name") for loc in locs):
        reason = "UnknownEstimator"
    elif all(loc[:2] == ("spec", "estimator") for loc in locs):
        reason = "InvalidParams"  # unknown parameter names (the model validator's loc)
    elif all(loc[:1] == ("spec",) for loc in locs):
        reason = "InvalidSpec"
    else:
        reason = "InvalidRequest"
    return TrainError(reason, f"{what}: {'; '.join(problems)}")


def result_key(env: Mapping[str, str] | None = None) -> str | None:
    e = os.environ if env is None else env
    return e.get(RESULT_KEY_ENV) or None


def cpu_limit(env: Mapping[str, str] | None = None) -> int:
    """Cores this process may use: KUBEML_CPU_LIMIT (the container's CPU limit,
    rounded by the operator), else the CPUs the process is allowed to run on."""
    e = os.environ if env is None else env
    raw = e.get(CPU_LIMIT_ENV, "").strip()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if raw:
        try:
            value = int(float(raw))
        except ValueError:
            value = 0  # a malformed hint must not fail the run: use what we can see
        if value >= 1:
            return min(value, available)
    return max(1, available)


def trials_prefix(env: Mapping[str, str] | None = None) -> str:
    """Where the search's trial tables go: beside the result manifest, in a folder named
    like it (``.../<run>/<uid>.json`` -> ``.../<run>/<uid>/``), so the shards and the
    final Job agree without another setting and stay in the namespace's own space."""
    key = result_key(env)
    if key is None:
        raise TrainError("InvalidRequest", f"{RESULT_KEY_ENV} is not set")
    return key.removesuffix(".json") + "/"


def shard_index(env: Mapping[str, str] | None, count: int) -> int:
    """This pod's shard of a distributed search: the Indexed Job's completion index."""
    e = os.environ if env is None else env
    raw = e.get(COMPLETION_INDEX_ENV, "")
    try:
        index = int(raw)
    except ValueError:
        index = -1
    if not 0 <= index < count:
        raise TrainError(
            "InvalidRequest",
            f"{COMPLETION_INDEX_ENV}={raw!r} is not a shard of search.parallelism={count} "
            "(a search shard runs in an Indexed Job)",
        )
    return index

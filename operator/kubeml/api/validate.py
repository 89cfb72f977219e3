"""Parse manifests into models, and check updates against immutability rules.

Both produce messages that name the offending field by its wire path
(``spec.split.test``), the same path the apiserver names for CEL and schema
failures, so a user sees one vocabulary whichever side rejects them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .base import API_VERSION, FieldError
from .dataset import Dataset
from .deployment import Deployment
from .modelversion import ModelVersion
from .resource import Resource
from .trainingrun import TrainingRun

KINDS: dict[str, type[Resource]] = {
    cls.crd.kind: cls for cls in (Dataset, TrainingRun, ModelVersion, Deployment)
}

# Fields of ModelVersion.spec that may change after creation; everything else
# is guarded by `self == oldSelf` in the CRD as well.
MODELVERSION_MUTABLE = frozenset({"aliases", "deletionPolicy"})


class ManifestError(ValueError):
    """A manifest that does not describe a valid KubeML object."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # pydantic adds the union member or a function name to the location;
            # they say nothing about the manifest, so drop them.
            if part in ("int", "str", "function-after[_check(), str]") or "[" in part:
                continue
            out += f".{part}" if out else part
    return out


def format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        msg = str(e["msg"]).removeprefix("Value error, ")
        path = _path(tuple(e["loc"]))
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            path = f"{path}.{cause.field}" if path else cause.field
        problems.append(f"{path}: {msg}" if path else msg)
    # A union failure repeats per member; keep the first of each path.
    seen: set[str] = set()
    unique = []
    for p in problems:
        key = p.split(":", 1)[0]
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def parse_manifest(doc: Mapping[str, Any]) -> Resource:
    """The model for a manifest, or ManifestError naming every bad field."""
    if not isinstance(doc, Mapping):
        raise ManifestError(["manifest must be a mapping"])
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        raise ManifestError([f"apiVersion: must be {API_VERSION}, got {api_version!r}"])
    cls = KINDS.get(str(kind))
    if cls is None:
        raise ManifestError([f"kind: must be one of {sorted(KINDS)}, got {kind!r}"])
    try:
        return cls.model_validate(doc)
    except ValidationError as err:
        raise ManifestError(format_errors(err)) from None


def validate_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> Resource:
    """Parse ``new`` and check it is an allowed change of ``old``."""
    model = parse_manifest(new)
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    problems: list[str] = []
    if model.kind == "TrainingRun" and old_spec != new_spec:
        problems.append("spec: spec is immutable: create a new TrainingRun instead")
    if model.kind == "ModelVersion":
        for name in sorted(set(old_spec) | set(new_spec)):
            if name not in MODELVERSION_MUTABLE and old_spec.get(name) != new_spec.get(name):
                problems.append(f"spec.{name}: field is immutable")
    if problems:
        raise ManifestError(problems)
    return model

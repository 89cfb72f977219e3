"""Building blocks shared by every KubeML resource model.

The models are the single source of truth for the CRD schemas (see
``kubeml.crdgen``), so anything the apiserver must enforce is expressed here:
pydantic checks it in Python, and the same constraint is carried into the
OpenAPI schema (types, bounds, patterns) or a CEL rule (``cel``) that sits next
to the field it guards.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GROUP = "kubeml.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Every string and list carries a bound: the apiserver estimates the cost of
# each CEL rule from them and refuses rules whose worst case is unbounded.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"

ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
LabelName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN, min_length=64, max_length=64)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# A Kubernetes quantity ("500m", "1Gi", 2). The pattern is the apiserver's own.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[
    int | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry.

    ``field_path`` makes the apiserver report the error at that field, so the
    message a user sees names the field just as pydantic's does.
    """
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a field or a model."""
    return {"x-kubernetes-validations": list(rules)}


class FieldError(ValueError):
    """A model-level check that blames one of the model's fields.

    pydantic reports model validators at the model's location; this lets the
    message name the field instead, matching the CEL rule's ``fieldPath``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


IMMUTABLE = validations(cel("self == oldSelf", "field is immutable"))


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON: camelCase, unset fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(KubeModel):
    """Status is written by the operator; unknown fields are tolerated on read
    so that an older operator can read a newer status without failing."""

    model_config = ConfigDict(extra="ignore")


class LocalObjectReference(KubeModel):
    """A reference to an object in the same namespace."""

    name: ObjectName
    """Name of the referenced object."""


class SecretKeySelector(KubeModel):
    """A key of a Secret in the same namespace, handed to pods by secretKeyRef.

    The operator never reads the Secret itself: only pods receive its value."""

    name: ObjectName
    """Name of the Secret."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    """Key within the Secret."""


class S3Credentials(KubeModel):
    """S3 credentials for pods, read from a Secret through secretKeyRef."""

    secret_name: ObjectName
    """Secret holding the credentials."""
    access_key_id_key: Identifier = "AWS_ACCESS_KEY_ID"
    """Key in the Secret holding the access key id."""
    secret_access_key_key: Identifier = "AWS_SECRET_ACCESS_KEY"
    """Key in the Secret holding the secret access key."""


# int-or-string values carry no pattern in a structural schema; the Kubernetes
# CEL quantity library checks them instead.
_QUANTITIES = validations(
    cel("self.all(k, isQuantity(string(self[k])))", "values must be quantities such as 500m or 1Gi")
)


class ResourceRequirements(KubeModel):
    """Compute resources for the pods the operator creates (as in core/v1)."""

    requests: (
        Annotated[dict[Identifier, Quantity], Field(max_length=8, json_schema_extra=_QUANTITIES)]
        | None
    ) = None
    """Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."""
    limits: (
        Annotated[dict[Identifier, Quantity], Field(max_length=8, json_schema_extra=_QUANTITIES)]
        | None
    ) = None
    """Maximum resources; a pod over its memory limit is OOM-killed."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """Shaped like metav1.Condition."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    """Condition type in CamelCase, e.g. Ready."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        ),
    ]
    """One CamelCase word saying why."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """Human-readable detail naming the failing object, bucket, key or column."""
    last_transition_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    """When status last changed (RFC 3339)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation this condition was computed from."""


CONDITIONS_FIELD: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class StageTiming(StatusModel):
    """How long one stage of a pipeline Job took."""

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9-]*$")
    ]
    """pod (from the Job's creation to its pod's start), then the Job's own stages:
    fetch, validate, write, upload (a Dataset); fetch, search, fit, evaluate, upload
    (a TrainingRun)."""
    seconds: Annotated[float, Field(ge=0)]
    """Wall-clock seconds."""


MAX_STAGES = 16


class ObservedStatus(StatusModel):
    """The part of the status contract every kind shares."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation the status reflects."""
    conditions: Annotated[
        list[Condition], Field(max_length=16, json_schema_extra=CONDITIONS_FIELD)
    ] = Field(default_factory=list)
    """Current state; the summary condition is Ready (Succeeded for TrainingRun)."""


class ObjectMeta(BaseModel):
    """The subset of metav1.ObjectMeta pydantic needs; the apiserver owns the rest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None

"""ModelVersion: an immutable, verified model artifact with lineage and aliases."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .base import (
    IMMUTABLE,
    KubeModel,
    LabelName,
    ObjectName,
    ObservedStatus,
    Sha256,
    StatusModel,
)
from .dataset import ColumnName
from .estimators import MetricName
from .resource import AGE, CrdInfo, PrinterColumn, Resource, condition_column
from .trainingrun import ModelName, ModelReport

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
S3Uri = Annotated[str, StringConstraints(min_length=6, max_length=2048, pattern=r"^s3://\S+$")]
DType = Literal["integer", "number", "string", "boolean", "category"]


class Artifact(KubeModel):
    """The serialized model in S3; its digest is checked before every load."""

    uri: S3Uri
    """s3://bucket/key of the artifact."""
    sha256: Sha256
    """sha256 of the artifact's bytes."""
    size: Annotated[int, Field(ge=0)]
    """Size in bytes."""
    format: Literal["skops"] = "skops"
    """Serialization format; skops loads without executing arbitrary code."""


class Lineage(KubeModel):
    """Where the version came from."""

    training_run: ObjectName
    """The TrainingRun that produced it."""
    dataset: ObjectName
    """The Dataset it was trained on."""
    dataset_version: Sha256
    """The dataset's content version."""


class SignatureColumn(KubeModel):
    """One input or output of the model."""

    name: ColumnName
    dtype: DType


class Signature(KubeModel):
    """What the model takes and returns; the server validates requests against it."""

    task: Literal["classification", "regression"]
    inputs: Annotated[list[SignatureColumn], Field(min_length=1, max_length=10000)]
    """Feature columns in the order the model expects them."""
    outputs: Annotated[list[SignatureColumn], Field(min_length=1, max_length=8)]
    """Outputs (the prediction, and probabilities for classifiers)."""
    classes: (
        Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=1000)]
        | None
    ) = None
    """Class labels, for classifiers, in the order of predicted probabilities."""


class ModelVersionSpec(KubeModel):
    """Everything but aliases and the deletion policy is immutable."""

    model: Annotated[ModelName, Field(json_schema_extra=IMMUTABLE)]
    """Registered model name."""
    version: Annotated[int, Field(ge=1, json_schema_extra=IMMUTABLE)]
    """Version number, monotonic per model."""
    artifact: Annotated[Artifact, Field(json_schema_extra=IMMUTABLE)]
    """The serialized model."""
    lineage: Annotated[Lineage, Field(json_schema_extra=IMMUTABLE)]
    """Run and data it came from."""
    metrics: Annotated[dict[MetricName, float], Field(max_length=32, json_schema_extra=IMMUTABLE)]
    """Metrics on the test split, as measured by the run."""
    key_metric: (
        Annotated[str, StringConstraints(max_length=64), Field(json_schema_extra=IMMUTABLE)] | None
    ) = None
    """The run's key metric (its first) with its test value, e.g. accuracy=0.9667, so
    `kubectl get mv` compares versions at a glance."""
    signature: Annotated[Signature, Field(json_schema_extra=IMMUTABLE)]
    """Inputs and outputs."""
    aliases: (
        Annotated[
            list[LabelName],
            Field(max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}),
        ]
        | None
    ) = None
    """Movable names (e.g. champion) this version should hold. Setting an alias here
    moves it from whichever version held it; the move is recorded in status."""
    deletion_policy: Literal["Delete", "Retain"] = "Delete"
    """Delete removes the artifact from S3 with the version; Retain keeps it."""


class AliasHolding(StatusModel):
    """An alias this version holds, and since when."""

    name: LabelName
    since: Timestamp
    claim_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The resourceVersion at which the claim (spec.aliases) was first seen: when two
    versions claim an alias, the later claim wins."""


class AliasClaim(StatusModel):
    """An alias spec.aliases claims, dated when the operator first saw the claim."""

    name: LabelName
    claim_version: Annotated[str, StringConstraints(max_length=64)]
    """The resourceVersion at which the claim was first seen: when two versions claim
    an alias, the later claim wins. Recorded before the operator writes anything else
    to this version, so its own writes never make a claim look later."""


class AliasMove(StatusModel):
    """One recorded alias move involving this version."""

    alias: LabelName
    action: Literal["Assigned", "Removed"]
    time: Timestamp
    previous: ObjectName | None = None
    """The version that held the alias before (on Assigned)."""
    next: ObjectName | None = None
    """The version that took the alias over (on Removed)."""


class ModelVersionStatus(ObservedStatus):
    """Verification and alias state; the summary condition is Ready."""

    verified_sha256: Sha256 | None = None
    """Digest the operator measured in S3."""
    verified_time: Timestamp | None = None
    """When the artifact was last verified."""
    verified_etag: Annotated[str, StringConstraints(max_length=256)] | None = None
    """The object's ETag when it was hashed; a changed ETag triggers a re-hash."""
    claims: Annotated[list[AliasClaim], Field(max_length=16)] | None = None
    """Every alias spec.aliases claims, with when the claim was first seen."""
    aliases: Annotated[list[AliasHolding], Field(max_length=16)] | None = None
    """Aliases held now."""
    alias_list: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Aliases held, comma-separated, for display."""
    alias_history: Annotated[list[AliasMove], Field(max_length=50)] | None = None
    """Alias moves involving this version, newest first (bounded)."""
    deployments: Annotated[list[ObjectName], Field(max_length=100)] | None = None
    """kubeml.io Deployments serving this version."""
    report: ModelReport | None = None
    """The model report of the run that produced this version (`kubeml report NAME`
    fetches it); absent for versions registered by hand."""


class ModelVersion(Resource):
    """A registered, immutable model version."""

    crd = CrdInfo(
        kind="ModelVersion",
        plural="modelversions",
        singular="modelversion",
        short_names=("mv", "kmlmv"),
        summary_condition="Ready",
        printer_columns=(
            PrinterColumn("Model", ".spec.model"),
            PrinterColumn("Version", ".spec.version", type="integer"),
            PrinterColumn("Metric", ".spec.keyMetric", description="Key metric on test"),
            PrinterColumn("Aliases", ".status.aliasList"),
            condition_column("Ready", "Ready"),
            PrinterColumn("Run", ".spec.lineage.trainingRun", priority=1),
            PrinterColumn("Data-Version", ".spec.lineage.datasetVersion", priority=1),
            PrinterColumn("Sha256", ".spec.artifact.sha256", priority=1),
            AGE,
        ),
    )

    kind: Literal["ModelVersion"] = "ModelVersion"
    spec: ModelVersionSpec
    """The version; immutable but for aliases and deletionPolicy."""
    status: ModelVersionStatus | None = None
    """Observed state, written by the operator."""

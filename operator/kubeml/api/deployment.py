"""Deployment (kubeml.io): serve a ModelVersion, roll versions safely, monitor it."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from .base import (
    FieldError,
    KubeModel,
    LabelName,
    LocalObjectReference,
    ObjectName,
    ObservedStatus,
    ResourceRequirements,
    StatusModel,
    cel,
    validations,
)
from .resource import AGE, CrdInfo, PrinterColumn, Resource, condition_column
from .schedule import Schedule
from .trainingrun import ModelName

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
ONE_OF_VERSION_ALIAS = validations(
    cel("has(self.version) != has(self.alias)", "exactly one of version or alias must be set")
)


def _one_of_version_alias(version: int | None, alias: str | None) -> None:
    if (version is None) == (alias is None):
        raise ValueError("exactly one of version or alias must be set")


class Canary(KubeModel, json_schema_extra=ONE_OF_VERSION_ALIAS):
    """A second version taking a share of the traffic."""

    version: Annotated[int, Field(ge=1)] | None = None
    """A fixed version number."""
    alias: LabelName | None = None
    """An alias to follow (e.g. challenger)."""
    traffic_percent: Annotated[int, Field(ge=0, le=100)]
    """Share of requests for the canary, exact by request: clients reach the stable
    servers through the Service, and each forwards this many of every 100 inference
    requests to the canary (status.canary.trafficPercent reports the share in effect)."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        _one_of_version_alias(self.version, self.alias)
        return self


class Autoscaling(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must not exceed maxReplicas",
            field_path=".minReplicas",
        )
    ),
):
    """Horizontal pod autoscaling on CPU."""

    min_replicas: Annotated[int, Field(ge=1, le=100)] = 1
    """Fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=100)]
    """Most replicas."""
    target_cpu_utilization_percentage: Annotated[
        int, Field(ge=1, le=100, alias="targetCPUUtilizationPercentage")
    ] = 70
    """Average CPU utilisation to aim for."""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise FieldError("minReplicas", "minReplicas must not exceed maxReplicas")
        return self


class Alerts(KubeModel):
    """Thresholds of the generated PrometheusRule."""

    error_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    """Fraction of failed requests over 5 minutes that fires KubeMLHighErrorRate."""
    latency_p99_seconds: Annotated[float, Field(gt=0, le=600)] = 0.5
    """p99 latency over 5 minutes that fires KubeMLHighLatency."""
    drift_psi: Annotated[float, Field(gt=0, le=100)] = 0.2
    """Population stability index of any feature that fires KubeMLFeatureDrift."""


class Monitoring(KubeModel):
    """Prometheus scraping and alerting."""

    enabled: bool = True
    """Expose metrics and create scrape configuration."""
    service_monitor: bool | None = None
    """Create a ServiceMonitor and PrometheusRule; default: when their CRDs exist."""
    scrape_interval: Annotated[
        str, StringConstraints(max_length=16, pattern=r"^[0-9]+(ms|s|m|h)$")
    ] = "30s"
    """How often Prometheus scrapes the server."""
    alerts: Alerts = Field(default_factory=Alerts)
    """Alert thresholds."""


class ServerOptions(KubeModel):
    """Model server tuning. The defaults are measured (README, "Serving"): a
    100-tree forest's predict costs about the same for 1 row as for 1024, so a batch
    is bounded by rows and by requests and concurrent requests of any shape share
    predict calls."""

    max_batch_size: Annotated[int, Field(ge=1, le=65536)] = 1024
    """Most rows predicted together when concurrent requests are batched (a single
    larger request is predicted alone, never split)."""
    max_batch_requests: Annotated[int, Field(ge=1, le=4096)] = 64
    """Most requests predicted together in one batch."""
    max_batch_delay_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    """Longest a request waits for others to join its batch."""
    max_request_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 8 << 20
    """Largest request body accepted (413 above it)."""
    max_connections: Annotated[int, Field(ge=1, le=100000)] = 1024
    """Most HTTP connections held open at once; more are answered 503 and closed."""
    grpc: bool = True
    """Serve the Open Inference Protocol's gRPC form on its own port (8081)."""


class RetrainingTriggers(KubeModel):
    """What starts a retraining run."""

    drift: bool = True
    """Ask for new data when a feature's PSI in the stable servers exceeds
    monitoring.alerts.driftPsi."""
    dataset_change: bool = False
    """Whenever the training Dataset publishes a new version (also one it was not
    asked for, e.g. from its own refresh schedule)."""
    schedule: Schedule | None = None
    """Ask for new data on a cron schedule (UTC), in the grammar of a Dataset's
    spec.refresh.schedule."""


class Retraining(KubeModel):
    """Close the loop: retrain from a template run when there is new data, and
    promote the new version when it beats the alias holder on the same test split.

    Drift and the schedule ask the template's Dataset for new data (a refresh);
    a run starts when the Dataset publishes a version no model was trained on.
    Identical data would train an identical model, so none is started for it."""

    template: LocalObjectReference
    """A TrainingRun whose spec is copied for each retraining run."""
    triggers: RetrainingTriggers = Field(default_factory=RetrainingTriggers)
    """What starts a run."""
    promote_alias: LabelName | None = None
    """Move this alias to the new version when it passes its gates. A gate to beat
    the alias holder on the key metric is added when the template has none; if the
    promoted version cannot serve (Degraded), the alias goes back."""
    cooldown_seconds: Annotated[int, Field(ge=0, le=2592000)] = 3600
    """Shortest time between two runs, and between two requests for new data."""


class DeploymentSpec(
    KubeModel,
    json_schema_extra=validations(
        cel("has(self.version) != has(self.alias)", "exactly one of version or alias must be set"),
        cel(
            "!(has(self.replicas) && has(self.autoscaling))",
            "replicas and autoscaling are mutually exclusive",
            field_path=".autoscaling",
        ),
    ),
):
    """Which model version to serve, how many replicas, canary and monitoring."""

    model: ModelName
    """Registered model name."""
    version: Annotated[int, Field(ge=1)] | None = None
    """Serve this fixed version."""
    alias: LabelName | None = None
    """Serve whichever version holds this alias, rolling when it moves."""
    replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    """Fixed number of stable replicas (default 1)."""
    autoscaling: Autoscaling | None = None
    """Autoscale instead of a fixed replica count."""
    canary: Canary | None = None
    """Optional canary version."""
    resources: ResourceRequirements | None = None
    """Resources of each server pod."""
    server: ServerOptions | None = None
    """Server tuning."""
    monitoring: Monitoring | None = None
    """Metrics and alerts (on by default)."""
    retraining: Retraining | None = None
    """Optional continuous-improvement policy."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _one_of_version_alias(self.version, self.alias)
        if self.replicas is not None and self.autoscaling is not None:
            raise FieldError("autoscaling", "replicas and autoscaling are mutually exclusive")
        return self


class ServedVersion(StatusModel):
    """One served track (stable or canary)."""

    version: Annotated[int, Field(ge=1)] | None = None
    model_version: ObjectName | None = None
    replicas: Annotated[int, Field(ge=0)] = 0
    ready_replicas: Annotated[int, Field(ge=0)] = 0
    traffic_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    """Share of requests this track answers now (canary: forwarded by the stable
    servers; 0 while it has no ready server; absent while it cannot be told)."""
    desired_traffic_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    """Share asked for in spec."""


class FailureInfo(StatusModel):
    """The last failure, kept until the next success."""

    reason: Annotated[str, StringConstraints(max_length=128)]
    message: Annotated[str, StringConstraints(max_length=4096)]
    time: Timestamp


class RetrainingTrigger(StatusModel):
    """Why retraining last acted."""

    reason: Annotated[str, StringConstraints(max_length=128)]
    """Drift, Schedule or DatasetChanged."""
    message: Annotated[str, StringConstraints(max_length=4096)]
    time: Timestamp


class Promotion(StatusModel):
    """The last alias move made by retraining, and its rollback if it had one."""

    run: ObjectName
    """The retraining run whose version was promoted."""
    model_version: ObjectName
    """The promoted ModelVersion."""
    alias: LabelName
    previous: ObjectName | None = None
    """The version that held the alias before (the rollback target)."""
    time: Timestamp
    rolled_back_time: Timestamp | None = None
    """When the alias went back to the previous version because the promoted one
    could not serve."""


class RetrainingStatus(StatusModel):
    """Where the retraining loop stands."""

    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """What retraining is doing or waiting for, naming the objects involved."""
    last_trigger: RetrainingTrigger | None = None
    refresh_requested_time: Timestamp | None = None
    """When new data was last requested from the template's Dataset."""
    active_run: ObjectName | None = None
    """The retraining run in progress."""
    runs: Annotated[list[ObjectName], Field(max_length=20)] | None = None
    """Recent retraining runs, newest first."""
    last_promotion: Promotion | None = None


class DeploymentStatus(ObservedStatus):
    """Served versions and health; summary condition Ready, plus Progressing and Degraded."""

    stable: ServedVersion | None = None
    """The stable track."""
    canary: ServedVersion | None = None
    """The canary track, while one is configured."""
    previous: ServedVersion | None = None
    """The version being rolled away from, while a rollout is in progress."""
    replicas: Annotated[int, Field(ge=0)] | None = None
    """All server pods."""
    ready_replicas: Annotated[int, Field(ge=0)] | None = None
    """Server pods with the model loaded and verified."""
    endpoint: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """In-cluster URL of the Service."""
    last_failure: FailureInfo | None = None
    """Most recent failure (e.g. ArtifactMismatch), cleared on recovery."""
    retraining: RetrainingStatus | None = None
    """The retraining loop, when spec.retraining is set."""


class Deployment(Resource):
    """Serves a model with canary rollouts and Prometheus monitoring."""

    crd = CrdInfo(
        kind="Deployment",
        plural="deployments",
        singular="deployment",
        short_names=("mldeploy", "kmldeploy"),
        summary_condition="Ready",
        printer_columns=(
            PrinterColumn("Model", ".spec.model"),
            PrinterColumn("Version", ".status.stable.version", type="integer"),
            PrinterColumn("Canary", ".status.canary.version", type="integer"),
            PrinterColumn("Canary-%", ".status.canary.trafficPercent", type="integer"),
            PrinterColumn("Ready", ".status.readyReplicas", type="integer"),
            condition_column("Status", "Ready"),
            PrinterColumn("Endpoint", ".status.endpoint", priority=1),
            AGE,
        ),
    )

    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    """Desired serving state."""
    status: DeploymentStatus | None = None
    """Observed state, written by the operator."""

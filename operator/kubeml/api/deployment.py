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


class Shadow(KubeModel, json_schema_extra=ONE_OF_VERSION_ALIAS):
    """A version that receives a mirrored copy of a share of requests and whose answers
    are discarded: its latency, errors and agreement with stable are measured on real
    traffic before it takes any."""

    version: Annotated[int, Field(ge=1)] | None = None
    """A fixed version number."""
    alias: LabelName | None = None
    """An alias to follow (e.g. challenger)."""
    percent: Annotated[int, Field(ge=1, le=100)]
    """Share of the HTTP inference requests the stable servers answer themselves that
    they also send to the shadow, exact by request. Clients get stable's answer
    without waiting for the shadow and never see its answer or its failure."""
    tolerance: Annotated[float, Field(ge=0, le=1_000_000)] = 0.01
    """A regressor's row agrees when the shadow's prediction is within tolerance x
    max(1, |stable's|) of stable's; a classifier's when the labels are equal."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        _one_of_version_alias(self.version, self.alias)
        return self


Duration = Annotated[str, StringConstraints(max_length=16, pattern=r"^[0-9]{1,6}(s|m|h)$")]


def duration_seconds(value: str) -> float:
    """Seconds of a Duration ("30s", "5m", "1h")."""
    return float(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


# Whole hours or days: captures are partitioned by hour, the unit retention removes.
RetentionPeriod = Annotated[str, StringConstraints(max_length=8, pattern=r"^[1-9][0-9]{0,4}(h|d)$")]


def retention_hours(value: str) -> int:
    """Hours of a RetentionPeriod ("720h", "30d")."""
    return int(value[:-1]) * {"h": 1, "d": 24}[value[-1]]


class Pause(KubeModel):
    """How long a step holds its traffic weight before the next (Argo Rollouts' pause).
    Without a duration (``pause: {}``) the step is a manual gate: it waits for
    spec.rollout.approval (or the kubeml.io/approved-step annotation)."""

    duration: Duration | None = None
    """Time at the step's weight, counted from when the weight is in effect; absent:
    until approved."""


class RolloutStep(KubeModel):
    """One step of a progressive rollout (Argo Rollouts' setWeight + pause)."""

    set_weight: Annotated[int, Field(ge=1, le=100)]
    """Share of requests for the new version during this step, percent."""
    pause: Pause = Field(default_factory=lambda: Pause(duration="30s"))
    """How long the step lasts; every analysis in it must pass or be inconclusive, and
    at least one must pass, before the next step."""


class Analysis(KubeModel):
    """How each step is judged, on the new version's live requests (Flagger's analysis)."""

    interval: Duration = "10s"
    """Time between two judgements."""
    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    """Failed judgements allowed; one more rolls back (Argo Rollouts' failureLimit)."""
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """Fewer requests answered by the new version in the step: inconclusive."""
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Largest fraction of forwarded requests the new version may fail (an error
    answer, no answer, or one too late)."""
    max_latency_p99_seconds: Annotated[float, Field(gt=0, le=600)] = 0.5
    """Largest p99 latency of the new version's requests, as the stable servers
    measure them (the extra hop included)."""
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] | None = None
    """Largest error rate of the new version above the stable version's own over the
    same step (stable's answers to v1/v2 inference requests, client errors and its
    fallback answers for the new version excluded). Off unless set; skipped in a
    step where stable answered fewer than minRequests of its own."""
    max_latency_p99_ratio: Annotated[float, Field(gt=0, le=1000)] | None = None
    """Largest ratio of the new version's p99 latency (as the stable servers measure
    it, the forwarding hop included) to the stable version's own over the same step.
    Off unless set; skipped like maxErrorRateIncrease."""
    max_drift_psi: Annotated[float, Field(gt=0, le=100)] | None = None
    """Largest feature drift (population stability index of the new version's recent
    inputs against its own training profile, the highest feature on any of its
    servers). Off unless set; inconclusive until its servers hold enough rows (100)."""
    min_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    """Smallest share of rows on which the new version's predictions agree with
    stable's, on requests the stable servers mirror to it during the step (shadow
    traffic: its answers discarded). A classifier's rows agree when the labels are
    equal, a regressor's within 1% (of max(1, |stable's|)). Fewer than minRequests
    rows compared: inconclusive. Unset: not judged, nothing mirrored."""
    mirror_weight: Annotated[int, Field(ge=1, le=100)] = 20
    """With minAgreement: share of the requests the stable servers answer themselves
    that they also mirror to the new version (Flagger's mirrorWeight)."""


class Approval(KubeModel):
    """An approval of a rollout's manual gates, for one version (never a later one)."""

    version: Annotated[int, Field(ge=1)]
    """The version being rolled out."""
    step: Annotated[int, Field(ge=1, le=20)]
    """Gates up to this step (1-based) may pass."""


def _default_steps() -> list[RolloutStep]:
    return [
        RolloutStep(set_weight=10, pause=Pause(duration="30s")),
        RolloutStep(set_weight=50, pause=Pause(duration="30s")),
    ]


class Rollout(KubeModel):
    """Progressive delivery: a new version (a moved alias or a changed version) takes
    traffic in steps, each judged on its live metrics, and becomes stable after the
    last one; a judgement over the failure limit sends all traffic back at once."""

    steps: Annotated[list[RolloutStep], Field(min_length=1, max_length=20)] = Field(
        default_factory=_default_steps
    )
    """Weights and pauses; after the last step the new version takes all traffic."""
    analysis: Analysis = Field(default_factory=Analysis)
    """How each step is judged."""
    approval: Approval | None = None
    """Lets the rollout to this version past its gates up to this step: a change a
    GitOps repository commits. ``kubectl annotate mldeploy NAME
    kubeml.io/approved-step=VERSION/STEP`` does the same."""


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
    live_accuracy: Annotated[float, Field(gt=0, le=1)] | None = None
    """Live accuracy (from ground-truth feedback, spec.capture) below which
    KubeMLLowLiveAccuracy fires; unset: no such alert. Also the threshold of the
    liveQuality retraining trigger."""
    live_mae: Annotated[float, Field(gt=0)] | None = None
    """Live mean absolute error of a regressor above which KubeMLHighLiveError fires."""
    shadow_agreement: Annotated[float, Field(gt=0, le=1)] | None = None
    """Agreement of a shadow version with stable (spec.shadow; rows of mirrored
    requests over 10 minutes, at least 100 compared) below which
    KubeMLLowShadowAgreement fires; unset: no such alert."""
    min_labelled_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 50
    """Labelled rows a server must hold before its live quality can fire an alert
    or trigger retraining: a handful of labels is noise."""


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


class Capture(KubeModel):
    """Request capture: a sampled share of requests and their responses, written by
    the server to S3 as Parquet (under the namespace's own prefix, partitioned by
    model, version and hour), and the ground-truth feedback endpoint beside it.
    Capture never slows or fails a request: when S3 cannot keep up, records are
    dropped and counted (kubeml_capture_dropped_records_total)."""

    sample_percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    """Share of requests captured, decided per request."""
    keep_inputs: Annotated[list[LabelName], Field(max_length=1000)] | None = None
    """Only these input features are written (default: all)."""
    drop_inputs: Annotated[list[LabelName], Field(max_length=1000)] | None = None
    """Input features never written: removed in the server, before anything leaves it."""
    retention: RetentionPeriod | None = None
    """How long captured requests and their feedback are kept, in whole hours or days
    ("720h", "30d"). The operator deletes this Deployment's hour partitions (captures
    and feedback, every model version) once the whole hour is older than this; it
    looks every few minutes and touches nothing outside this Deployment's prefixes in
    its own namespace. Unset: kept until deleted by hand (the default)."""


class RetrainingTriggers(KubeModel):
    """What starts a retraining run."""

    drift: bool = True
    """Ask for new data when a feature's PSI in the stable servers exceeds
    monitoring.alerts.driftPsi."""
    live_quality: bool = False
    """Ask for new data when a stable server's live accuracy (from ground-truth
    feedback, spec.capture) falls below monitoring.alerts.liveAccuracy on at least
    monitoring.alerts.minLabelledRows labelled rows. Pair it with a template whose
    Dataset reads source.production, so the new data is what the model saw."""
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
    rollout: Literal["Progressive", "Immediate"] = "Progressive"
    """How a new holder of promoteAlias reaches traffic when it is the alias this
    Deployment serves. Progressive: in spec.rollout's steps, or the default steps
    (10% then 50%, 30 s each, judged every 10 s) when spec.rollout is absent; a
    breach rolls it back and the alias returns to the version that served.
    Immediate: all traffic at once (only without spec.rollout, which, when set,
    governs every new version). Not with spec.canary, a comparison of its own."""


IMMEDIATE_WITH_STEPS = (
    "retraining.rollout Immediate contradicts spec.rollout, whose steps every new version takes"
)


# Gateway API's Hostname and an Ingress rule's host: a DNS name, optionally with
# one leading wildcard label; never an IP address (neither API routes by those).
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NOT_AN_IP = validations(cel("!self.matches('^[0-9.]+$')", "must be a DNS name, not an IP address"))
Hostname = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN),
    Field(json_schema_extra=NOT_AN_IP),
]


def _not_an_ip(host: str) -> str:
    if all(c.isdigit() or c == "." for c in host):
        raise ValueError("must be a DNS name, not an IP address")
    return host


class ParentReference(KubeModel):
    """The Gateway (a listener of it) the route attaches to, as Gateway API's
    parentRefs name it."""

    name: ObjectName
    """Name of the Gateway."""
    namespace: LabelName | None = None
    """Its namespace (default: the Deployment's). A Gateway in another namespace
    must allow routes from this one (its listener's allowedRoutes)."""
    section_name: LabelName | None = None
    """One listener of the Gateway (default: every listener that allows the route)."""


class GatewayExposure(KubeModel):
    """Publish the model through a Gateway: an HTTPRoute (gateway.networking.k8s.io/v1)
    named after the Deployment, created when the Gateway API's CRDs are installed."""

    parent_refs: Annotated[list[ParentReference], Field(min_length=1, max_length=32)]
    """Gateways (or their listeners) to attach to."""
    hostnames: Annotated[list[Hostname], Field(max_length=16)] | None = None
    """Host headers the route answers (default: those of the listeners)."""

    @model_validator(mode="after")
    def _hosts(self) -> Self:
        for i, host in enumerate(self.hostnames or []):
            try:
                _not_an_ip(host)
            except ValueError as err:
                raise FieldError(f"hostnames[{i}]", str(err)) from None
        return self


class IngressExposure(KubeModel):
    """Publish the model through an Ingress (networking.k8s.io/v1) named after the
    Deployment."""

    class_name: LabelName | None = None
    """IngressClass (default: the cluster's default class)."""
    host: Hostname
    """Host the rules answer."""
    tls_secret_name: ObjectName | None = None
    """A Secret in this namespace holding the certificate for host (TLS terminated
    by the ingress controller; the operator never reads it)."""
    annotations: (
        Annotated[
            dict[str, Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=32)
        ]
        | None
    ) = None
    """Annotations for the ingress controller (e.g. rate limits)."""

    @model_validator(mode="after")
    def _host(self) -> Self:
        try:
            _not_an_ip(self.host)
        except ValueError as err:
            raise FieldError("host", str(err)) from None
        return self


class Exposure(
    KubeModel,
    json_schema_extra=validations(
        cel("has(self.gateway) || has(self.ingress)", "set gateway, ingress or both")
    ),
):
    """Publish the model outside the cluster. Both may be set (e.g. while moving
    from an Ingress to a Gateway). The routes send the model's own paths, as the
    server answers them, to the Deployment's Service (port http): every path
    under /v2/models/MODEL (inference, metadata, readiness, versions, feedback),
    and /v1/models/MODEL and /v1/models/MODEL:predict. Health and /metrics stay
    inside the cluster. Paths carry the model name, so Deployments of different
    models can share one host."""

    gateway: GatewayExposure | None = None
    """An HTTPRoute attached to a Gateway."""
    ingress: IngressExposure | None = None
    """An Ingress."""

    @model_validator(mode="after")
    def _some(self) -> Self:
        if self.gateway is None and self.ingress is None:
            raise ValueError("set gateway, ingress or both")
        return self


class DeploymentSpec(
    KubeModel,
    json_schema_extra=validations(
        cel("has(self.version) != has(self.alias)", "exactly one of version or alias must be set"),
        cel(
            "!(has(self.replicas) && has(self.autoscaling))",
            "replicas and autoscaling are mutually exclusive",
            field_path=".autoscaling",
        ),
        cel(
            "!(has(self.canary) && has(self.rollout))",
            "canary and rollout are mutually exclusive: a rollout makes its own canary",
            field_path=".rollout",
        ),
        cel(
            "!(has(self.rollout) && has(self.retraining) && has(self.retraining.rollout)"
            " && self.retraining.rollout == 'Immediate')",
            IMMEDIATE_WITH_STEPS,
            field_path=".retraining.rollout",
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
    shadow: Shadow | None = None
    """Optional shadow version: mirrored requests, answers discarded, agreement measured."""
    rollout: Rollout | None = None
    """Roll a new version out in steps judged on live metrics, instead of at once."""
    resources: ResourceRequirements | None = None
    """Resources of each server pod."""
    server: ServerOptions | None = None
    """Server tuning."""
    monitoring: Monitoring | None = None
    """Metrics and alerts (on by default)."""
    retraining: Retraining | None = None
    """Optional continuous-improvement policy."""
    capture: Capture | None = None
    """Capture requests and accept ground-truth feedback (off when absent)."""
    exposure: Exposure | None = None
    """Publish the model outside the cluster through a Gateway or an Ingress."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _one_of_version_alias(self.version, self.alias)
        if self.replicas is not None and self.autoscaling is not None:
            raise FieldError("autoscaling", "replicas and autoscaling are mutually exclusive")
        if self.canary is not None and self.rollout is not None:
            raise FieldError(
                "rollout",
                "canary and rollout are mutually exclusive: a rollout makes its own canary",
            )
        if (
            self.rollout is not None
            and self.retraining is not None
            and self.retraining.rollout == "Immediate"
        ):
            raise FieldError("retraining.rollout", IMMEDIATE_WITH_STEPS)
        return self

    def rollout_policy(self) -> Rollout | None:
        """The steps a new version of the served alias takes: spec.rollout, or the
        default steps when this Deployment's retraining promotes the alias it serves
        (spec.retraining.rollout Progressive, the default); None: all at once."""
        if self.rollout is not None:
            return self.rollout
        loop = self.retraining
        if (
            loop is None
            or loop.rollout != "Progressive"
            or self.canary is not None
            or self.alias is None
            or loop.promote_alias != self.alias
        ):
            return None
        return Rollout()


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


class ShadowStatus(StatusModel):
    """The shadow track: a version receiving mirrored requests."""

    version: Annotated[int, Field(ge=1)] | None = None
    model_version: ObjectName | None = None
    replicas: Annotated[int, Field(ge=0)] = 0
    ready_replicas: Annotated[int, Field(ge=0)] = 0
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    """Share of stable's requests mirrored to it now (0 while it has no ready server or
    the stable servers mirror elsewhere; absent while it cannot be told)."""
    desired_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    """Share asked for in spec."""
    rows_compared: Annotated[int, Field(ge=0)] | None = None
    """Rows of mirrored requests whose shadow prediction was compared with stable's,
    summed over the stable servers (since they started)."""
    rows_agreed: Annotated[int, Field(ge=0)] | None = None
    """Of those, rows on which the shadow agreed with stable."""
    agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    """rowsAgreed / rowsCompared; absent before a row was compared."""
    measured_time: Timestamp | None = None
    """When the stable servers' counters were read and had changed (they are read
    about every 30 s while mirroring is in effect)."""


class FailureInfo(StatusModel):
    """The last failure, kept until the next success."""

    reason: Annotated[str, StringConstraints(max_length=128)]
    message: Annotated[str, StringConstraints(max_length=4096)]
    time: Timestamp


class RetrainingTrigger(StatusModel):
    """Why retraining last acted."""

    reason: Annotated[str, StringConstraints(max_length=128)]
    """Drift, LiveQuality, Schedule or DatasetChanged."""
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
    """When the alias went back to the previous version: the promoted one could not
    serve, or failed a check of its progressive rollout."""
    rolled_back_message: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Why it went back (the failed check and its value, or the reason it could not
    serve)."""


class CheckResult(StatusModel):
    """One check of a judgement."""

    name: Annotated[str, StringConstraints(max_length=64)]
    value: float | None = None
    """Measured; absent when nothing could be measured."""
    limit: float
    passed: bool | None = None
    """Absent: inconclusive, or skipped."""
    message: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Why it could not be told or was skipped; for driftPsi, the feature."""


class AnalysisRun(StatusModel):
    """The last judgement of a rollout step."""

    time: Timestamp
    result: Literal["Pass", "Fail", "Inconclusive"]
    requests: Annotated[int, Field(ge=0)] = 0
    """Requests answered by the new version in the step, judged."""
    checks: Annotated[list[CheckResult], Field(max_length=16)] = Field(default_factory=list)
    source: Literal["pods", "prometheus"] = "pods"
    """Where the metrics came from: each pod's /metrics, or Prometheus' HTTP API
    (when the operator is configured with one)."""
    message: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Why it was inconclusive."""


class RolloutEvent(StatusModel):
    time: Timestamp
    reason: Annotated[str, StringConstraints(max_length=128)]
    message: Annotated[str, StringConstraints(max_length=1024)]


class RolloutStatus(StatusModel):
    """Where a progressive rollout stands (the last one, once it ended)."""

    phase: Literal["Progressing", "Succeeded", "RolledBack", "Aborted"]
    from_: ServedVersion = Field(alias="from")
    """The version serving before (the rollback target)."""
    to: ServedVersion
    """The new version."""
    step: Annotated[int, Field(ge=0)] = 0
    """Index of the current step (0-based)."""
    steps: Annotated[int, Field(ge=1)] = 1
    weight: Annotated[int, Field(ge=0, le=100)] = 0
    """The current step's weight."""
    step_start_time: Timestamp | None = None
    """When the current step's weight took effect (its pause counts from here)."""
    step_passed: bool = False
    """Whether a judgement in the current step passed."""
    waiting_for: Annotated[str, StringConstraints(max_length=256)] | None = None
    """What the step waits for before the next: Approval (a manual gate)."""
    failures: Annotated[int, Field(ge=0)] = 0
    last_analysis: AnalysisRun | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    rolled_back_generation: int | None = None
    """The Deployment's generation when it rolled back: Degraded until the spec changes."""
    history: Annotated[list[RolloutEvent], Field(max_length=20)] = Field(default_factory=list)
    """Steps, judgements that failed and the outcome, newest last (bounded)."""


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


class RouteCondition(StatusModel):
    """A condition a Gateway reported on the route (Accepted, ResolvedRefs, ...)."""

    type: Annotated[str, StringConstraints(max_length=316)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None
    message: Annotated[str, StringConstraints(max_length=32768)] | None = None


class RouteParent(StatusModel):
    """What one Gateway said about the HTTPRoute (its status.parents)."""

    parent: Annotated[str, StringConstraints(max_length=512)]
    """NAMESPACE/NAME of the Gateway, with /LISTENER when the route names one."""
    controller: Annotated[str, StringConstraints(max_length=253)] | None = None
    conditions: Annotated[list[RouteCondition], Field(max_length=8)] = Field(default_factory=list)


class PublishedRoute(StatusModel):
    """An object the operator published the model with."""

    name: ObjectName
    hostnames: Annotated[list[str], Field(max_length=16)] = Field(default_factory=list)
    parents: Annotated[list[RouteParent], Field(max_length=32)] | None = None
    """HTTPRoute: the Gateways' verdicts (empty until a Gateway controller answers)."""
    addresses: Annotated[list[str], Field(max_length=16)] | None = None
    """Ingress: the addresses its controller published."""


class ExposureStatus(StatusModel):
    """What spec.exposure published."""

    http_route: PublishedRoute | None = None
    ingress: PublishedRoute | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """Why something asked for is not published (e.g. no Gateway API)."""


class DeploymentStatus(ObservedStatus):
    """Served versions and health; summary condition Ready, plus Progressing and Degraded."""

    stable: ServedVersion | None = None
    """The stable track."""
    canary: ServedVersion | None = None
    """The canary track, while one is configured."""
    shadow: ShadowStatus | None = None
    """The shadow track, while one is configured."""
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
    rollout: RolloutStatus | None = None
    """The progressive rollout, when a new version came under spec.rollout or the
    default steps of a retraining promotion (the last one, once it ended)."""
    exposure: ExposureStatus | None = None
    """What spec.exposure published; condition Exposed says whether it all is."""


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
            PrinterColumn("Shadow", ".status.shadow.version", type="integer", priority=1),
            PrinterColumn("Rollout", ".status.rollout.phase", priority=1),
            PrinterColumn("Step", ".status.rollout.step", type="integer", priority=1),
            PrinterColumn("Ready", ".status.readyReplicas", type="integer"),
            condition_column("Status", "Ready"),
            PrinterColumn("Endpoint", ".status.endpoint", priority=1),
            PrinterColumn(
                "Exposed",
                '.status.conditions[?(@.type=="Exposed")].status',
                description="Whether spec.exposure is published (condition Exposed)",
                priority=1,
            ),
            AGE,
        ),
    )

    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    """Desired serving state."""
    status: DeploymentStatus | None = None
    """Observed state, written by the operator."""

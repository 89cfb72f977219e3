"""TrainingRun: train, tune and measure a model in a Job, then pass or fail its gates."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from .base import (
    MAX_STAGES,
    FieldError,
    KubeModel,
    LabelName,
    ObjectName,
    ObservedStatus,
    ResourceRequirements,
    Sha256,
    StageTiming,
    cel,
    validations,
)
from .estimators import (
    ALL_PARAMS,
    DEFAULT_METRICS,
    ESTIMATORS,
    METRICS,
    EstimatorName,
    MetricName,
    metrics_rule,
)
from .resource import AGE, CrdInfo, PrinterColumn, Resource, condition_column

# A model name becomes part of ModelVersion names (`<model>-v<N>`) and of
# labels, so it is a DNS label short enough to leave room for the suffix.
ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
# Parameter values are free-form (numbers, strings, booleans, null, lists), and
# the apiserver gives schemaless values no CEL type, so names cannot be checked
# by a CEL rule. Declaring every allowlisted name instead makes an unknown one
# fail strict field validation at admission; which names fit which estimator
# is checked by the models (and reported as InvalidSpec by the operator).
ANY_VALUE: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True, "nullable": True}
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {p: dict(ANY_VALUE) for p in ALL_PARAMS},
}
SPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        p: {"type": "array", "minItems": 1, "maxItems": 100, "items": dict(ANY_VALUE)}
        for p in ALL_PARAMS
    },
}


class DatasetRef(KubeModel):
    """The Dataset to train on, optionally pinned to one of its versions."""

    name: ObjectName
    """Dataset name (same namespace)."""
    version: Sha256 | None = None
    """Pin to this content version; the Dataset's current version when omitted."""


class Estimator(KubeModel):
    """A scikit-learn estimator from the allowlist, with its parameters."""

    name: EstimatorName
    """Short name from the allowlist, e.g. random-forest-classifier."""
    params: (
        Annotated[dict[ParamName, Any], Field(max_length=32, json_schema_extra=PARAMS_SCHEMA)]
        | None
    ) = None
    """Constructor parameters, validated against the estimator's own parameters."""

    @model_validator(mode="after")
    def _known_params(self) -> Self:
        allowed = ESTIMATORS[self.name].params
        unknown = sorted(set(self.params or {}) - set(allowed))
        if unknown:
            raise FieldError(
                "params",
                f"{unknown} are not parameters of {self.name}; allowed: {list(allowed)}",
            )
        return self


Scaler = Literal["none", "standard", "minmax", "robust"]
NumericImputer = Literal["median", "mean", "most_frequent", "constant"]
CategoricalImputer = Literal["most_frequent", "constant"]
HandleUnknown = Literal["ignore", "infrequent_if_exist"]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class NumericPreprocessing(KubeModel):
    """How integer and number columns are prepared."""

    scaler: Scaler = "none"
    """none, standard (zero mean, unit variance), minmax (to [0, 1]) or robust (median
    and interquartile range); linear models and SVMs usually want one."""
    imputer: NumericImputer = "median"
    """Fills nulls: median, mean, most_frequent, or constant (0)."""


class CategoricalPreprocessing(KubeModel):
    """How category, string and boolean columns are one-hot encoded."""

    imputer: CategoricalImputer = "most_frequent"
    """Fills nulls: most_frequent, or constant (the value "missing")."""
    max_categories: Annotated[int, Field(ge=2, le=1000)] | None = None
    """At most this many columns per feature; the rarest values share one. Free-text
    (string) columns are capped at 100 either way."""
    handle_unknown: HandleUnknown = "ignore"
    """A value unseen in training: ignore (all zeros), or infrequent_if_exist (counted
    with the rare values when maxCategories pooled some)."""


class Preprocessing(KubeModel):
    """Preparation of the features before the estimator: scikit-learn transformers only,
    so the fitted pipeline stays a skops artifact loadable without custom code."""

    numeric: NumericPreprocessing = Field(default_factory=NumericPreprocessing)
    """Numeric columns."""
    categorical: CategoricalPreprocessing = Field(default_factory=CategoricalPreprocessing)
    """Categorical, text and boolean columns."""
    features: Annotated[list[FeatureName], Field(min_length=1, max_length=10000)] | None = None
    """Train on these dataset features only (by name); all of them when omitted."""


class PreprocessingSpace(KubeModel):
    """Preprocessing choices searched like estimator parameters; each replaces the
    corresponding spec.preprocessing value in a candidate."""

    scaler: Annotated[list[Scaler], Field(min_length=1, max_length=4)] | None = None
    """Scalers to try, e.g. [none, standard, minmax]."""
    numeric_imputer: Annotated[list[NumericImputer], Field(min_length=1, max_length=4)] | None = (
        None
    )
    """Numeric imputation strategies to try."""
    max_categories: (
        Annotated[list[Annotated[int, Field(ge=2, le=1000)]], Field(min_length=1, max_length=16)]
        | None
    ) = None
    """Category caps to try."""


class Search(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "self.strategy != 'random' || has(self.trials)",
            "trials is required for a random search",
            field_path=".trials",
        ),
        cel(
            "has(self.space) || has(self.preprocessing)",
            "a search needs a space, a preprocessing space, or both",
            field_path=".space",
        ),
    ),
):
    """Hyper-parameter search: seeded grid or random, scored by cross-validation."""

    strategy: Literal["grid", "random"] = "grid"
    """grid tries every combination; random samples `trials` of them."""
    space: (
        Annotated[
            dict[ParamName, Annotated[list[Any], Field(min_length=1, max_length=100)]],
            Field(min_length=1, max_length=16, json_schema_extra=SPACE_SCHEMA),
        ]
        | None
    ) = None
    """Candidate values per estimator parameter."""
    preprocessing: PreprocessingSpace | None = None
    """Candidate preprocessing choices, combined with the estimator's."""
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    """Cross-validation folds."""
    trials: Annotated[int, Field(ge=1, le=100)] | None = None
    """Number of sampled candidates (random search)."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Seed for fold assignment and sampling."""
    scoring: MetricName | None = None
    """Metric to optimise; the first of spec.metrics when omitted."""
    parallelism: Annotated[int, Field(ge=1, le=32)] = 1
    """Pods the candidates are spread over (an Indexed Job, each pod scoring a fixed
    share on every fold); a final pod picks the best and refits it. The chosen
    parameters and scores do not depend on it."""

    @model_validator(mode="after")
    def _trials(self) -> Self:
        if self.strategy == "random" and self.trials is None:
            raise FieldError("trials", "trials is required for a random search")
        if self.space is None and self.preprocessing is None:
            raise FieldError("space", "a search needs a space, a preprocessing space, or both")
        return self


class Threshold(
    KubeModel,
    json_schema_extra=validations(
        cel("has(self.min) || has(self.max)", "at least one of min or max must be set")
    ),
):
    """A bound a metric on the test split must meet."""

    metric: MetricName
    """Metric name; must be listed in spec.metrics."""
    min: float | None = None
    """Smallest acceptable value (inclusive)."""
    max: float | None = None
    """Largest acceptable value (inclusive)."""

    @model_validator(mode="after")
    def _bound(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("at least one of min or max must be set")
        return self


class BeatAlias(KubeModel):
    """Require beating the version that holds an alias, on the same test split."""

    alias: LabelName = "champion"
    """Alias whose holder must be beaten; passes when no version holds it."""
    metric: MetricName
    """Metric compared (its direction is known: e.g. higher accuracy, lower rmse)."""
    min_improvement: Annotated[float, Field(ge=0)] = 0.0
    """Smallest improvement over the holder's value."""


class Gates(KubeModel):
    """Quality gates: a ModelVersion exists only if every gate passes."""

    thresholds: Annotated[list[Threshold], Field(max_length=32)] | None = None
    """Metric bounds on the test split."""
    beat: BeatAlias | None = None
    """Must beat the current holder of an alias."""


class TrainingRunSpec(KubeModel):
    """What to train, how to tune it and which gates it must pass."""

    dataset_ref: DatasetRef
    """The data."""
    model: ModelName
    """Registered model name; a passing run produces a version of it."""
    estimator: Estimator
    """The estimator and its parameters."""
    preprocessing: Preprocessing | None = None
    """Feature preparation: scaling, imputation, encoding, feature selection. The default
    passes numbers through (median-imputed) and one-hot encodes the rest."""
    search: Search | None = None
    """Optional hyper-parameter search."""
    metrics: Annotated[list[MetricName], Field(min_length=1, max_length=16)] | None = None
    """Metrics to compute on validation and test; defaults per task (accuracy and f1_macro,
    or r2 and rmse). The first is the run's key metric."""
    gates: Gates | None = None
    """Quality gates."""
    resources: ResourceRequirements | None = None
    """Resources of the training Job's pod; CPU bounds search parallelism."""
    backoff_limit: Annotated[int, Field(ge=0, le=10)] | None = None
    """Retries of the training Job (default 1)."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=604800)] | None = None
    """Deadline of the training Job (default 3600); past it the run fails with
    DeadlineExceeded."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        task = ESTIMATORS[self.estimator.name].task
        wrong = [m for m in self.metrics or () if m not in METRICS[task]]
        if wrong:
            raise FieldError(
                "metrics", f"{wrong} do not apply to {task} (estimator {self.estimator.name})"
            )
        listed = list(self.metrics or DEFAULT_METRICS[task])
        gated = [t.metric for t in (self.gates.thresholds or [])] if self.gates else []
        if self.gates and self.gates.beat:
            gated.append(self.gates.beat.metric)
        missing = [m for m in gated if m not in listed]
        if missing:
            raise FieldError("gates", f"gates use metrics {missing} that are not listed in metrics")
        if self.search:
            allowed = ESTIMATORS[self.estimator.name].params
            unknown = sorted(set(self.search.space or {}) - set(allowed))
            if unknown:
                raise FieldError(
                    "search.space",
                    f"{unknown} are not parameters of {self.estimator.name}",
                )
            if self.search.scoring and self.search.scoring not in METRICS[task]:
                raise FieldError(
                    "search.scoring", f"{self.search.scoring} does not apply to {task}"
                )
        return self


def _gate_metrics_rule() -> str:
    gated = (
        "(has(self.gates.thresholds) ? self.gates.thresholds.map(t, t.metric) : [])"
        " + (has(self.gates.beat) ? [self.gates.beat.metric] : [])"
    )
    classifiers = (
        "["
        + ", ".join(f"'{n}'" for n, e in sorted(ESTIMATORS.items()) if e.task == "classification")
        + "]"
    )
    defaults = (
        f"(self.estimator.name in {classifiers} ? "
        + "["
        + ", ".join(f"'{m}'" for m in DEFAULT_METRICS["classification"])
        + "] : "
        + "["
        + ", ".join(f"'{m}'" for m in DEFAULT_METRICS["regression"])
        + "])"
    )
    listed = f"(has(self.metrics) ? self.metrics : {defaults})"
    return f"!has(self.gates) || ({gated}).all(m, m in {listed})"


def _scoring_rule() -> str:
    classifiers = (
        "["
        + ", ".join(f"'{n}'" for n, e in sorted(ESTIMATORS.items()) if e.task == "classification")
        + "]"
    )
    cls_metrics = "[" + ", ".join(f"'{m}'" for m in METRICS["classification"]) + "]"
    reg_metrics = "[" + ", ".join(f"'{m}'" for m in METRICS["regression"]) + "]"
    return (
        "!has(self.search) || !has(self.search.scoring) || "
        f"(self.estimator.name in {classifiers} ? self.search.scoring in {cls_metrics}"
        f" : self.search.scoring in {reg_metrics})"
    )


TRAININGRUN_SPEC_RULES = validations(
    cel("self == oldSelf", "spec is immutable: create a new TrainingRun instead"),
    cel(metrics_rule(), "metrics must apply to the estimator's task", field_path=".metrics"),
    cel(
        _gate_metrics_rule(),
        "gates use metrics that are not listed in metrics",
        field_path=".gates",
    ),
    cel(
        _scoring_rule(),
        "search.scoring does not apply to the estimator's task",
        field_path=".search.scoring",
    ),
)


class TrainingRunStatus(ObservedStatus):
    """Progress and results; the summary condition is Succeeded."""

    job_name: ObjectName | None = None
    """The training Job."""
    search_job_name: ObjectName | None = None
    """The Indexed Job of a distributed search (search.parallelism > 1)."""
    dataset_version: Sha256 | None = None
    """The dataset content version trained on."""
    start_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})] | None = None
    """When the Job was created."""
    completion_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})] | None = None
    """When the run finished (succeeded or failed)."""
    metrics: Annotated[dict[MetricName, float], Field(max_length=32)] | None = None
    """Metrics on the test split."""
    validation_metrics: Annotated[dict[MetricName, float], Field(max_length=32)] | None = None
    """Metrics on the validation split."""
    key_metric: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The first metric and its test value, e.g. accuracy=0.9667, for display."""
    best_params: (
        Annotated[dict[ParamName, Any], Field(max_length=64, json_schema_extra=FREE_FORM)] | None
    ) = None
    """Parameters of the fitted model (the search's winner)."""
    trials: Trials | None = None
    """The search's trial table and its best candidates."""
    gates: Annotated[list[GateResult], Field(max_length=33)] | None = None
    """Each gate's verdict."""
    model_version: ObjectName | None = None
    """The ModelVersion this run produced."""
    result_uri: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """s3:// location of the run's result manifest."""
    stages: Annotated[list[StageTiming], Field(max_length=MAX_STAGES)] | None = None
    """Where the last Job's time went, stage by stage, in order (also the histogram
    kubeml_pipeline_stage_duration_seconds)."""
    report: ModelReport | None = None
    """The model report of the run (written whether or not its gates passed)."""


class TrialSummary(KubeModel):
    """One of the search's best candidates."""

    rank: Annotated[int, Field(ge=1)]
    """1 is the winner; equal mean scores share a rank."""
    candidate: Annotated[int, Field(ge=0)]
    """Index of the candidate in the search's order (row key in the trial table)."""
    params: Annotated[dict[ParamName, Any], Field(max_length=64, json_schema_extra=FREE_FORM)]
    """The candidate's searched parameters."""
    score: float
    """Mean cross-validated score in the metric's own units."""
    std: float | None = None
    """Standard deviation over the folds."""


class Trials(KubeModel):
    """Where every trial of the search is recorded, and the best few."""

    uri: Annotated[str, StringConstraints(max_length=2048)]
    """s3:// location of the trial table (Parquet, one row per candidate)."""
    count: Annotated[int, Field(ge=0)]
    """Candidates tried."""
    parallelism: Annotated[int, Field(ge=1)] = 1
    """Pods the search ran on."""
    metric: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The metric candidates were ranked by."""
    best: Annotated[list[TrialSummary], Field(max_length=10)] | None = None
    """The top candidates, best first."""


class GateResult(KubeModel):
    """One gate's verdict."""

    gate: Annotated[str, StringConstraints(max_length=256)]
    """What was checked, e.g. accuracy >= 0.9."""
    passed: bool
    value: float | None = None
    """The measured value."""


class ModelReport(KubeModel):
    """The model report the training Job wrote: one self-contained HTML page (data,
    search, parameters, metrics and gates, evaluation figures, feature importances).
    `kubeml report` fetches it and checks its digest."""

    uri: Annotated[str, StringConstraints(min_length=6, max_length=2048, pattern=r"^s3://\S+$")]
    """s3://bucket/key of the page, beside the model's artifacts."""
    sha256: Sha256
    """sha256 of the page's bytes."""
    size: Annotated[int, Field(ge=0)] | None = None
    """Size in bytes."""


TrainingRunStatus.model_rebuild()


class TrainingRun(Resource):
    """Trains, tunes and measures a model; a pass produces a ModelVersion."""

    crd = CrdInfo(
        kind="TrainingRun",
        plural="trainingruns",
        singular="trainingrun",
        short_names=("trun", "kmltr"),
        summary_condition="Succeeded",
        printer_columns=(
            PrinterColumn("Model", ".spec.model"),
            PrinterColumn("Dataset", ".spec.datasetRef.name"),
            PrinterColumn("Data-Version", ".status.datasetVersion", priority=1),
            PrinterColumn("Metric", ".status.keyMetric", description="Key metric on test"),
            condition_column("Succeeded", "Succeeded"),
            condition_column("Reason", "Succeeded", "reason"),
            PrinterColumn("Version", ".status.modelVersion", description="ModelVersion produced"),
            AGE,
        ),
    )

    kind: Literal["TrainingRun"] = "TrainingRun"
    spec: Annotated[TrainingRunSpec, Field(json_schema_extra=TRAININGRUN_SPEC_RULES)]
    """Desired run; immutable once created."""
    status: TrainingRunStatus | None = None
    """Observed state, written by the operator."""

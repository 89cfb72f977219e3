"""Dataset: data fetched, validated, split, profiled and versioned by content hash."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from .base import (
    MAX_STAGES,
    FieldError,
    KubeModel,
    ObjectName,
    ObservedStatus,
    ResourceRequirements,
    S3Credentials,
    Sha256,
    StageTiming,
    StatusModel,
    cel,
    validations,
)
from .resource import AGE, CrdInfo, PrinterColumn, Resource, condition_column
from .schedule import Schedule

BUILTIN_DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes")
BuiltinName = Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]
DataFormat = Literal["csv", "parquet"]
ColumnType = Literal["integer", "number", "string", "boolean", "category"]
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
S3Key = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
BucketName = Annotated[
    str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
]


class BuiltinSource(KubeModel):
    """A data set bundled with scikit-learn (no network needed)."""

    name: BuiltinName
    """One of iris, wine, breast_cancer, digits, diabetes."""


class S3Source(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "has(self.key) != has(self.prefix)",
            "exactly one of key or prefix must be set",
        )
    ),
):
    """A CSV or Parquet object, or every such object under a prefix, in S3."""

    bucket: BucketName | None = None
    """Bucket; defaults to the operator's bucket."""
    key: S3Key | None = None
    """One object."""
    prefix: S3Key | None = None
    """Every object under this prefix, read in key order."""
    format: DataFormat | None = None
    """csv or parquet; inferred from the key's suffix when omitted."""
    endpoint: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://")] | None = (
        None
    )
    """S3 endpoint; defaults to the operator's."""
    credentials: S3Credentials | None = None
    """Credentials for another bucket; defaults to the operator's."""

    @model_validator(mode="after")
    def _key_or_prefix(self) -> Self:
        if (self.key is None) == (self.prefix is None):
            raise ValueError("exactly one of key or prefix must be set")
        return self


class UrlSource(KubeModel):
    """A CSV or Parquet file fetched over http(s)."""

    url: Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=r"^https?://\S+$")]
    """The file's http or https URL."""
    format: DataFormat | None = None
    """csv or parquet; inferred from the URL's suffix when omitted."""


class SyntheticSource(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "!has(self.informative) || self.informative <= self.features",
            "informative must not exceed features",
            field_path=".informative",
        ),
    ),
):
    """Seeded make_classification / make_regression data of a given size."""

    task: Literal["classification", "regression"]
    """Which generator to use."""
    rows: Annotated[int, Field(ge=10, le=100_000_000)]
    """Number of rows."""
    features: Annotated[int, Field(ge=1, le=1000)]
    """Number of feature columns."""
    informative: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Number of informative features; defaults to features // 2 (at least 1)."""
    classes: Annotated[int, Field(ge=2, le=100)] | None = None
    """Number of classes (classification only); default 2."""
    noise: Annotated[float, Field(ge=0, le=1000)] | None = None
    """Gaussian noise on the target (regression only)."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Random seed: the same seed gives the same data and the same version."""

    @model_validator(mode="after")
    def _informative(self) -> Self:
        if self.informative is not None and self.informative > self.features:
            raise FieldError("informative", "informative must not exceed features")
        return self


Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class AppendTo(KubeModel):
    """Another Dataset of this namespace whose current version the production rows
    are appended to. Only a name: never a namespace, a key or a version."""

    dataset: ObjectName
    """The Dataset (same namespace) whose current version's rows come first; its
    columns and target must be exactly the production rows' columns and target."""


class ProductionSource(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "!has(self.since) || !has(self.until) || timestamp(self.since) < timestamp(self.until)",
            "since must be before until",
        )
    ),
):
    """What a kubeml.io Deployment in this namespace served: its captured requests
    (spec.capture) joined with the ground truth sent for them, labelled rows only.
    Only this namespace's captures can be read: the Deployment is named, never a
    namespace or a key."""

    deployment: ObjectName
    """The kubeml.io Deployment whose captures and feedback are read."""
    since: Timestamp | None = None
    """Only requests captured at or after this time (RFC 3339)."""
    until: Timestamp | None = None
    """Only requests captured before this time (RFC 3339)."""
    append_to: AppendTo | None = None
    """Append the production rows to another Dataset's current version: its rows
    (train, validation and test together) then the labelled production rows, split,
    validated and profiled anew. A new version of the base Dataset starts a new
    preparation; new production rows arrive with a refresh. status.base records the
    base version used."""

    @model_validator(mode="after")
    def _range(self) -> Self:
        from datetime import datetime

        try:
            since = datetime.fromisoformat(self.since) if self.since else None
            until = datetime.fromisoformat(self.until) if self.until else None
        except ValueError as err:
            raise ValueError(f"since/until must be RFC 3339 timestamps: {err}") from None
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise FieldError(name, f"{name} must name its time zone (Z or +hh:mm)")
        if since is not None and until is not None and since >= until:
            raise FieldError("since", "since must be before until")
        return self


class DataSource(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "[has(self.builtin), has(self.s3), has(self.url), has(self.synthetic), "
            "has(self.production)].filter(x, x).size() == 1",
            "exactly one of builtin, s3, url, synthetic or production must be set",
        )
    ),
):
    """Where the data comes from: exactly one of the five."""

    builtin: BuiltinSource | None = None
    """A scikit-learn bundled data set."""
    s3: S3Source | None = None
    """An object or prefix in S3."""
    url: UrlSource | None = None
    """An http(s) URL."""
    synthetic: SyntheticSource | None = None
    """Generated data."""
    production: ProductionSource | None = None
    """Captured traffic of a Deployment joined with its ground-truth feedback."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        names = ("builtin", "s3", "url", "synthetic", "production")
        chosen = [n for n in names if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "exactly one of builtin, s3, url, synthetic or production must be set"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        return self


class Split(
    KubeModel,
    json_schema_extra=validations(
        cel(
            "(has(self.validation) ? self.validation : 0.0) + (has(self.test) ? self.test : 0.2)"
            " < 1.0",
            "validation + test fractions must sum to less than 1",
        )
    ),
):
    """How rows are divided into train, validation and test partitions."""

    validation: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Fraction of rows for validation."""
    test: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """Fraction of rows for the held-out test set."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Shuffle seed: the same seed gives the same rows in each partition."""
    stratify: bool = False
    """Keep the target's class proportions in every partition."""

    @model_validator(mode="after")
    def _fractions(self) -> Self:
        if self.validation + self.test >= 1.0:
            raise ValueError("validation + test fractions must sum to less than 1")
        return self


class RequiredColumn(KubeModel):
    """A column that must exist, with its type."""

    name: ColumnName
    """Column name."""
    type: ColumnType | None = None
    """integer, number, string, boolean or category; any type when omitted."""


class RangeRule(
    KubeModel,
    json_schema_extra=validations(
        cel("has(self.min) || has(self.max)", "at least one of min or max must be set"),
        cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must not exceed max",
        ),
    ),
):
    """Bounds every non-null value of a numeric column must respect."""

    column: ColumnName
    """Column name."""
    min: float | None = None
    """Smallest allowed value (inclusive)."""
    max: float | None = None
    """Largest allowed value (inclusive)."""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("at least one of min or max must be set")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class CategoryRule(KubeModel):
    """The values a categorical column may take."""

    column: ColumnName
    """Column name."""
    values: Annotated[
        list[Annotated[str, StringConstraints(max_length=256)]],
        Field(min_length=1, max_length=1000),
    ]
    """Allowed values."""


class ValidationRules(KubeModel):
    """Checks the data must pass before a version is published; every failure is reported."""

    min_rows: Annotated[int, Field(ge=1)] | None = None
    """Fewest rows accepted (after feature selection, before the split)."""
    required_columns: Annotated[list[RequiredColumn], Field(max_length=1000)] | None = None
    """Columns that must exist, with their types."""
    ranges: Annotated[list[RangeRule], Field(max_length=1000)] | None = None
    """Numeric bounds per column."""
    max_null_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    """Largest fraction of nulls allowed in any column."""
    allowed_categories: Annotated[list[CategoryRule], Field(max_length=1000)] | None = None
    """Allowed values per categorical column."""


class Cleaning(KubeModel):
    """Rows removed before validation and the split, each rule counted in status.removed."""

    drop_missing_target: bool = False
    """Drop rows whose target is missing (otherwise they fail validation)."""
    drop_duplicates: bool = False
    """Drop rows equal to an earlier row in every kept column (the first one stays)."""


class Refresh(KubeModel):
    """Re-fetch the source on a schedule; a changed content gives a new version."""

    schedule: Schedule
    """Cron schedule, UTC: five fields (minute hour day-of-month month day-of-week) of
    `*`, values, ranges a-b with a <= b and steps /n, comma-separated; names JAN-DEC
    and SUN-SAT; or @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually."""


class DatasetSpec(KubeModel):
    """What data to prepare and the rules it must pass."""

    source: DataSource
    """Where the data comes from."""
    target: ColumnName
    """The column to predict (for builtin data sets: "target")."""
    features: Annotated[list[ColumnName], Field(min_length=1, max_length=10000)] | None = None
    """Feature columns to keep; all other columns when omitted."""
    split: Split = Field(default_factory=Split)
    """Train/validation/test split."""
    cleaning: Cleaning | None = None
    """Rows to drop before the data checks; none when omitted."""
    validation: ValidationRules | None = None
    """Data checks."""
    refresh: Refresh | None = None
    """Optional refresh schedule."""
    resources: ResourceRequirements | None = None
    """Resources of the preparation Job's pod."""
    backoff_limit: Annotated[int, Field(ge=0, le=10)] | None = None
    """Retries of the preparation Job (default 1)."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=604800)] | None = None
    """Deadline of the preparation Job (default 3600)."""

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> Self:
        if self.features is not None and self.target in self.features:
            raise FieldError(
                "features", f"target column {self.target!r} must not also be listed in features"
            )
        return self


DATASET_SPEC_RULES = validations(
    cel(
        "!has(self.features) || !(self.target in self.features)",
        "target column must not also be listed in features",
        field_path=".features",
    )
)


class SplitRows(StatusModel):
    """Rows in each partition."""

    total: Annotated[int, Field(ge=0)] = 0
    train: Annotated[int, Field(ge=0)] = 0
    validation: Annotated[int, Field(ge=0)] = 0
    test: Annotated[int, Field(ge=0)] = 0


class RemovedRows(StatusModel):
    """Rows each cleaning rule removed from the source."""

    missing_target: Annotated[int, Field(ge=0)] | None = None
    duplicates: Annotated[int, Field(ge=0)] | None = None


class ColumnInfo(StatusModel):
    """A column of the prepared data."""

    name: ColumnName
    type: ColumnType
    role: Literal["feature", "target"] = "feature"


class ArtifactRef(StatusModel):
    """An object in S3 and its digest."""

    uri: Annotated[str, StringConstraints(max_length=2048)]
    sha256: Sha256 | None = None


class DatasetVersionRecord(StatusModel):
    """A previously published version."""

    version: Sha256
    uri: Annotated[str, StringConstraints(max_length=2048)]
    created: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    rows: Annotated[int, Field(ge=0)] | None = None


class BaseVersion(StatusModel):
    """The version of another Dataset that a version's rows include."""

    dataset: ObjectName
    """The Dataset (same namespace)."""
    version: Sha256
    """Its version whose rows come first."""


class DatasetStatus(ObservedStatus):
    """The published version and how it came about."""

    version: Sha256 | None = None
    """sha256 over the prepared content: the dataset's version."""
    short_version: Annotated[str, StringConstraints(max_length=12)] | None = None
    """The version's first 12 characters, for display."""
    uri: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """s3:// prefix holding the version's splits, schema, profile and manifest."""
    rows: SplitRows | None = None
    """Rows per partition."""
    removed: RemovedRows | None = None
    """Rows spec.cleaning removed, per rule (only the rules that are on)."""
    base: BaseVersion | None = None
    """The Dataset version the production rows were appended to
    (source.production.appendTo)."""
    columns: Annotated[list[ColumnInfo], Field(max_length=10001)] | None = None
    """Columns with their types."""
    profile: ArtifactRef | None = None
    """Per-feature statistics and quantile bins: the drift baseline."""
    job_name: ObjectName | None = None
    """The current preparation Job."""
    prepared_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})] | None = None
    """When the current version was published."""
    history: Annotated[list[DatasetVersionRecord], Field(max_length=20)] | None = None
    """Earlier versions, newest first (bounded)."""
    stages: Annotated[list[StageTiming], Field(max_length=MAX_STAGES)] | None = None
    """Where the last Job's time went, stage by stage, in order (also the histogram
    kubeml_pipeline_stage_duration_seconds)."""


class Dataset(Resource):
    """A versioned, validated, split and profiled data set."""

    crd = CrdInfo(
        kind="Dataset",
        plural="datasets",
        singular="dataset",
        short_names=("dset", "kmlds"),
        summary_condition="Ready",
        printer_columns=(
            PrinterColumn("Version", ".status.shortVersion", description="Content hash (short)"),
            PrinterColumn("Rows", ".status.rows.total", type="integer", description="Total rows"),
            condition_column("Ready", "Ready"),
            condition_column("Reason", "Ready", "reason"),
            PrinterColumn("Source", ".spec.source", priority=1),
            AGE,
        ),
    )

    kind: Literal["Dataset"] = "Dataset"
    spec: Annotated[DatasetSpec, Field(json_schema_extra=DATASET_SPEC_RULES)]
    """Desired state."""
    status: DatasetStatus | None = None
    """Observed state, written by the operator."""

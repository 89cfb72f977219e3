"""Dataset decisions: which preparation Job should exist, and the next status."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import labels, quantity, schedules
from ..api import Dataset, ManifestError, parse_manifest
from ..conditions import find, remove_condition
from ..settings import Settings
from ..storage import layout
from . import jobs, pods, stages
from .outcome import Create, Outcome, Ref
from .results import RETRY_SECONDS, ResultRead
from .step import Step

READY = "Ready"
VALIDATED = "Validated"
SCHEDULED = "RefreshScheduled"
CONTAINER = "prepare"
HISTORY_LIMIT = 10
DEFAULT_BACKOFF_LIMIT = 1
DEFAULT_DEADLINE = 3600
# Ready reasons that mean the current preparation has no outcome yet; any other
# reason is its final outcome, after which its Job is never created again.
IN_PROGRESS = frozenset({"Preparing", "Refreshing", "Pending", "StorageUnavailable"})


def spec_digest(spec: dict[str, Any], tick: str = "", base: str = "") -> str:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    # Without a base the digest is what it always was: no Job is re-run on upgrade.
    extra = f"|{base}" if base else ""
    return hashlib.sha256(f"{canonical}|{tick}{extra}".encode()).hexdigest()


def job_name(name: str, spec: dict[str, Any], tick: str = "", base: str = "") -> str:
    """One preparation per spec, occasion and (source.production.appendTo) base
    version: a new version of the base Dataset is a new preparation."""
    # The Job controller copies the Job name into pod labels (<= 63 chars).
    return f"{name[:44]}-prep-{spec_digest(spec, tick, base)[:8]}"


def base_name(body: Mapping[str, Any]) -> str | None:
    """The Dataset whose rows a Dataset's production rows are appended to, if any."""
    production = ((body.get("spec") or {}).get("source") or {}).get("production") or {}
    name = (production.get("appendTo") or {}).get("dataset")
    return str(name) if name else None


@dataclass(frozen=True)
class Base:
    """The base Dataset (source.production.appendTo) as resolved now: its current
    version, or (version None) why the preparation has to wait or cannot be."""

    name: str
    version: str | None
    reason: str = ""
    message: str = ""


def resolve_base(body: Mapping[str, Any], base: Mapping[str, Any] | None) -> Base | None:
    """None when the Dataset appends to nothing; ``base`` is the named Dataset of the
    same namespace as observed (None if absent)."""
    name = base_name(body)
    if name is None:
        return None
    me = body["metadata"]["name"]
    where = f"dataset {name} (source.production.appendTo)"
    if name == me:
        return Base(name, None, "InvalidSpec", f"dataset {me} cannot append to itself")
    if base is None:
        return Base(name, None, "BaseDatasetNotFound", f"{where} does not exist")
    if base_name(base) == me:
        return Base(name, None, "InvalidSpec", f"datasets {me} and {name} append to each other")
    status = base.get("status") or {}
    ready = find(status.get("conditions"), READY)
    current = status.get("version")
    if ready is None or ready.get("status") != "True" or not current:
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not prepared yet"
        return Base(name, None, "BaseDatasetNotReady", f"{where} is not ready ({why})")
    return Base(name, str(current))


def result_key(namespace: str, name: str, job: str) -> str:
    return layout.dataset_result_key(namespace, name, job)


def build_job(
    body: dict[str, Any],
    model: Dataset,
    name: str,
    settings: Settings,
    tick: str = "",
    base: Base | None = None,
) -> dict[str, Any]:
    meta = body["metadata"]
    spec = model.spec
    res = pods.resources(spec.resources)
    limit = pods.memory_limit(res)
    wire_spec = body["spec"]
    payload: dict[str, Any] = {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "generation": meta.get("generation"),
        "spec": wire_spec,
    }
    if base is not None and base.version:
        # The namespace's own content address: the Job reads nothing the spec names.
        payload["base"] = {
            "name": base.name,
            "version": base.version,
            "uri": layout.dataset_uri(settings.bucket, meta["namespace"], base.version),
        }
    env: list[dict[str, Any]] = [
        {"name": "KUBEML_DATASET", "value": json.dumps(payload, sort_keys=True)},
        {"name": "KUBEML_RESULT_KEY", "value": result_key(meta["namespace"], meta["name"], name)},
        {"name": "TMPDIR", "value": "/tmp"},
        *pods.s3_env(settings),
    ]
    if limit is not None:
        env.append(
            {"name": "KUBEML_MEMORY_LIMIT_BYTES", "value": str(quantity.memory_bytes(limit))}
        )
    creds = spec.source.s3.credentials if spec.source.s3 else None
    if creds is not None:
        env += [
            {
                "name": "KUBEML_SOURCE_AWS_ACCESS_KEY_ID",
                "valueFrom": {
                    "secretKeyRef": {"name": creds.secret_name, "key": creds.access_key_id_key}
                },
            },
            {
                "name": "KUBEML_SOURCE_AWS_SECRET_ACCESS_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": creds.secret_name, "key": creds.secret_access_key_key}
                },
            },
        ]
    job_labels = {
        labels.MANAGED_BY: labels.MANAGER,
        labels.PART_OF: "kubeml",
        labels.COMPONENT: "prepare",
        labels.DATASET: meta["name"],
        labels.OWNER_KIND: "Dataset",
        labels.OWNER_NAME: meta["name"],
    }
    return pods.runtime_job(
        body,
        name=name,
        labels=job_labels,
        container=CONTAINER,
        command=["kubeml", "prepare"],
        env=env,
        resources=res,
        backoff_limit=spec.backoff_limit
        if spec.backoff_limit is not None
        else DEFAULT_BACKOFF_LIMIT,
        deadline=spec.active_deadline_seconds or DEFAULT_DEADLINE,
        settings=settings,
    )


def _short(version: str | None) -> str | None:
    return version[:12] if version else None


@dataclass(frozen=True)
class Target:
    """Which preparation should exist now: the spec's, at the latest occasion asked
    for (schedule or on-demand request)."""

    job_name: str
    tick: str
    next_in: float | None = None  # seconds until the schedule's next occasion
    schedule_error: str = ""
    schedule_never: str = ""  # valid cron that never fires (e.g. "0 0 30 2 *")
    base: Base | None = None  # source.production.appendTo, resolved


def target(body: Mapping[str, Any], now: datetime, base: Base | None = None) -> Target:
    meta = body["metadata"]
    schedule = (body["spec"].get("refresh") or {}).get("schedule")
    due = schedules.due(schedule, meta.get("creationTimestamp") or "", now)
    requested = schedules.requested_tick(
        (meta.get("annotations") or {}).get(labels.REFRESH_REQUESTED), now
    )
    tick = max(due.tick, requested)
    name = job_name(meta["name"], body["spec"], tick, (base.version or "") if base else "")
    return Target(name, tick, due.next_in, due.error, due.never, base)


def result_needed(body: Mapping[str, Any], job: Mapping[str, Any] | None, t: Target) -> str | None:
    """The result manifest to read: only once the target Job has finished and its
    outcome is not yet recorded."""
    state = jobs.observe(dict(job) if job is not None else None)
    if state is None or state.active or _finished_before(body, t):
        return None
    meta = body["metadata"]
    return result_key(meta["namespace"], meta["name"], t.job_name)


def _finished_before(body: Mapping[str, Any], t: Target) -> bool:
    status = body.get("status") or {}
    ready = find(status.get("conditions"), READY)
    return (
        status.get("jobName") == t.job_name
        and ready is not None
        and ready.get("observedGeneration") == body["metadata"].get("generation")
        and ready.get("reason") not in IN_PROGRESS
    )


def decide(
    body: Mapping[str, Any],
    t: Target,
    job: Mapping[str, Any] | None,
    result: ResultRead | None,
    settings: Settings,
    *,
    now: str,
    other_jobs: tuple[str, ...] = (),
) -> Outcome:
    """The next step for a Dataset.

    ``job`` is the target Job as observed (None if absent); ``result`` its manifest
    as read once the Job finished (see ``result_needed``); ``other_jobs`` names
    every other Job of this Dataset.
    """
    meta = body["metadata"]
    step = Step.begin(body, now)
    _schedule_condition(step, t)
    try:
        # Status is ours and may be older than this code: judge only the spec.
        model = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(model, Dataset)
    except ManifestError as err:
        step.cond(READY, "False", "InvalidSpec", f"dataset {meta['name']}: {err}")
        return step.out
    if t.base is not None and t.base.version is None:
        _waiting_for_base(step, t.base)
        return step.out
    if _finished_before(body, t):
        # Terminal states are sticky: a finished preparation is never re-run nor
        # re-published, whether or not its Job still exists.
        return step.out
    state = jobs.observe(dict(job) if job is not None else None)
    step.status["jobName"] = t.job_name
    if state is None or state.active:
        _preparing(step, model, t, state, settings)
        return step.out
    if result is not None and result.unreadable:
        _unreadable(step, t, result)
        return step.out
    # Older Jobs of this Dataset go once the current one has an outcome.
    step.out.delete += [
        Ref("batch/v1", "Job", meta["namespace"], j) for j in other_jobs if j != t.job_name
    ]
    doc = result.doc if result is not None else None
    if doc is not None and doc.get("ok"):
        _published(step, doc)
    elif doc is not None:
        _failed_with_result(step, doc)
    else:
        _failed_without_result(step, model, state, result)
    _record_stages(step, doc, job)
    return step.out


def _record_stages(
    step: Step, doc: Mapping[str, Any] | None, job: Mapping[str, Any] | None
) -> None:
    """The finished Job's stages (none without a result), and the outcome to count."""
    recorded = stages.from_result("Dataset", doc, job) if doc is not None else []
    if recorded:
        step.status["stages"] = recorded
    else:
        step.status.pop("stages", None)
    created = ((job or {}).get("metadata") or {}).get("creationTimestamp")
    succeeded = doc is not None and bool(doc.get("ok"))
    step.out.finished.append(
        stages.finished("Dataset", succeeded, started=created, now=step.now, stages=recorded)
    )


def _waiting_for_base(step: Step, base: Base) -> None:
    """No preparation without the base Dataset's version. A version already published
    for this spec stays Ready meanwhile (a base being refreshed is no reason to stop
    training on it); the next base version starts the next preparation."""
    name, gen = step.body["metadata"]["name"], step.body["metadata"].get("generation")
    ready = find(step.status.get("conditions"), READY)
    published = (
        base.reason != "InvalidSpec"
        and bool(step.status.get("version"))
        and ready is not None
        and ready.get("status") == "True"
        and ready.get("observedGeneration") == gen
    )
    if not published:
        step.cond(READY, "False", base.reason, f"dataset {name}: {base.message}")


def _schedule_condition(step: Step, t: Target) -> None:
    """An unusable schedule (admitted by an older CRD, or one that never fires) is
    shown, not silently ignored; a valid one makes the reconcile look again at its
    next occasion."""
    name = step.body["metadata"]["name"]
    if t.schedule_error:
        step.cond(SCHEDULED, "False", "InvalidSchedule", f"dataset {name}: {t.schedule_error}")
    elif t.schedule_never:
        step.cond(SCHEDULED, "False", "NeverDue", f"dataset {name}: {t.schedule_never}")
    else:
        step.status["conditions"] = remove_condition(step.status.get("conditions"), SCHEDULED)
        step.out.look_again(t.next_in)


def _preparing(
    step: Step, model: Dataset, t: Target, state: jobs.JobState | None, settings: Settings
) -> None:
    status, gen = step.status, step.body["metadata"].get("generation")
    ready = find(status.get("conditions"), READY)
    if state is None:
        step.out.create.append(
            Create(build_job(dict(step.body), model, t.job_name, settings, t.tick, t.base))
        )
    # The same words whether the Job was just created or seen running: its own events
    # then change nothing, and cost no status write.
    verb = "running"
    # A new base version (source.production.appendTo) is a refresh too: the
    # published version stays usable while the next one is prepared.
    rebased = t.base is not None and (status.get("base") or {}).get("version") not in (
        None,
        t.base.version,
    )
    refreshing = bool(
        (t.tick or rebased)
        and status.get("version")
        and ready is not None
        and ready.get("observedGeneration") == gen
        and ready.get("status") == "True"
    )
    if refreshing:
        version = _short(status.get("version"))
        step.cond(
            READY,
            "True",
            "Refreshing",
            f"version {version} is available; refresh job {t.job_name} {verb}",
        )
    else:
        step.cond(READY, "False", "Preparing", f"preparation job {t.job_name} {verb}")


def _unreadable(step: Step, t: Target, result: ResultRead) -> None:
    """The Job finished but its result cannot be read right now: say so and look again;
    the result is still there when the store comes back."""
    message = f"job {t.job_name} finished; its result {result.describe()}; retrying"
    ready = find(step.status.get("conditions"), READY)
    available = (
        bool(step.status.get("version")) and ready is not None and ready.get("status") == "True"
    )
    step.cond(
        READY,
        "True" if available else "False",
        "StorageUnavailable",
        f"dataset {step.body['metadata']['name']}: {message}",
    )
    step.out.look_again(RETRY_SECONDS)


def _published(step: Step, doc: Mapping[str, Any]) -> None:
    old_version = (step.body.get("status") or {}).get("version")
    _publish(step.status, dict(doc), step.now)
    reused = step.status.get("version") == old_version
    rows = doc.get("rows", {})
    step.cond(VALIDATED, "True", "Passed", "all validation rules passed")
    step.cond(
        READY,
        "True",
        "Unchanged" if reused else "Prepared",
        f"version {_short(doc['version'])}: {rows.get('total', 0)} rows "
        f"(train {rows.get('train', 0)}, validation {rows.get('validation', 0)}, "
        f"test {rows.get('test', 0)})"
        + _base_note(doc.get("base") or {})
        + _removed_note(doc.get("removed") or {}),
    )
    if not reused:
        step.event("Normal", "Prepared", f"published version {_short(doc['version'])}")


def _base_note(base: Mapping[str, Any]) -> str:
    if not base.get("dataset") or not base.get("version"):
        return ""
    return f"; production rows appended to dataset {base['dataset']} {_short(base['version'])}"


def _removed_note(removed: Mapping[str, int]) -> str:
    # In the order the rules run, whatever order the result manifest kept.
    words = {"missingTarget": "without a target", "duplicates": "duplicate"}
    parts = [f"{removed[rule]} {word}" for rule, word in words.items() if removed.get(rule)]
    return f"; removed {', '.join(parts)}" if parts else ""


def _failed_with_result(step: Step, doc: Mapping[str, Any]) -> None:
    reason = str(doc.get("reason") or "PreparationFailed")
    message = str(doc.get("message") or "preparation failed")
    failures = doc.get("failures") or []
    if failures:
        message = f"{message}: " + "; ".join(str(f) for f in failures)
    if reason == "ValidationFailed" or failures:
        step.cond(VALIDATED, "False", reason, message)
    step.cond(READY, "False", reason, f"dataset {step.body['metadata']['name']}: {message}")
    step.event("Warning", reason, message)


def _failed_without_result(
    step: Step, model: Dataset, state: jobs.JobState, result: ResultRead | None
) -> None:
    res = pods.resources(model.spec.resources)
    reason, message = jobs.failure_reason(
        state,
        memory_limit=pods.memory_limit(res),
        deadline=model.spec.active_deadline_seconds or DEFAULT_DEADLINE,
    )
    missing = result.describe() if result is not None else "missing"
    if state.succeeded:
        reason = "ResultMissing"
        message = f"job {state.name} succeeded but its result manifest {missing}"
    else:
        message = f"{message} (no result manifest: {missing})"
    step.cond(READY, "False", reason, f"dataset {step.body['metadata']['name']}: {message}")
    step.event("Warning", reason, message)


def _publish(status: dict[str, Any], result: dict[str, Any], now: str) -> None:
    previous = status.get("version")
    version = result["version"]
    if previous and previous != version:
        record = {
            "version": previous,
            "uri": status.get("uri", ""),
            "created": status.get("preparedTime") or now,
        }
        if status.get("rows"):
            record["rows"] = status["rows"].get("total", 0)
        history = [record, *(status.get("history") or [])]
        status["history"] = [h for h in history if h["version"] != version][:HISTORY_LIMIT]
    if previous != version or not status.get("preparedTime"):
        status["preparedTime"] = now
    status["version"] = version
    status["shortVersion"] = version[:12]
    status["uri"] = result["uri"]
    status["rows"] = result["rows"]
    if result.get("removed"):
        status["removed"] = result["removed"]
    else:
        status.pop("removed", None)
    if result.get("base"):
        status["base"] = result["base"]
    else:
        status.pop("base", None)
    status["columns"] = result["columns"]
    status["profile"] = result["profile"]

"""Dataset decisions: which preparation Job should exist, and the next status."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .. import labels
from ..api import Dataset, ManifestError, parse_manifest
from ..conditions import Status, find, set_condition
from ..settings import Settings
from . import jobs, pods

READY = "Ready"
VALIDATED = "Validated"
CONTAINER = "prepare"
HISTORY_LIMIT = 10
DEFAULT_BACKOFF_LIMIT = 1
DEFAULT_DEADLINE = 3600
# Reasons after which the Job for the same spec is never created again.
IN_PROGRESS = frozenset({"Preparing", "Refreshing", "Pending"})


@dataclass
class Decision:
    """What the controller should do for one Dataset."""

    status: dict[str, Any]
    job: dict[str, Any] | None = None  # apply this Job (create if absent)
    stale_jobs: list[str] = field(default_factory=list)  # delete these Jobs
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def spec_digest(spec: dict[str, Any], tick: str = "") -> str:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{canonical}|{tick}".encode()).hexdigest()


def job_name(name: str, spec: dict[str, Any], tick: str = "") -> str:
    # The Job controller copies the Job name into pod labels (<= 63 chars).
    return f"{name[:44]}-prep-{spec_digest(spec, tick)[:8]}"


def result_key(namespace: str, name: str, job: str) -> str:
    return f"results/datasets/{namespace}/{name}/{job}.json"


def build_job(
    body: dict[str, Any], model: Dataset, name: str, settings: Settings, tick: str = ""
) -> dict[str, Any]:
    meta = body["metadata"]
    spec = model.spec
    res = pods.resources(spec.resources)
    limit = pods.memory_limit(res)
    wire_spec = body["spec"]
    payload = {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "generation": meta.get("generation"),
        "spec": wire_spec,
    }
    env: list[dict[str, Any]] = [
        {"name": "KUBEML_DATASET", "value": json.dumps(payload, sort_keys=True)},
        {"name": "KUBEML_RESULT_KEY", "value": result_key(meta["namespace"], meta["name"], name)},
        {"name": "TMPDIR", "value": "/tmp"},
        *pods.s3_env(settings),
    ]
    if limit is not None:
        env.append({"name": "KUBEML_MEMORY_LIMIT_BYTES", "value": str(pods.quantity_bytes(limit))})
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


def decide(
    body: dict[str, Any],
    job: dict[str, Any] | None,
    result: dict[str, Any] | None,
    settings: Settings,
    *,
    now: str,
    tick: str = "",
    result_error: str | None = None,
    other_jobs: tuple[str, ...] = (),
) -> Decision:
    """The next step for a Dataset.

    ``job`` is the desired Job as observed (None if absent); ``result`` the
    manifest it wrote to S3, which the controller reads once the Job has
    finished (``result_error`` says why it could not be read).
    ``other_jobs`` names every other Job of this Dataset.
    """
    meta = body["metadata"]
    gen = meta.get("generation")
    status: dict[str, Any] = dict(body.get("status") or {})
    status["observedGeneration"] = gen
    conds = status.get("conditions") or []

    def cond(type_: str, state: Status, reason: str, message: str) -> None:
        nonlocal conds
        conds = set_condition(
            conds,
            type_,
            state,
            reason,
            message,
            observed_generation=gen,
            now=now,
        )

    try:
        # Status is ours and may be older than this code: judge only the spec.
        model = parse_manifest({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        assert isinstance(model, Dataset)
    except ManifestError as err:
        cond(READY, "False", "InvalidSpec", f"dataset {meta['name']}: {err}")
        status["conditions"] = conds
        return Decision(status=status)

    name = job_name(meta["name"], body["spec"], tick)
    ready = find(conds, READY)
    same_target = status.get("jobName") == name
    finished_before = (
        same_target
        and ready is not None
        and ready.get("observedGeneration") == gen
        and ready.get("reason") not in IN_PROGRESS
    )
    state = jobs.observe(job)
    decision = Decision(status=status)
    # Older Jobs of this Dataset go once the current one has an outcome.
    decision.stale_jobs = [j for j in other_jobs if j != name]

    if finished_before:
        # Terminal states are sticky: a finished preparation is never re-run
        # nor re-published, whether or not its Job still exists.
        status["conditions"] = conds
        return decision

    refreshing = bool(
        tick
        and status.get("version")
        and ready is not None
        and ready.get("observedGeneration") == gen
        and ready.get("status") == "True"
    )
    if state is None or state.active:
        decision.job = build_job(body, model, name, settings, tick) if state is None else None
        status["jobName"] = name
        verb = "creating" if state is None else "running"
        if refreshing:
            cond(
                READY,
                "True",
                "Refreshing",
                f"version {_short(status.get('version'))} is available; refresh job {name} {verb}",
            )
        else:
            cond(READY, "False", "Preparing", f"preparation job {name} {verb}")
        decision.stale_jobs = []
        status["conditions"] = conds
        return decision

    status["jobName"] = name
    if result is not None and result.get("ok"):
        _publish(status, result, now)
        reused = status.get("version") == (body.get("status") or {}).get("version")
        reason = "Unchanged" if reused else "Prepared"
        rows = result.get("rows", {})
        cond(VALIDATED, "True", "Passed", "all validation rules passed")
        cond(
            READY,
            "True",
            reason,
            f"version {_short(result['version'])}: {rows.get('total', 0)} rows "
            f"(train {rows.get('train', 0)}, validation {rows.get('validation', 0)}, "
            f"test {rows.get('test', 0)})",
        )
        if not reused:
            decision.events.append(
                ("Normal", "Prepared", f"published version {_short(result['version'])}")
            )
    elif result is not None:
        reason = str(result.get("reason") or "PreparationFailed")
        message = str(result.get("message") or "preparation failed")
        failures = result.get("failures") or []
        if failures:
            message = f"{message}: " + "; ".join(str(f) for f in failures)
        if reason == "ValidationFailed" or failures:
            cond(VALIDATED, "False", reason, message)
        cond(READY, "False", reason, f"dataset {meta['name']}: {message}")
        decision.events.append(("Warning", reason, message[:1024]))
    else:
        res = pods.resources(model.spec.resources)
        reason, message = jobs.failure_reason(
            state,
            memory_limit=pods.memory_limit(res),
            deadline=model.spec.active_deadline_seconds or DEFAULT_DEADLINE,
        )
        if state.succeeded:
            reason, message = (
                "ResultMissing",
                (
                    f"job {name} succeeded but its result manifest could not be read: "
                    f"{result_error or 'missing'}"
                ),
            )
        elif result_error:
            message = f"{message} (no result manifest: {result_error})"
        cond(READY, "False", reason, f"dataset {meta['name']}: {message}")
        decision.events.append(("Warning", reason, message[:1024]))
    status["conditions"] = conds
    return decision


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
    status["columns"] = result["columns"]
    status["profile"] = result["profile"]

"""`kubeml prepare`: the program the Dataset preparation Job runs.

Input: $KUBEML_DATASET (namespace, name, generation, spec), $KUBEML_RESULT_KEY, the S3
settings and credentials of kubeml.storage.S3Settings.from_env. Output: the version's
files under namespaces/<namespace>/datasets/<version>/ and a result manifest at
$KUBEML_RESULT_KEY that the operator turns into status. Exit codes: 0 success, 2 bad
input (the Job's podFailurePolicy fails it at once), 3 transient (the Job retries).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.errors import DataError
from ..data.files import content_version, write_prepared
from ..data.pipeline import prepare_frame
from ..storage import ArtifactStore, S3Settings, StorageError
from . import stages
from .fetch import Loaded, load_source
from .prepare_request import PrepareRequest, memory_limit, read_request, result_key
from .publish import MANIFEST, Published, publish
from .stages import Stopwatch

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 3

log = logging.getLogger("kubeml.prepare")


@dataclass
class Outcome:
    """The result manifest and exit code of one preparation, and where time went."""

    result: dict[str, Any]
    exit_code: int
    timings: dict[str, float] = field(default_factory=dict)
    uploaded_bytes: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.result.get("ok"))


def failure(
    reason: str, message: str, failures: list[str] | None = None, *, transient: bool = False
) -> dict[str, Any]:
    return {
        "ok": False,
        "reason": reason,
        "message": message,
        "failures": list(failures or []),
        "transient": transient,
    }


def _failed(err: DataError | StorageError) -> Outcome:
    failures = err.failures if isinstance(err, DataError) else []
    transient = bool(err.transient)
    return Outcome(
        failure(err.reason, err.message, failures, transient=transient),
        EXIT_TRANSIENT if transient else EXIT_BAD_INPUT,
    )


def success(
    published: Published,
    store: ArtifactStore,
    rows: dict[str, int],
    columns: list[dict[str, str]],
    removed: dict[str, int] | None = None,
) -> dict[str, Any]:
    files = {
        name.split(".", 1)[0]: {"uri": info.uri, "sha256": info.sha256, "size": info.size}
        for name, info in sorted(published.files.items())
    }
    profile = files["profile"]
    result: dict[str, Any] = {
        "ok": True,
        "version": published.version,
        "uri": store.uri(published.prefix),
        "rows": rows,
        "columns": columns,
        "profile": {"uri": profile["uri"], "sha256": profile["sha256"]},
        "files": files,
        "manifest": {"uri": published.manifest.uri, "sha256": published.manifest.sha256},
        "reused": published.reused,
    }
    if removed:
        result["removed"] = removed
    return result


def prepare_dataset(
    request: PrepareRequest, store: ArtifactStore, env: Mapping[str, str]
) -> Outcome:
    """Load, validate, split, profile, write and publish; expected failures become an
    Outcome (never an exception)."""
    spec = request.spec
    watch = Stopwatch()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = watch.lap(name)

    try:
        loaded = load_source(
            spec.source,
            env,
            memory_limit=memory_limit(env),
            namespace=request.namespace,
            target=spec.target,
        )
        if request.base is not None:
            loaded = with_base(loaded, request, store)
        lap("fetch")
        prepared = prepare_frame(loaded.frame, spec, source=loaded.label)
        del loaded  # the splits hold copies; let the source table go
        lap("validate")  # clean, validate, split and profile
        rows = prepared.splits.rows()
        columns = [c.to_wire() for c in prepared.columns]
        removed = prepared.removed
        with tempfile.TemporaryDirectory(prefix="kubeml-prepare-") as tmp:
            files = write_prepared(prepared, Path(tmp))
            del prepared
            version = content_version(files)
            lap("write")
            published = publish(
                store, request.namespace, version, files, {"rows": rows, "columns": columns}
            )
            lap("upload")
    except (DataError, StorageError) as err:
        outcome = _failed(err)
        outcome.timings = timings
        return outcome
    except MemoryError:
        limit = memory_limit(env)
        return Outcome(
            failure(
                "SourceTooLarge",
                "ran out of memory preparing the data"
                + (f" (memory limit {limit} bytes)" if limit else "")
                + "; raise spec.resources.limits.memory",
            ),
            EXIT_BAD_INPUT,
            timings,
        )
    result = success(published, store, rows, columns, removed)
    if request.base is not None:
        result["base"] = {"dataset": request.base.name, "version": request.base.version}
    return Outcome(result, EXIT_OK, timings, published.uploaded_bytes)


def with_base(loaded: Loaded, request: PrepareRequest, store: ArtifactStore) -> Loaded:
    """The base Dataset's version (every split, verified against its manifest) with
    the production rows appended (source.production.appendTo)."""
    import pandas as pd

    from ..data import production
    from .training.dataset import load_dataset
    from .training.errors import TrainError

    base = request.base
    assert base is not None
    try:
        ds = load_dataset(store, name=base.name, version=base.version, uri=base.uri)
    except TrainError as err:
        raise DataError(err.reason, err.message, transient=err.transient) from err
    columns = [name for name, _ in ds.features] + [ds.target]
    frame = pd.concat([ds.train, ds.validation, ds.test], ignore_index=True)[columns]
    base_label = f"dataset {base.name} (version {base.version[:12]})"
    merged = production.append(
        frame,
        loaded.frame,
        target=request.spec.target,
        base_target=ds.target,
        label=f"the production rows of {request.display}",
        base_label=base_label,
    )
    return Loaded(merged, f"{loaded.label} appended to {base_label}", loaded.size)


def _write_result(store: ArtifactStore, key: str, outcome: Outcome) -> int:
    try:
        store.put_json(key, outcome.result)
    except StorageError as err:
        log.error("cannot write the result manifest: %s: %s", err.reason, err.message)
        # A result the operator cannot read is worth a retry only if S3 may come back.
        return EXIT_TRANSIENT if err.transient else max(outcome.exit_code, EXIT_BAD_INPUT)
    return outcome.exit_code


def _report(request: PrepareRequest | None, outcome: Outcome) -> None:
    what = request.display if request else "dataset"
    r = outcome.result
    if outcome.ok:
        rows = r["rows"]
        log.info(
            "%s: version %s (%d rows: train %d, validation %d, test %d) at %s%s",
            what,
            r["version"][:12],
            rows["total"],
            rows["train"],
            rows["validation"],
            rows["test"],
            r["uri"],
            " (already published: nothing uploaded)" if r["reused"] else "",
        )
        return
    log.error("%s: %s: %s", what, r["reason"], r["message"])
    for item in r["failures"]:
        log.error("  - %s", item)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeml prepare",
        description="Prepare a Dataset version (run by the operator's preparation Job; "
        "input from $KUBEML_DATASET, result to $KUBEML_RESULT_KEY).",
    )
    parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="kubeml prepare: %(levelname)s %(message)s"
    )
    env = dict(os.environ)
    key = result_key(env)
    if key is None:
        log.error("KUBEML_RESULT_KEY is not set: nowhere to report the result")
        return EXIT_BAD_INPUT
    try:
        store = ArtifactStore(S3Settings.from_env(env), env=env)
    except StorageError as err:
        log.error("artifact store: %s: %s", err.reason, err.message)
        return EXIT_TRANSIENT if err.transient else EXIT_BAD_INPUT
    request: PrepareRequest | None = None
    try:
        request = read_request(env)
        outcome = prepare_dataset(request, store, env)
    except DataError as err:
        outcome = _failed(err)
    except Exception as err:  # a bug: report it, and let the Job retry
        log.exception("unexpected failure")
        outcome = Outcome(failure("InternalError", f"{type(err).__name__}: {err}"), EXIT_INTERNAL)
    _report(request, outcome)
    outcome.result = stages.report(outcome.result, outcome.timings.items())
    return _write_result(store, key, outcome)


__all__ = ["MANIFEST", "Outcome", "main", "prepare_dataset"]

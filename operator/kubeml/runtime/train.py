"""`kubeml train`: the program the TrainingRun's Job runs.

Input: $KUBEML_TRAININGRUN (namespace, name, generation, spec, dataset version,
champion), $KUBEML_RESULT_KEY, $KUBEML_CPU_LIMIT and the S3 settings of
kubeml.storage.S3Settings.from_env. Output: the model artifact at
namespaces/<namespace>/models/<model>/<sha256>.skops, the search's trial table beside
the result (``<result key without .json>/trials.parquet``) and a result manifest at
$KUBEML_RESULT_KEY.

A distributed search (``search.parallelism`` > 1) runs in two Jobs: an Indexed Job whose
pods run ``kubeml train --shard`` (shard $JOB_COMPLETION_INDEX of parallelism), each
writing its candidates' rows to ``.../shards/<index>.parquet``; then the usual Job, which
reads every shard instead of scoring, picks the winner and continues as a one-pod run.
Exit codes: 0 success, 2 bad input (the failure manifest is written first; the Job's
podFailurePolicy fails at once), 3 transient (S3 unreachable: the Job retries),
1 an unexpected error (reported too, retried by the Job's backoffLimit).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.estimators import ESTIMATORS
from ..storage import ArtifactStore, KeyNotFound, S3Settings, StorageError, layout
from . import stages
from .training import trials as trial_table
from .training.champion import champion_metrics
from .training.dataset import LoadedDataset, load_dataset
from .training.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT, TrainError
from .training.evaluate import evaluate
from .training.features import FeatureColumn, feature_columns, select_features
from .training.fit import Fitted, SearchPlan, TrialSource, fit, metric_names, plan_search
from .training.report import model_report
from .training.request import (
    TrainRequest,
    cpu_limit,
    read_request,
    result_key,
    shard_index,
    trials_prefix,
)
from .training.signature import build_signature
from .training.target import check_target
from .training.upload import environment, upload_model

log = logging.getLogger("kubeml.train")


@dataclass
class Outcome:
    result: dict[str, Any]
    exit_code: int

    @property
    def ok(self) -> bool:
        return bool(self.result.get("ok"))


def failure(reason: str, message: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "message": message}


def _failed(err: TrainError | StorageError) -> Outcome:
    code = EXIT_TRANSIENT if err.transient else EXIT_BAD_INPUT
    return Outcome(failure(err.reason, err.message), code)


def train(
    request: TrainRequest, store: ArtifactStore, env: Mapping[str, str], *, shard: bool = False
) -> Outcome:
    """Load, check, fit, evaluate, compare and upload (or, for a search shard, score
    this pod's candidates); expected failures become an Outcome, never an exception."""
    try:
        if shard:
            return Outcome(_shard(request, store, env), EXIT_OK)
        return Outcome(_train(request, store, env), EXIT_OK)
    except (TrainError, StorageError) as err:
        return _failed(err)
    except MemoryError:
        return Outcome(
            failure(
                "OutOfMemory",
                f"{request.display}: ran out of memory training {request.spec.estimator.name} "
                f"on dataset {request.dataset.name}; raise spec.resources.limits.memory",
            ),
            EXIT_BAD_INPUT,
        )


@dataclass
class _Loaded:
    data: LoadedDataset
    features: list[FeatureColumn]
    columns: list[str]
    seconds: float


def _load(request: TrainRequest, store: ArtifactStore) -> _Loaded:
    name = request.spec.estimator.name
    task = ESTIMATORS[name].task
    started = time.perf_counter()
    data = load_dataset(
        store,
        name=request.dataset.name,
        version=request.dataset.version,
        uri=request.dataset.uri,
    )
    check_target(
        task,
        data.train[data.target],
        column=data.target,
        dataset=f"{data.name} (version {data.version[:12]})",
        estimator=name,
    )
    features = feature_columns(data.features, [data.train, data.validation, data.test])
    chosen = request.spec.preprocessing.features if request.spec.preprocessing else None
    try:
        features = select_features(features, chosen)
    except KeyError as err:
        raise TrainError(
            "FeatureNotFound",
            f"{request.display}: spec.preprocessing.features {err.args[0]} are not features of "
            f"dataset {data.name} (version {data.version[:12]}); its features: "
            f"{[f.name for f in features]}",
        ) from err
    return _Loaded(data, features, [f.name for f in features], time.perf_counter() - started)


def _shard(request: TrainRequest, store: ArtifactStore, env: Mapping[str, str]) -> dict[str, Any]:
    """Score this pod's shard of the search and write its rows; the final Job decides."""
    spec = request.spec
    if spec.search is None:
        raise TrainError("InvalidRequest", f"{request.display}: --shard needs spec.search")
    count = spec.search.parallelism
    index = shard_index(env, count)
    startup = stages.process_age()
    loaded = _load(request, store)
    data = loaded.data
    plan = plan_search(spec, loaded.features, data.train[loaded.columns], data.train[data.target])
    mine = trial_table.shard_indices(len(plan.candidates), index, count)
    cpu = cpu_limit(env)
    log.info(
        "%s: search shard %d of %d: %d of %d candidates x %d folds with %d core(s)",
        request.display,
        index,
        count,
        len(mine),
        len(plan.candidates),
        len(plan.splits),
        cpu,
    )
    started = time.perf_counter()
    rows = plan.evaluate(mine, shard=index, cpu=cpu)
    score_seconds = time.perf_counter() - started
    key = layout.run_shard_key(trials_prefix(env), index)
    store.put_bytes(key, trial_table.to_parquet(rows, plan.natural), content_type=PARQUET)
    report = {
        "ok": True,
        "shard": index,
        "trials": len(rows),
        "uri": store.uri(key),
        "cpu": cpu,
        # What a pod costs besides scoring (download, verification, parsing), beside
        # the rows: the numbers a user weighs against adding pods.
        "timings": {
            "startupSeconds": round(startup, 3) if startup is not None else None,
            "loadSeconds": round(loaded.seconds, 3),
            "scoreSeconds": round(score_seconds, 3),
        },
    }
    store.put_json(key.removesuffix(".parquet") + ".json", report)
    return report


PARQUET = "application/vnd.apache.parquet"


def _read_shards(
    request: TrainRequest, store: ArtifactStore, env: Mapping[str, str]
) -> TrialSource:
    """The trials the search Job's pods wrote, each shard checked against the candidates
    this pod computes from the same spec (a stale or foreign shard is refused)."""
    assert request.spec.search is not None
    count = request.spec.search.parallelism
    prefix = trials_prefix(env)

    def read(plan: SearchPlan) -> list[trial_table.Trial]:
        found: list[trial_table.Trial] = []
        for index in range(count):
            key = layout.run_shard_key(prefix, index)
            try:
                rows = trial_table.from_parquet(store.get_bytes(key), plan.natural)
            except KeyNotFound as err:
                raise TrainError(
                    "TrialsMissing",
                    f"{request.display}: search shard {index} of {count} wrote no trials: "
                    f"{store.uri(key)} not found",
                ) from err
            except trial_table.TrialTableError as err:
                raise TrainError(
                    "TrialsInvalid", f"{request.display}: {store.uri(key)}: {err}"
                ) from err
            expected = trial_table.shard_indices(len(plan.candidates), index, count)
            got = [r.candidate for r in rows]
            wrong = [
                r.candidate
                for r in rows
                if r.candidate >= len(plan.candidates)
                or trial_table.params_json(r.params)
                != trial_table.params_json(plan.candidates[r.candidate])
            ]
            if got != expected or wrong:
                raise TrainError(
                    "TrialsInvalid",
                    f"{request.display}: {store.uri(key)} holds candidates {got} "
                    f"(expected {expected}) or parameters that differ from this spec's",
                )
            found.extend(rows)
        log.info("%s: read %d trials from %d search shards", request.display, len(found), count)
        return found

    return read


def _train(request: TrainRequest, store: ArtifactStore, env: Mapping[str, str]) -> dict[str, Any]:
    spec = request.spec
    name = spec.estimator.name
    task = ESTIMATORS[name].task
    loaded = _load(request, store)
    data, features, columns = loaded.data, loaded.features, loaded.columns
    load_seconds = loaded.seconds
    cpu = cpu_limit(env)
    log.info(
        "%s: fitting %s on %d rows x %d features with %d core(s)%s",
        request.display,
        name,
        len(data.train),
        len(columns),
        cpu,
        " (search)" if spec.search else "",
    )
    distributed = spec.search is not None and spec.search.parallelism > 1
    source = _read_shards(request, store, env) if distributed else None
    fitted = fit(
        spec, features, data.train[columns], data.train[data.target], cpu=cpu, source=source
    )
    started = time.perf_counter()
    searched = _write_trials(store, env, fitted, spec.search.parallelism if spec.search else 1)
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    names = metric_names(spec)
    metrics = {
        "test": evaluate(fitted.model, task, names, data.test, columns, data.target),
        "validation": evaluate(fitted.model, task, names, data.validation, columns, data.target),
    }
    champion, champion_error = (None, None)
    if request.champion is not None:
        champion, champion_error = champion_metrics(
            store, request.champion, task=task, names=names, test=data.test, target=data.target
        )
        if champion_error:
            log.warning("%s: %s", request.display, champion_error)
    evaluate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    artifact = upload_model(store, request.namespace, spec.model, fitted.model)
    upload_seconds += time.perf_counter() - started
    started = time.perf_counter()
    env_versions = environment()
    report = model_report(
        store,
        request,
        data,
        features,
        fitted,
        metrics,
        (champion, champion_error),
        artifact,
        env_versions,
    )
    measured = [
        ("fetch", load_seconds),
        *([("search", fitted.search_seconds)] if spec.search else []),
        ("fit", fitted.seconds - fitted.search_seconds),
        ("evaluate", evaluate_seconds),
        ("upload", upload_seconds),
        ("report", time.perf_counter() - started),
    ]
    result = {
        "ok": True,
        "metrics": metrics,
        "bestParams": fitted.best_params,
        "cvScore": fitted.cv_score,
        "trials": searched,
        "artifact": artifact,
        "signature": _signature(fitted, features, data),
        "environment": env_versions,
        "report": report,
        # Which version the gates compare against: the one measured here, whoever
        # holds the alias by the time the operator reads this.
        "champion": _measured(request),
        "championMetrics": champion,
        "championError": champion_error,
        "timings": {
            "loadSeconds": round(load_seconds, 3),
            "fitSeconds": round(fitted.seconds, 3),
            "evaluateSeconds": round(evaluate_seconds, 3),
        },
        "datasetVersion": data.version,
    }
    return stages.report(result, measured)


def _write_trials(
    store: ArtifactStore, env: Mapping[str, str], fitted: Fitted, parallelism: int
) -> dict[str, Any] | None:
    """The full trial table beside the result, and the best few for the run's status."""
    if fitted.trials is None or fitted.plan is None:
        return None
    key = layout.run_trials_key(trials_prefix(env))
    store.put_bytes(
        key, trial_table.to_parquet(fitted.trials, fitted.plan.natural), content_type=PARQUET
    )
    return {
        "uri": store.uri(key),
        "count": len(fitted.trials),
        "parallelism": parallelism,
        "metric": fitted.plan.metric,
        "best": trial_table.summary(fitted.trials, fitted.plan.natural),
    }


def _measured(request: TrainRequest) -> dict[str, Any] | None:
    if request.champion is None:
        return None
    return {"name": request.champion.name, "version": request.champion.version}


def _signature(
    fitted: Fitted, features: list[FeatureColumn], data: LoadedDataset
) -> dict[str, Any]:
    return build_signature(
        fitted.task,
        features,
        target_type=data.target_type,
        classes=list(getattr(fitted.model, "classes_", [])) or None,
        has_proba=hasattr(fitted.model, "predict_proba"),
    )


def _write_result(store: ArtifactStore, key: str, outcome: Outcome, *, shard: bool) -> int:
    if shard and outcome.ok:
        return outcome.exit_code  # the run's result is the final Job's to write
    try:
        store.put_json(key, outcome.result)
    except StorageError as err:
        log.error("cannot write the result manifest %s: %s", store.uri(key), err.message)
        return EXIT_TRANSIENT if err.transient else max(outcome.exit_code, EXIT_BAD_INPUT)
    return outcome.exit_code


def _report(request: TrainRequest | None, outcome: Outcome) -> None:
    what = request.display if request else "trainingrun"
    r = outcome.result
    if outcome.ok and "shard" in r:
        log.info("%s: shard %d wrote %d trials to %s", what, r["shard"], r["trials"], r["uri"])
    elif outcome.ok:
        test = ", ".join(f"{k}={v:.4f}" for k, v in r["metrics"]["test"].items())
        log.info("%s: test %s; artifact %s", what, test, r["artifact"]["uri"])
    else:
        log.error("%s: %s: %s", what, r["reason"], r["message"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeml train",
        description="Train a model version (run by the operator's training Job; input from "
        "$KUBEML_TRAININGRUN, result to $KUBEML_RESULT_KEY).",
    )
    parser.add_argument(
        "--shard",
        action="store_true",
        help="score one shard of a distributed search ($JOB_COMPLETION_INDEX of "
        "spec.search.parallelism) and write its trials; the final Job decides",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="kubeml train: %(levelname)s %(message)s"
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
    request: TrainRequest | None = None
    try:
        request = read_request(env)
        outcome = train(request, store, env, shard=args.shard)
    except TrainError as err:
        outcome = _failed(err)
    except Exception as err:  # a bug: report it with its traceback, and let the Job retry
        log.exception("unexpected failure")
        outcome = Outcome(failure("InternalError", f"{type(err).__name__}: {err}"), EXIT_FAILED)
    _report(request, outcome)
    return _write_result(store, key, outcome, shard=args.shard)


__all__ = ["Outcome", "main", "train"]

if __name__ == "__main__":  # `python -m kubeml.runtime.train`, as the bench runs it
    sys.exit(main())

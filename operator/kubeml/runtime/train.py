"""`kubeml train`: the program the TrainingRun's Job runs.

Input: $KUBEML_TRAININGRUN (namespace, name, generation, spec, dataset version,
champion), $KUBEML_RESULT_KEY, $KUBEML_CPU_LIMIT and the S3 settings of
kubeml.storage.S3Settings.from_env. Output: the model artifact at
namespaces/<namespace>/models/<model>/<sha256>.skops and a result manifest at $KUBEML_RESULT_KEY.
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
from ..storage import ArtifactStore, S3Settings, StorageError
from .training.champion import champion_metrics
from .training.dataset import LoadedDataset, load_dataset
from .training.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT, TrainError
from .training.evaluate import evaluate
from .training.features import FeatureColumn, feature_columns
from .training.fit import Fitted, fit, metric_names
from .training.request import TrainRequest, cpu_limit, read_request, result_key
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


def train(request: TrainRequest, store: ArtifactStore, env: Mapping[str, str]) -> Outcome:
    """Load, check, fit, evaluate, compare and upload; expected failures become an
    Outcome, never an exception."""
    try:
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


def _train(request: TrainRequest, store: ArtifactStore, env: Mapping[str, str]) -> dict[str, Any]:
    spec = request.spec
    name = spec.estimator.name
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
    columns = [f.name for f in features]
    load_seconds = time.perf_counter() - started
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
    fitted = fit(spec, features, data.train[columns], data.train[data.target], cpu=cpu)
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
    artifact = upload_model(store, request.namespace, spec.model, fitted.model)
    return {
        "ok": True,
        "metrics": metrics,
        "bestParams": fitted.best_params,
        "cvScore": fitted.cv_score,
        "artifact": artifact,
        "signature": _signature(fitted, features, data),
        "environment": environment(),
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


def _write_result(store: ArtifactStore, key: str, outcome: Outcome) -> int:
    try:
        store.put_json(key, outcome.result)
    except StorageError as err:
        log.error("cannot write the result manifest %s: %s", store.uri(key), err.message)
        return EXIT_TRANSIENT if err.transient else max(outcome.exit_code, EXIT_BAD_INPUT)
    return outcome.exit_code


def _report(request: TrainRequest | None, outcome: Outcome) -> None:
    what = request.display if request else "trainingrun"
    r = outcome.result
    if outcome.ok:
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
    parser.parse_args(argv)
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
        outcome = train(request, store, env)
    except TrainError as err:
        outcome = _failed(err)
    except Exception as err:  # a bug: report it with its traceback, and let the Job retry
        log.exception("unexpected failure")
        outcome = Outcome(failure("InternalError", f"{type(err).__name__}: {err}"), EXIT_FAILED)
    _report(request, outcome)
    return _write_result(store, key, outcome)


__all__ = ["Outcome", "main", "train"]

if __name__ == "__main__":  # `python -m kubeml.runtime.train`, as the bench runs it
    sys.exit(main())

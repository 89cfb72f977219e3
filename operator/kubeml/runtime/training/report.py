"""The training Job's model report: gathered from what the run measured, rendered by
``kubeml.runtime.report`` and uploaded beside the model's artifact.

A report is a view of the run, not part of its verdict: a report that cannot be drawn
(a bug, an estimator a figure does not handle) is logged and left out, and the run
goes on. S3 failures are raised like the artifact's own upload: transient ones let the
Job retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...api.estimators import ESTIMATORS
from ...reconcile import gates
from ...storage import ArtifactStore, layout, sha256_bytes
from .dataset import LoadedDataset
from .features import FeatureColumn
from .fit import Fitted, metric_names, run_seed
from .metrics import MetricValues
from .request import TrainRequest
from .search import scorer_for
from .trials import ranks

log = logging.getLogger("kubeml.train")
CONTENT_TYPE = "text/html; charset=utf-8"


def gate_verdicts(
    request: TrainRequest,
    test: MetricValues,
    champion: MetricValues | None,
    champion_error: str | None,
) -> list[gates.Verdict]:
    """The gates as the operator will judge them, from what this Job measured (the
    operator may still find that the champion moved meanwhile)."""
    return gates.evaluate(
        request.spec.gates,
        test,
        champion_name=request.champion.name if request.champion else None,
        champion_metrics=champion,
        champion_error=champion_error,
    )


def report_input(
    request: TrainRequest,
    data: LoadedDataset,
    features: Sequence[FeatureColumn],
    fitted: Fitted,
    metrics: Mapping[str, MetricValues],
    verdicts: Sequence[gates.Verdict],
    artifact: Mapping[str, Any],
    environment: Mapping[str, str],
) -> Any:
    from ..report import GateOutcome, ReportInput, TrialRow

    spec = request.spec
    task = ESTIMATORS[spec.estimator.name].task
    names = metric_names(spec)
    key = names[0] if names else ""
    classes = list(getattr(fitted.model, "classes_", [])) or None
    trials = None
    if fitted.trials is not None and fitted.plan is not None:
        natural = fitted.plan.natural
        rank = ranks(fitted.trials)
        trials = [
            TrialRow(
                t.candidate,
                t.params,
                natural(t.mean),
                t.std,
                rank[t.candidate],
                float(np.mean(t.fit_seconds)) if t.fit_seconds else None,
            )
            for t in fitted.trials
        ]
    return ReportInput(
        run=f"{request.namespace}/{request.name}",
        model=spec.model,
        estimator=spec.estimator.name,
        task=task,
        dataset=data.name,
        dataset_version=data.version,
        target=data.target,
        features=[(f.name, f.type) for f in features],
        splits={"train": data.train, "validation": data.validation, "test": data.test},
        fitted=fitted.model,
        params=fitted.best_params,
        metrics=metrics,
        gates=[GateOutcome(v.gate, v.passed, v.value) for v in verdicts],
        cv=(fitted.cv_metric, fitted.cv_score)
        if fitted.cv_metric and fitted.cv_score is not None
        else None,
        trials=trials,
        folds=spec.search.folds if spec.search else None,
        key_metric=key,
        scoring=scorer_for(key, classes) if key else None,
        artifact=artifact,
        environment=environment,
        seed=run_seed(spec),
    )


def model_report(
    store: ArtifactStore,
    request: TrainRequest,
    data: LoadedDataset,
    features: Sequence[FeatureColumn],
    fitted: Fitted,
    metrics: Mapping[str, MetricValues],
    champion: tuple[MetricValues | None, str | None],
    artifact: Mapping[str, Any],
    environment: Mapping[str, str],
) -> dict[str, Any] | None:
    """Render and upload the report; ``{uri, sha256, size}``, or None when it could not
    be drawn."""
    from ..report import render

    try:
        verdicts = gate_verdicts(request, metrics.get("test") or {}, *champion)
        page = render(
            report_input(request, data, features, fitted, metrics, verdicts, artifact, environment)
        ).encode()
    except Exception:  # a view of the run must not fail the run
        log.exception(
            "%s: the model report could not be drawn; going on without it", request.display
        )
        return None
    digest = sha256_bytes(page)
    key = layout.report_key(request.namespace, request.spec.model, digest)
    store.put_bytes(key, page, content_type=CONTENT_TYPE)
    log.info("%s: model report %s (%d bytes)", request.display, store.uri(key), len(page))
    return {"uri": store.uri(key), "sha256": digest, "size": len(page)}

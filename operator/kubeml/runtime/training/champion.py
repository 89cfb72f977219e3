"""Measuring the current champion on this run's test split, so gates compare two
models on the same rows. Any failure is reported, not fatal: the operator decides
what a gate does without a champion measurement."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.base import is_classifier, is_regressor

from ... import models
from ...api.estimators import Task
from ...storage import ArtifactStore, StorageError, parse_uri
from .dataset import store_for
from .evaluate import evaluate
from .metrics import MetricValues
from .request import ChampionInput


def champion_metrics(
    store: ArtifactStore,
    champion: ChampionInput,
    *,
    task: Task,
    names: Sequence[str],
    test: pd.DataFrame,
    target: str,
) -> tuple[MetricValues | None, str | None]:
    """(metrics, None) or (None, why not). A transient S3 failure is raised instead:
    the Job's retry can still get a real measurement."""
    who = f"champion {champion.name} (version {champion.version})"
    try:
        bucket, key = parse_uri(champion.artifact.uri)
        data = store_for(store, bucket).get_bytes(key)
        model = models.load(data, champion.artifact.sha256)
    except StorageError as err:
        if err.transient:
            raise
        return None, f"{who}: {err.reason}: {err.message}"
    except models.ModelArtifactError as err:
        return None, f"{who}: {err.reason}: {err}"
    except ValueError as err:  # a malformed uri
        return None, f"{who}: {err}"
    fits_task = is_classifier(model) if task == "classification" else is_regressor(model)
    if not fits_task:
        return None, f"{who} is not a {task} model"
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    missing = [c for c in columns if c not in test.columns]
    if not columns or missing:
        return None, f"{who} expects columns {missing or 'unknown'} missing from the test split"
    try:
        return evaluate(model, task, names, test, columns, target), None
    except Exception as err:  # a model that cannot predict these rows: report, do not fail
        return None, f"{who} could not predict the test split: {type(err).__name__}: {err}"

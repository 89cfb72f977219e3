"""The search as a trial table: candidates as scikit-learn's searches enumerate them,
shards that partition them, scores equal to GridSearchCV's, and the same winner
however the candidates are spread over pods."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeml.api.trainingrun import TrainingRunSpec
from kubeml.runtime.training import trials
from kubeml.runtime.training.features import FeatureColumn
from kubeml.runtime.training.fit import SearchPlan, fit, plan_search
from kubeml.runtime.training.search import build_search, prefixed

FEATURES = [FeatureColumn("a", "number"), FeatureColumn("b", "number")]


def _data(n: int = 150) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    noise = rng.normal(scale=0.8, size=n)
    return X, pd.Series(((X["a"] + X["b"] + noise) > 0).astype(int), name="y")


def _spec(search: dict[str, Any], **estimator: Any) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "model": "m",
            "estimator": estimator or {"name": "logistic-regression"},
            "search": search,
        }
    )


GRID = {"space": {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]}, "folds": 3}


@pytest.mark.parametrize(
    "search",
    [
        GRID,
        {
            "strategy": "random",
            "trials": 5,
            "seed": 3,
            "space": {"C": [0.1, 1, 10, 100], "tol": [1e-4, 1e-3, 1e-2]},
            "folds": 3,
        },
    ],
)
def test_candidates_are_what_scikit_learns_search_tries(search: dict[str, Any]) -> None:
    spec = _spec(search)
    plan = _plan(spec)
    assert spec.search is not None
    ref = build_search(
        plan.pipeline,
        spec.search,
        task="classification",
        metric="accuracy",
        classes=[0, 1],
        n_jobs=1,
    ).fit(plan.X, plan.y)
    assert [prefixed(c) for c in plan.candidates] == list(ref.cv_results_["params"])
    assert trials.candidates(spec.search) == plan.candidates  # seeded: the same every time


@pytest.mark.parametrize(("total", "count"), [(8, 1), (8, 3), (24, 4), (2, 5), (0, 2)])
def test_shards_partition_the_candidates(total: int, count: int) -> None:
    shards = [trials.shard_indices(total, i, count) for i in range(count)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(total))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_a_shard_outside_the_count_is_refused() -> None:
    with pytest.raises(ValueError, match="shard 3 of 3"):
        trials.shard_indices(8, 3, 3)


def _plan(spec: TrainingRunSpec) -> SearchPlan:
    X, y = _data()
    return plan_search(spec, FEATURES, X, y)


def test_scores_equal_grid_search_cv() -> None:
    spec = _spec(GRID)
    plan = _plan(spec)
    rows = plan.evaluate(range(len(plan.candidates)), shard=0, cpu=1)
    assert spec.search is not None
    ref = build_search(
        plan.pipeline,
        spec.search,
        task="classification",
        metric="accuracy",
        classes=[0, 1],
        n_jobs=1,
    ).fit(plan.X, plan.y)
    assert [r.mean for r in rows] == list(ref.cv_results_["mean_test_score"])
    for i, r in enumerate(rows):
        assert r.fold_scores == [ref.cv_results_[f"split{f}_test_score"][i] for f in range(3)]
        assert prefixed(r.params) == ref.cv_results_["params"][i]
    assert trials.best(rows).candidate == ref.best_index_


def test_sharded_search_equals_the_one_pod_search() -> None:
    spec = _spec(GRID)
    plan = _plan(spec)
    whole = plan.evaluate(range(len(plan.candidates)), shard=0, cpu=2)
    pieces: list[trials.Trial] = []
    for index in range(3):
        part = plan.evaluate(
            trials.shard_indices(len(plan.candidates), index, 3), shard=index, cpu=1
        )
        # Through Parquet and back, as the final Job reads them.
        pieces.extend(trials.from_parquet(trials.to_parquet(part, plan.natural), plan.natural))
    pieces.sort(key=lambda t: t.candidate)
    assert [(t.candidate, t.fold_scores) for t in pieces] == [
        (t.candidate, t.fold_scores) for t in whole
    ]
    assert trials.best(pieces).candidate == trials.best(whole).candidate
    assert trials.summary(pieces, plan.natural) == trials.summary(whole, plan.natural)


def test_fit_from_shards_refits_the_same_winner() -> None:
    spec = _spec(GRID)
    X, y = _data()
    one = fit(spec, FEATURES, X, y, cpu=1)
    sharded = fit(
        spec,
        FEATURES,
        X,
        y,
        cpu=1,
        source=lambda plan: [
            t
            for i in range(4)
            for t in plan.evaluate(trials.shard_indices(8, i, 4), shard=i, cpu=1)
        ],
    )
    assert one.best_params == sharded.best_params
    assert one.cv_score == sharded.cv_score
    assert one.trials is not None and len(one.trials) == 8
    np.testing.assert_array_equal(one.model.predict(X), sharded.model.predict(X))


def test_lower_is_better_scores_are_stored_in_their_own_units() -> None:
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "model": "m",
            "estimator": {"name": "ridge"},
            "metrics": ["rmse", "r2"],
            "search": {"space": {"alpha": [0.1, 10.0, 1000.0]}, "folds": 3},
        }
    )
    X, _ = _data()
    y = pd.Series(X["a"] * 2 + 0.1, name="y")
    plan = plan_search(spec, FEATURES, X, y)
    rows = plan.evaluate(range(3), shard=0, cpu=1)
    table = trials.from_parquet(trials.to_parquet(rows, plan.natural), plan.natural)
    assert [t.fold_scores for t in table] == [t.fold_scores for t in rows]
    top = trials.summary(rows, plan.natural)
    assert top[0]["params"] == {"alpha": 0.1}  # the smallest error wins
    assert all(t["score"] > 0 for t in top)  # rmse, not neg_rmse
    assert [t["rank"] for t in top] == [1, 2, 3]


def test_ties_go_to_the_first_candidate_and_share_a_rank() -> None:
    def trial(c: int, s: float) -> trials.Trial:
        return trials.Trial(c, 0, {"C": c}, "accuracy", [s, s], [0.0, 0.0], [0.0, 0.0])

    rows = [trial(0, 0.5), trial(1, 0.9), trial(2, 0.9), trial(3, 0.1)]
    assert trials.best(rows).candidate == 1
    assert trials.ranks(rows) == {1: 1, 2: 1, 0: 3, 3: 4}


def test_a_file_that_is_not_a_trial_table_is_refused() -> None:
    with pytest.raises(trials.TrialTableError, match="not a Parquet file"):
        trials.from_parquet(b"nope", lambda s: s)


def test_a_shard_with_no_candidates_writes_an_empty_table() -> None:
    # More pods than candidates: the extra pods have nothing to score, and say so.
    assert trials.shard_indices(3, 4, 5) == []
    assert trials.from_parquet(trials.to_parquet([], lambda s: s), lambda s: s) == []


def test_each_finished_trial_is_logged_with_the_running_best(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = _plan(_spec(GRID))
    with caplog.at_level("INFO", logger="kubeml.train"):
        rows = plan.evaluate(range(4), shard=0, cpu=1)
    lines = [r.getMessage() for r in caplog.records if "trial " in r.getMessage()]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("best so far" in line for line in lines)
    best = trials.best(rows)
    assert f"best so far {best.mean:.4f} (candidate {best.candidate})" in lines[-1]

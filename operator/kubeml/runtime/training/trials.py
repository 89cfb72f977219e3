"""The search as a table of trials: one row per candidate, shardable across pods.

A search is split into candidates (scikit-learn's own ParameterGrid/ParameterSampler,
so the list is exactly what GridSearchCV/RandomizedSearchCV would try) and seeded folds
(the search's KFold/StratifiedKFold). Each candidate is scored on every fold by
``cross_validate``, the same ``_fit_and_score`` the search classes use. A shard is a
deterministic subset of candidate indices, so N pods that each score their shard and a
single pod that scores all of them produce identical rows, and the winner chosen from
the merged table is the same.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.base import BaseEstimator
from sklearn.model_selection import ParameterGrid, ParameterSampler, cross_validate
from sklearn.utils.parallel import Parallel, delayed

from ...api.trainingrun import Search

log = logging.getLogger("kubeml.train")

# The columns of the trial table (Parquet), in order. Parameters are a JSON object per
# row: their values mix types (3, None, "sqrt") that one Parquet column cannot hold.
SCHEMA = pa.schema(
    [
        ("candidate", pa.int64()),
        ("shard", pa.int64()),
        ("params", pa.string()),
        ("metric", pa.string()),
        ("fold_scores", pa.list_(pa.float64())),
        ("mean_score", pa.float64()),
        ("std_score", pa.float64()),
        ("mean_fit_seconds", pa.float64()),
        ("mean_score_seconds", pa.float64()),
        ("rank", pa.int64()),
    ]
)
TOP = 5


# Searched preprocessing choices sit in a candidate beside the estimator's parameters,
# under names no estimator parameter has.
PREPROCESSING = "preprocessing."


def space_of(search: Search) -> dict[str, list[Any]]:
    """The search's whole space: estimator parameters, and preprocessing choices as
    ``preprocessing.<name>`` (camelCase, as in the TrainingRun)."""
    space = {k: list(v) for k, v in (search.space or {}).items()}
    if search.preprocessing is not None:
        wire = search.preprocessing.model_dump(by_alias=True, exclude_none=True)
        space.update({f"{PREPROCESSING}{k}": list(v) for k, v in wire.items()})
    return space


def split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(estimator parameters, preprocessing choices by their camelCase name)."""
    est = {k: v for k, v in params.items() if not k.startswith(PREPROCESSING)}
    pre = {
        k.removeprefix(PREPROCESSING): v for k, v in params.items() if k.startswith(PREPROCESSING)
    }
    return est, pre


def candidates(search: Search) -> list[dict[str, Any]]:
    """Every candidate of the search, in the order scikit-learn's search classes use."""
    space = space_of(search)
    if search.strategy == "grid":
        return [dict(c) for c in ParameterGrid(space)]
    sampler = ParameterSampler(space, n_iter=search.trials or 10, random_state=search.seed)
    return [dict(c) for c in sampler]


def shard_indices(total: int, index: int, count: int) -> list[int]:
    """Candidates of shard ``index`` of ``count``: round robin, so neighbouring (often
    similarly expensive) grid points land on different pods."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return list(range(index, total, count))


@dataclass(frozen=True)
class Trial:
    candidate: int
    shard: int
    params: dict[str, Any]
    metric: str
    fold_scores: list[float]  # the scorer's sign: higher is better
    fit_seconds: list[float]
    score_seconds: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


# Builds a candidate's unfitted pipeline from its parameters. Sent to worker processes,
# so it must pickle: a module-level class instance, not a closure.
Builder = Callable[[Mapping[str, Any]], BaseEstimator]


def _score_one(
    make: Builder,
    params: Mapping[str, Any],
    X: Any,
    y: Any,
    fold: tuple[np.ndarray, np.ndarray],
    scorer: Any,
) -> tuple[float, float, float]:
    out = cross_validate(make(params), X, y, cv=[fold], scoring=scorer, error_score="raise")
    return float(out["test_score"][0]), float(out["fit_time"][0]), float(out["score_time"][0])


def evaluate(
    make: Builder,
    chosen: Sequence[tuple[int, dict[str, Any]]],
    X: Any,
    y: Any,
    *,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    scorer: Any,
    metric: str,
    shard: int,
    n_jobs: int,
    natural: Callable[[float], float],
) -> list[Trial]:
    """Score each (candidate, fold) pair on up to ``n_jobs`` cores, logging one line per
    finished candidate with the running best. Rows come back in candidate order."""
    tasks = [(c, f) for c, _ in chosen for f in range(len(splits))]
    params = dict(chosen)
    scores: dict[int, dict[int, tuple[float, float, float]]] = {c: {} for c, _ in chosen}
    started = time.perf_counter()
    best: tuple[float, int] | None = None
    done = 0
    jobs = (delayed(_tagged)(make, c, f, params[c], X, y, splits[f], scorer) for c, f in tasks)
    # Unordered: a finished candidate is logged as soon as its last fold is in.
    results: Iterable[tuple[int, int, tuple[float, float, float]]] = Parallel(
        n_jobs=n_jobs, return_as="generator_unordered"
    )(jobs)
    for c, f, value in results:
        scores[c][f] = value
        if len(scores[c]) < len(splits):
            continue
        done += 1
        mean = float(np.mean([scores[c][i][0] for i in range(len(splits))]))
        if best is None or mean > best[0] or (mean == best[0] and c < best[1]):
            best = (mean, c)
        log.info(
            "trial %d/%d done: candidate %d %s mean %s=%.4f; best so far %.4f (candidate %d); "
            "%.1fs elapsed",
            done,
            len(chosen),
            c,
            json.dumps(params[c], sort_keys=True, default=str),
            metric,
            natural(mean),
            natural(best[0]),
            best[1],
            time.perf_counter() - started,
        )
    return [
        Trial(
            candidate=c,
            shard=shard,
            params=p,
            metric=metric,
            fold_scores=[scores[c][i][0] for i in range(len(splits))],
            fit_seconds=[scores[c][i][1] for i in range(len(splits))],
            score_seconds=[scores[c][i][2] for i in range(len(splits))],
        )
        for c, p in chosen
    ]


def _tagged(
    make: Builder,
    candidate: int,
    fold: int,
    params: Mapping[str, Any],
    X: Any,
    y: Any,
    split: tuple[np.ndarray, np.ndarray],
    scorer: Any,
) -> tuple[int, int, tuple[float, float, float]]:
    return candidate, fold, _score_one(make, params, X, y, split, scorer)


def best(trials: Sequence[Trial]) -> Trial:
    """The highest mean score; ties go to the lowest candidate index, which is the rule
    scikit-learn's searches follow (the first candidate among the top-ranked)."""
    if not trials:
        raise ValueError("no trials")
    return min(trials, key=lambda t: (-t.mean, t.candidate))


def ranks(trials: Sequence[Trial]) -> dict[int, int]:
    """Rank per candidate, 1 best; equal means share the lowest rank (sklearn's 'min')."""
    ordered = sorted(trials, key=lambda t: (-t.mean, t.candidate))
    out: dict[int, int] = {}
    for i, t in enumerate(ordered):
        prev = ordered[i - 1] if i else None
        out[t.candidate] = out[prev.candidate] if prev and prev.mean == t.mean else i + 1
    return out


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps({k: _json(v) for k, v in params.items()}, sort_keys=True)


def to_parquet(trials: Sequence[Trial], natural: Callable[[float], float]) -> bytes:
    """The table as Parquet bytes, scores in the metric's own units (rmse positive)."""
    rank = ranks(trials) if trials else {}
    rows = sorted(trials, key=lambda t: t.candidate)
    table = pa.Table.from_pydict(
        {
            "candidate": [t.candidate for t in rows],
            "shard": [t.shard for t in rows],
            "params": [params_json(t.params) for t in rows],
            "metric": [t.metric for t in rows],
            "fold_scores": [[natural(s) for s in t.fold_scores] for t in rows],
            "mean_score": [natural(t.mean) for t in rows],
            "std_score": [t.std for t in rows],
            "mean_fit_seconds": [float(np.mean(t.fit_seconds)) for t in rows],
            "mean_score_seconds": [float(np.mean(t.score_seconds)) for t in rows],
            "rank": [rank.get(t.candidate, 0) for t in rows],
        },
        schema=SCHEMA,
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


class TrialTableError(ValueError):
    pass


def from_parquet(data: bytes, natural: Callable[[float], float]) -> list[Trial]:
    """Rows back into trials (scores in the scorer's sign again: ``natural`` is its own
    inverse). Raises TrialTableError when the bytes are not a trial table."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise TrialTableError(f"not a Parquet file: {err}") from err
    missing = [n for n in SCHEMA.names if n not in table.column_names]
    if missing:
        raise TrialTableError(f"missing columns {missing}")
    out = []
    for row in table.to_pylist():
        folds = [natural(float(s)) for s in row["fold_scores"]]
        n = len(folds)
        out.append(
            Trial(
                candidate=int(row["candidate"]),
                shard=int(row["shard"]),
                params=json.loads(row["params"]),
                metric=str(row["metric"]),
                fold_scores=folds,
                # Per-fold times are summarised in the table; the mean is what is kept.
                fit_seconds=[float(row["mean_fit_seconds"])] * n,
                score_seconds=[float(row["mean_score_seconds"])] * n,
            )
        )
    return out


def summary(
    trials: Sequence[Trial], natural: Callable[[float], float], top: int = TOP
) -> list[dict[str, Any]]:
    """The best few, for the run's status (the full table stays in S3)."""
    rank = ranks(trials)
    ordered = sorted(trials, key=lambda t: (rank[t.candidate], t.candidate))[:top]
    return [
        {
            "rank": rank[t.candidate],
            "candidate": t.candidate,
            "params": json.loads(params_json(t.params)),
            "score": round(natural(t.mean), 6),
            "std": round(t.std, 6),
        }
        for t in ordered
    ]


__all__ = [
    "SCHEMA",
    "Trial",
    "TrialTableError",
    "best",
    "candidates",
    "evaluate",
    "from_parquet",
    "params_json",
    "ranks",
    "shard_indices",
    "space_of",
    "split",
    "summary",
    "to_parquet",
]

"""The production source's join: captured requests with their ground truth, labelled
rows only, latest feedback winning, time range, one row per predicted row."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from kubeml.data.errors import DataError
from kubeml.data.production import join

T0 = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def captures(*recs: tuple[str, int, dict[str, list[float]]]) -> pa.Table:
    return pa.table(
        {
            "id": [r[0] for r in recs],
            "time": pa.array([T0.timestamp() * 1e9 + r[1] * 60e9 for r in recs], pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "rows": pa.array([len(next(iter(r[2].values()))) for r in recs], pa.int32()),
            "inputs": [r[2] for r in recs],
        }
    )


def feedback(*recs: tuple[str, int, list[str]]) -> pa.Table:
    return pa.table(
        {
            "id": [r[0] for r in recs],
            "time": pa.array([T0.timestamp() * 1e9 + r[1] * 60e9 for r in recs], pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "truth": [r[2] for r in recs],
        }
    )


CAP = captures(
    ("a", 0, {"x": [1.0, 2.0], "y": [3.0, 4.0]}),
    ("b", 5, {"x": [5.0], "y": [6.0]}),
    ("c", 10, {"x": [7.0], "y": [8.0]}),
)


def test_labelled_rows_only_one_row_per_predicted_row() -> None:
    frame = join(CAP, feedback(("a", 1, ["0", "1"]), ("c", 11, ["2"])), "label", "src")
    assert frame.to_dict("list") == {"x": [1.0, 2.0, 7.0], "y": [3.0, 4.0, 8.0], "label": [0, 1, 2]}


def test_the_latest_feedback_wins_and_a_wrong_length_is_left_out() -> None:
    fb = feedback(("a", 1, ["0", "0"]), ("a", 2, ["1", "1"]), ("b", 6, ["1", "2"]))
    frame = join(CAP, fb, "label", "src")
    assert frame["label"].tolist() == [1, 1]


def test_the_time_range_and_string_labels() -> None:
    fb = feedback(("a", 1, ["cat", "dog"]), ("b", 6, ["cat"]), ("c", 11, ["dog"]))
    frame = join(CAP, fb, "label", "src", since=T0.replace(minute=5), until=T0.replace(minute=10))
    assert frame.to_dict("list") == {"x": [5.0], "y": [6.0], "label": ["cat"]}


def test_no_labels_is_a_named_failure() -> None:
    with pytest.raises(DataError) as err:
        join(CAP, feedback(("zzz", 1, ["0"])), "label", "deployment iris's captures")
    assert err.value.reason == "NoLabelledRows"
    assert "deployment iris's captures: none of 3 captured requests" in err.value.message
    with pytest.raises(DataError, match="no captured requests"):
        join(CAP.slice(0, 0), feedback(("a", 1, ["0", "1"])), "label", "src")


def test_the_time_range_must_name_its_time_zone() -> None:
    from pydantic import ValidationError

    from kubeml.api.dataset import ProductionSource

    ok = ProductionSource.model_validate({"deployment": "iris", "since": "2026-12-06T05:00:00Z"})
    assert ok.since == "2026-12-06T05:00:00Z"
    with pytest.raises(ValidationError, match="time zone"):
        ProductionSource.model_validate({"deployment": "iris", "until": "2026-12-06T05:00:00"})
    with pytest.raises(ValidationError, match="since must be before until"):
        ProductionSource.model_validate(
            {"deployment": "iris", "since": "2026-12-06T05:00:00Z", "until": "2026-12-06T04:00Z"}
        )

"""Production rows appended to another Dataset (source.production.appendTo): which
base version the preparation uses, waiting for it, refusing loops, the Job's input,
lineage in status, and the columns both sides must share."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from kubeml.api import parse_manifest
from kubeml.conditions import find
from kubeml.data.errors import DataError
from kubeml.data.production import append
from kubeml.reconcile import dataset as ds
from kubeml.reconcile.results import ResultRead
from kubeml.runtime.prepare_request import read_request
from tests.support.outcomes import Seen
from tests.unit.test_reconcile_dataset import SETTINGS, complete, ok_result

NOW = "2026-12-06T12:00:00Z"
CLOCK = datetime(2026, 12, 6, 12, tzinfo=UTC)
V1, V2 = "1" * 64, "2" * 64


def production(name: str = "prod", base: str | None = "iris") -> dict[str, Any]:
    source: dict[str, Any] = {"deployment": "live"}
    if base is not None:
        source["appendTo"] = {"dataset": base}
    return {
        "apiVersion": "kubeml.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": "ml", "uid": "u", "generation": 1},
        "spec": {"source": {"production": source}, "target": "target"},
    }


def base(version: str | None = V1, ready: str = "True", reason: str = "Prepared") -> dict[str, Any]:
    doc = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"source": {"builtin": {"name": "iris"}}, "target": "target"},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason}]},
    }
    if version:
        doc["status"]["version"] = version
    return doc


def decide(
    b: dict[str, Any],
    observed_base: dict[str, Any] | None,
    job: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> tuple[ds.Target, Seen]:
    """As the controller does: resolve the base from the cache, then decide."""
    t = ds.target(b, CLOCK, ds.resolve_base(b, observed_base))
    read = ResultRead("s3://kubeml/r.json", doc=result) if result is not None else None
    return t, Seen(ds.decide(b, t, job, read, SETTINGS, now=NOW))


def test_the_api_takes_a_dataset_name_only() -> None:
    model = parse_manifest(production())
    assert model.spec.source.production.append_to.dataset == "iris"  # type: ignore[union-attr]
    bad = production()
    bad["spec"]["source"]["production"]["appendTo"] = {"dataset": "iris", "namespace": "other"}
    with pytest.raises(Exception, match="namespace"):
        parse_manifest(bad)


def test_the_job_reads_the_base_datasets_current_version_in_its_own_namespace() -> None:
    _, seen = decide(production(), base(V1))
    assert seen.job is not None
    env = {
        e["name"]: e.get("value")
        for e in seen.job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    payload = json.loads(env["KUBEML_DATASET"])
    assert payload["base"] == {
        "name": "iris",
        "version": V1,
        "uri": f"s3://kubeml/namespaces/ml/datasets/{V1}/",
    }
    request = read_request(env)  # type: ignore[arg-type]
    assert request.base is not None and request.base.version == V1


def test_a_new_base_version_is_a_new_preparation() -> None:
    t1, _ = decide(production(), base(V1))
    t2, _ = decide(production(), base(V2))
    assert t1.job_name != t2.job_name
    # Datasets that append to nothing keep the Job names they always had.
    plain = production(base=None)
    assert ds.target(plain, CLOCK).job_name == ds.job_name("prod", plain["spec"])


def test_a_missing_or_unready_base_waits_with_its_reason() -> None:
    for observed, reason in (
        (None, "BaseDatasetNotFound"),
        (base(None, "False", "Preparing"), "BaseDatasetNotReady"),
        (base(V1, "False", "ValidationFailed"), "BaseDatasetNotReady"),
    ):
        _, seen = decide(production(), observed)
        assert seen.job is None
        ready = find(seen.status["conditions"], "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("False", reason)
        assert "dataset iris (source.production.appendTo)" in ready["message"]


def test_appending_to_itself_or_in_a_loop_is_an_invalid_spec() -> None:
    _, seen = decide(production(base="prod"), None)
    ready = find(seen.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "InvalidSpec" and seen.job is None
    other = production(name="iris", base="prod")
    _, seen = decide(production(), other)
    ready = find(seen.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "InvalidSpec"
    assert "prod and iris append to each other" in ready["message"]


def test_the_published_version_records_its_base_and_stays_while_the_base_refreshes() -> None:
    b = production()
    t, first = decide(b, base(V1))
    assert first.job is not None
    b = copy.deepcopy(b)
    b["status"] = first.status
    doc = {**ok_result(), "base": {"dataset": "iris", "version": V1}}
    _, done = decide(b, base(V1), complete(t.job_name), doc)
    assert done.status["base"] == {"dataset": "iris", "version": V1}
    ready = find(done.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True"
    assert f"appended to dataset iris {V1[:12]}" in ready["message"]
    b["status"] = done.status
    # The base is being prepared again: this version stays Ready, no Job yet.
    _, waiting = decide(b, base(V1, "False", "Preparing"))
    assert waiting.job is None
    ready = find(waiting.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True"
    # Its next version: prepared anew while the published one stays usable.
    _, rebased = decide(b, base(V2))
    assert rebased.job is not None
    ready = find(rebased.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Refreshing")


def frame(**cols: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(cols)


def test_production_rows_follow_the_base_rows_in_its_column_order() -> None:
    got = append(
        frame(a=[1.0, 2.0], b=[3.0, 4.0], target=[0, 1]),
        frame(b=[5.0], a=[6.0], target=[2]),
        target="target",
        base_target="target",
        label="the production rows of dataset ml/prod",
        base_label="dataset iris (version 111111111111)",
    )
    assert got.to_dict("list") == {"a": [1.0, 2.0, 6.0], "b": [3.0, 4.0, 5.0], "target": [0, 1, 2]}


def test_a_column_mismatch_names_the_columns_and_both_datasets() -> None:
    with pytest.raises(DataError) as err:
        append(
            frame(a=[1.0], b=[2.0], target=[0]),
            frame(a=[1.0], c=[2.0], target=[0]),
            target="target",
            base_target="target",
            label="the production rows of dataset ml/prod",
            base_label="dataset iris (version 111111111111)",
        )
    assert err.value.reason == "ColumnMismatch"
    message = err.value.message
    assert "dataset ml/prod" in message and "dataset iris (version 111111111111)" in message
    assert "missing column 'b'" in message and "extra column 'c'" in message
    with pytest.raises(DataError, match="the target is 'y' here and 'target' there"):
        append(
            frame(a=[1.0], target=[0]),
            frame(a=[1.0], y=[0]),
            target="y",
            base_target="target",
            label="x",
            base_label="dataset iris",
        )


def test_the_readme_shows_the_example_which_is_valid() -> None:
    from tests.support.cases import ROOT, load_yaml

    path = ROOT / "examples" / "dataset-production.yaml"
    body = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    assert f"```yaml\n{body}\n```" in (ROOT / "README.md").read_text()
    model = parse_manifest(load_yaml(path))
    assert model.spec.source.production.append_to.dataset == "iris"  # type: ignore[union-attr]

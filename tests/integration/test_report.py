"""The model report, as the training program writes it, opened in a real browser.

A classifier (iris) and a regressor (diabetes) are prepared and trained by the real
`kubeml prepare` / `kubeml train` programs against a real S3 server; the report each
uploads is fetched by its sha256, checked for its sections and figures, then loaded
from a file:// URL by headless Chromium (Debian's `chromium`), which dumps the DOM it
built and takes a screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kubeml.storage import ArtifactStore, parse_uri
from kubeml.storage.devserver import SeaweedS3
from tests.integration.test_train_runtime import _prepare, _run
from tests.support.report_page import check, parse

pytestmark = pytest.mark.integration

CLASSIFIER_FIGURES = {"histograms", "trials", "confusion", "roc", "pr", "importance"}
REGRESSOR_FIGURES = {"histograms", "trials", "residuals", "importance"}


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is needed (apt-get install chromium; .ci/run does)"
    return found


def browse(
    chromium: str, page: Path, profile: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[SeaweedS3]:
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="module")
def store(s3: SeaweedS3) -> ArtifactStore:
    return ArtifactStore(s3.settings(), env=s3.env())


def report_of(store: ArtifactStore, result: dict[str, Any] | None) -> str:
    assert result is not None and result["ok"], result
    ref = result["report"]
    bucket, key = parse_uri(ref["uri"])
    assert bucket == store.bucket
    assert key.startswith("namespaces/test/models/") and "/reports/" in key
    data = store.get_bytes(key, expected_sha256=ref["sha256"])
    assert len(data) == ref["size"]
    return data.decode()


CLASSIFIER: dict[str, Any] = {
    "datasetRef": {"name": "iris"},
    "model": "iris",
    "estimator": {"name": "random-forest-classifier", "params": {"n_estimators": 25}},
    "search": {"strategy": "grid", "space": {"max_depth": [2, 4, None]}, "folds": 3, "seed": 7},
    "metrics": ["accuracy", "f1_macro"],
    "gates": {"thresholds": [{"metric": "accuracy", "min": 0.85}]},
}
REGRESSOR: dict[str, Any] = {
    "datasetRef": {"name": "diabetes"},
    "model": "diabetes",
    "estimator": {"name": "ridge"},
    "search": {"space": {"alpha": [0.1, 1.0, 10.0]}, "folds": 3},
    "metrics": ["r2", "rmse"],
    # One gate passes, one fails: the report shows both outcomes.
    "gates": {"thresholds": [{"metric": "r2", "min": 0.2}, {"metric": "rmse", "max": 10}]},
}


@pytest.mark.parametrize(
    ("source", "spec", "figures"),
    [
        ("iris", CLASSIFIER, CLASSIFIER_FIGURES),
        ("diabetes", REGRESSOR, REGRESSOR_FIGURES),
    ],
    ids=["classifier", "regressor"],
)
def test_the_report_renders_in_chromium_with_every_section_and_figure(
    s3: SeaweedS3,
    store: ArtifactStore,
    chromium: str,
    tmp_path: Path,
    source: str,
    spec: dict[str, Any],
    figures: set[str],
) -> None:
    split: dict[str, Any] = {"validation": 0.2, "test": 0.2, "seed": 1}
    dataset = _prepare(
        s3,
        store,
        source,
        {"source": {"builtin": {"name": source}}, "target": "target", "split": split},
    )
    code, result = _run(s3, store, dataset, spec)
    assert code == 0, result
    html = report_of(store, result)
    check(parse(html), figures)
    outcomes = ["passed"] if source == "iris" else ["passed", "failed"]
    for outcome in outcomes:
        assert f">{outcome}</td>" in html
    for param, value in result["bestParams"].items():
        assert param in html and str(value) in html

    path = tmp_path / "report.html"
    path.write_text(html)
    # The DOM Chromium built from the file: the same sections and drawn figures.
    dom = browse(chromium, path, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    check(parse(dom.stdout), figures)
    shot = tmp_path / "report.png"
    taken = browse(
        chromium, path, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400"
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 100  # text, tables and figures, not a blank page

"""The committed CRDs are exactly what the models generate, and are valid CRDs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubeml import crdgen
from kubeml.api import KINDS
from tests.support.cases import ROOT, example_files, load_yaml

CRD_DIR = ROOT / "crds"
CRDS = {p.name: yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))}
# Short names of built-in kinds as served by a v1.36 apiserver (kubectl api-resources).
BUILTIN_SHORT_NAMES = {
    "cm",
    "ep",
    "ev",
    "limits",
    "ns",
    "no",
    "pvc",
    "pv",
    "po",
    "rc",
    "quota",
    "sa",
    "svc",
    "crd",
    "crds",
    "ds",
    "deploy",
    "rs",
    "sts",
    "hpa",
    "cj",
    "csr",
    "ing",
    "netpol",
    "pdb",
    "pc",
    "psp",
    "sc",
    "ingclass",
    "vac",
    "rt",
    "resourcetemplate",
    "cs",
}


def test_committed_crds_are_up_to_date() -> None:
    rendered = crdgen.render_all()
    assert set(rendered) == set(CRDS), "run `kubeml crds`"
    for name, text in rendered.items():
        assert (CRD_DIR / name).read_text() == text, f"{name} is stale: run `kubeml crds`"


def test_regenerating_is_deterministic(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    first = {p.name: p.read_text() for p in tmp_path.iterdir()}
    crdgen.write(tmp_path)
    assert first == {p.name: p.read_text() for p in tmp_path.iterdir()}


def test_one_crd_per_kind() -> None:
    assert len(CRDS) == 4
    assert {c["spec"]["names"]["kind"] for c in CRDS.values()} == set(KINDS)


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_is_a_valid_apiextensions_v1_object(name: str) -> None:
    kubernetes_validate.validate(CRDS[name], "1.36", strict=True)


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_follows_the_status_contract(name: str) -> None:
    crd = CRDS[name]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert "kubeml" in crd["spec"]["names"]["categories"]
    schema = version["schema"]["openAPIV3Schema"]
    crdgen.assert_structural(schema)
    status = schema["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {
        "type",
        "status",
        "reason",
        "lastTransitionTime",
    }


def test_short_names_do_not_collide() -> None:
    names = [n for c in CRDS.values() for n in c["spec"]["names"]["shortNames"]]
    assert len(names) == len(set(names))
    assert not set(names) & BUILTIN_SHORT_NAMES


def _resolves(schema: dict[str, Any], path: str) -> bool:
    node = schema
    for part in re.sub(r"\[[^\]]*\]", "", path).strip(".").split("."):
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
        if node.get("type") == "array":
            node = node["items"]
    return True


@pytest.mark.parametrize("name", sorted(CRDS))
def test_printer_columns_point_at_real_fields(name: str) -> None:
    (version,) = CRDS[name]["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata"):
            continue
        assert _resolves(schema, path), f"{column['name']}: {path} is not in the schema"


def _openapi_validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas are draft-4 shaped (boolean exclusiveMinimum); the
    # x-kubernetes-* keywords are ignored here and exercised by the apiserver.
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_every_example_validates_against_the_generated_schema(path: Path) -> None:
    doc = load_yaml(path)
    crd = next(c for c in CRDS.values() if c["spec"]["names"]["kind"] == doc["kind"])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errors = sorted(_openapi_validator(schema).iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]


def test_the_schema_rejects_what_it_should(tmp_path: Path) -> None:
    """The translation keeps bounds: a fraction above 1 fails the CRD schema too."""
    doc = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    doc["spec"]["split"]["test"] = 1.5
    crd = CRDS["kubeml.io_datasets.yaml"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errors = list(_openapi_validator(schema).iter_errors(doc))
    assert any("1.5" in e.message for e in errors)


def test_cel_rules_guard_what_pydantic_guards() -> None:
    text = {name: yaml.safe_dump(c) for name, c in CRDS.items()}
    assert (
        "has(self.builtin), has(self.s3), has(self.url), has(self.synthetic)"
        in text["kubeml.io_datasets.yaml"]
    )
    assert "self == oldSelf" in text["kubeml.io_modelversions.yaml"]
    assert "self == oldSelf" in text["kubeml.io_trainingruns.yaml"]
    assert "validation + test fractions" in text["kubeml.io_datasets.yaml"]


def test_reference_doc_is_up_to_date() -> None:
    from kubeml import refdoc

    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == refdoc.render(), "run `kubeml docs`"

"""The models read and write manifests losslessly and reject bad ones clearly."""

from __future__ import annotations

import pytest
import yaml

from kubeml.api import KINDS, ManifestError, parse_manifest, validate_update
from tests.support.cases import Case, example_files, invalid_cases, load_yaml, valid_updates

EXAMPLES = example_files()
CASES = invalid_cases()


def test_there_is_an_example_of_every_kind() -> None:
    kinds = {load_yaml(p)["kind"] for p in EXAMPLES}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_round_trips_losslessly(path) -> None:
    doc = load_yaml(path)
    model = parse_manifest(doc)
    wire = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert wire == doc
    # And through YAML text again, to the same model.
    again = parse_manifest(yaml.safe_load(yaml.safe_dump(wire)))
    assert again == model


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_defaults_fill_in_without_changing_what_was_given(path) -> None:
    doc = load_yaml(path)
    full = parse_manifest(doc).to_wire()
    assert parse_manifest(full) == parse_manifest(doc)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_invalid_manifest_is_rejected_naming_the_field(case: Case) -> None:
    if case.update:
        parse_manifest(case.base)  # the original must itself be valid
        with pytest.raises(ManifestError) as err:
            validate_update(case.base, case.manifest)
    else:
        with pytest.raises(ManifestError) as err:
            parse_manifest(case.manifest)
    assert case.field in str(err.value), err.value


@pytest.mark.parametrize(
    ("name", "base", "manifest"), valid_updates(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_allowed_updates_pass(name: str, base: dict, manifest: dict) -> None:
    validate_update(base, manifest)


def test_manifest_errors_list_every_problem() -> None:
    doc = load_yaml(EXAMPLES[0])
    doc["spec"]["split"] = {"test": 7, "seed": -1}
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc)
    fields = [p.split(":")[0] for p in err.value.problems]
    assert "spec.split.test" in fields
    assert "spec.split.seed" in fields


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"apiVersion": "v1", "kind": "Dataset"}, "apiVersion"),
        ({"apiVersion": "kubeml.io/v1alpha1", "kind": "Pipeline"}, "kind"),
    ],
)
def test_wrong_envelope_is_named(doc: dict, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        parse_manifest(doc)

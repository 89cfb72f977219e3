"""The manifest table in tests/cases/invalid.yaml, materialised.

Kept as data so the same cases run against pydantic (unit tests) and the real
apiserver (integration tests), and their verdicts can be compared case by case.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TABLE = ROOT / "tests" / "cases" / "invalid.yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def load_yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def example_files() -> list[Path]:
    nested = ("iris", "retraining")
    return sorted(EXAMPLES.glob("*.yaml")) + [
        p for d in nested for p in sorted(EXAMPLES.glob(f"{d}/*.yaml"))
    ]


@dataclass(frozen=True)
class Case:
    name: str
    base: dict[str, Any]
    manifest: dict[str, Any]
    field: str
    update: bool


def _materialise(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    base = load_yaml(ROOT / entry["base"])
    manifest = merge_patch(base, entry["patch"])
    # Distinct names let the apiserver replay create every case side by side.
    manifest["metadata"]["name"] = entry["name"]
    base = copy.deepcopy(base)
    base["metadata"]["name"] = entry["name"]
    return base, manifest


def invalid_cases() -> list[Case]:
    table = yaml.safe_load(TABLE.read_text())
    out = []
    for entry in table["cases"]:
        base, manifest = _materialise(entry)
        out.append(Case(entry["name"], base, manifest, entry["field"], bool(entry.get("update"))))
    return out


def valid_updates() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    table = yaml.safe_load(TABLE.read_text())
    return [(e["name"], *_materialise(e)) for e in table["valid_updates"]]

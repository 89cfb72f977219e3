"""The layering the design asks for, checked on the source itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kubeml"
LONGEST = 80


def test_decisions_know_nothing_of_kopf_or_the_kubernetes_client() -> None:
    # The same check as `grep -rn "kopf\\|kubernetes" operator/kubeml/reconcile`.
    hits = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted((PACKAGE / "reconcile").glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"kopf|kubernetes", line)
    ]
    assert hits == []


def test_no_function_in_reconcile_or_controllers_is_longer_than_80_lines() -> None:
    long = []
    for layer in ("reconcile", "controllers"):
        for p in sorted((PACKAGE / layer).glob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > LONGEST:
                        long.append(f"{layer}/{p.name}:{node.name} ({lines} lines)")
    assert long == []


def test_only_the_manager_imports_kopf() -> None:
    importers = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import kopf|from kopf)", p.read_text(), re.MULTILINE)
    )
    assert importers == ["manager.py"]

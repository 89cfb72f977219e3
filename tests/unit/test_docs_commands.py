"""Every `kubeml ...` command the README and docs show exists with the options shown,
and the offline ones do what the README says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubeml.cli import main
from tests.support.cases import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `.venv/bin/kubeml ...` or `kubeml ...` at the start of a shell line (after `$ ` or `&& `).
COMMAND = re.compile(
    r"(?:^|&&\s*|\$\s+)(?:\.venv/bin/)?kubeml ((?:local |operator )?[a-z][a-z-]*)(.*)$"
)


def shown_commands() -> list[tuple[str, str, str]]:
    out = []
    for doc in DOCS:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            code = line.split("#", 1)[0]
            for part in code.split("&&"):
                m = COMMAND.search(part.strip())
                if m:
                    out.append((doc.name, m.group(1).strip(), m.group(2).strip()))
    return out


def test_the_docs_show_commands() -> None:
    names = {c for _, c, _ in shown_commands()}
    assert {"local up", "validate", "crds", "health-checks", "promote"} <= names, names


@pytest.mark.parametrize(("doc", "command", "rest"), shown_commands())
def test_every_shown_command_and_option_exists(doc: str, command: str, rest: str) -> None:
    runner = CliRunner()
    help_out = runner.invoke(main, [*command.split(), "--help"])
    assert help_out.exit_code == 0, (doc, command, help_out.output)
    for token in shlex.split(rest.replace("<", "").replace(">", ""), posix=True):
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            assert option in help_out.output, (doc, command, option)


def test_validate_accepts_the_iris_examples_as_the_readme_says() -> None:
    files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "examples" / "iris").glob("*.yaml"))]
    result = CliRunner().invoke(main, ["validate", *[str(ROOT / f) for f in files]])
    assert result.exit_code == 0, result.output


def test_validate_names_the_field_of_a_bad_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "examples" / "iris" / "deployment.yaml")
        .read_text()
        .replace("replicas: 2", "replicas: -1")
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code != 0
    assert "replicas" in result.output


# `kubectl get mldeploy ... -o jsonpath='{.status...}'` as the docs show it: every
# field named exists in the Deployment's status schema (the CRD), so a renamed field
# cannot leave the docs reading nothing.
JSONPATH = re.compile(
    r"kubectl get (?:mldeploy|deployments\.kubeml\.io)\b[^`]*?-o jsonpath='([^']*)'"
)


def test_the_deployment_fields_the_docs_read_exist() -> None:
    import yaml

    crd = yaml.safe_load((ROOT / "crds" / "kubeml.io_deployments.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    shown = [
        path
        for doc in DOCS
        for expr in JSONPATH.findall(doc.read_text())
        for path in re.findall(r"\{\.([a-zA-Z.]+)\}", expr)
    ]
    assert "status.rollout.phase" in shown, shown
    for path in shown:
        node = schema
        for part in path.split("."):
            props = node.get("properties") or {}
            assert part in props, (path, part)
            node = props[part]

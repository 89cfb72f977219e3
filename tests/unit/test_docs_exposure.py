"""The exposure YAML docs/install.md shows is the examples' (which the tests apply)."""

from __future__ import annotations

import pytest

from tests.support.cases import ROOT


@pytest.mark.parametrize("example", ["deployment-gateway.yaml", "deployment-ingress.yaml"])
def test_install_doc_shows_the_example_as_it_is(example: str) -> None:
    lines = (ROOT / "examples" / example).read_text().splitlines()
    manifest = "\n".join(line for line in lines if not line.startswith("#"))
    assert f"```yaml\n{manifest}\n```" in (ROOT / "docs" / "install.md").read_text()

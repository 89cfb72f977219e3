"""`kubeml local images` without building anything: tags, tool check, content hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubeml.settings import Settings
from kubeml_local import images
from tests.support.cases import ROOT


def test_tags_follow_the_chart_and_the_operator_default() -> None:
    assert images.repo_root() == ROOT
    assert images.tag("runtime", ROOT) == Settings.runtime_image
    assert images.tag("operator", ROOT) == f"ghcr.io/kubeml/operator:{images.version(ROOT)}"


def test_missing_tools_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(images.ImagesError, match="apt-get install buildah mmdebstrap"):
        images.check_tools()


def fake_root(tmp_path: Path) -> Path:
    (tmp_path / "images" / "runtime").mkdir(parents=True)
    (tmp_path / "images" / "runtime" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "README.md").write_text("readme\n")
    (tmp_path / "operator" / "kubeml").mkdir(parents=True)
    (tmp_path / "operator" / "kubeml" / "cli.py").write_text("print(1)\n")
    return tmp_path


def test_content_hash_follows_what_enters_the_build(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    first = images.content_hash(root, "runtime", "base1")
    # What .dockerignore keeps out does not count ...
    cache = root / "operator" / "kubeml" / "__pycache__"
    cache.mkdir()
    (cache / "cli.cpython-311.pyc").write_bytes(b"\0")
    (root / "tests").mkdir()
    (root / "tests" / "x.py").write_text("")
    assert images.content_hash(root, "runtime", "base1") == first
    # ... a source, the Dockerfile or another base does.
    assert images.content_hash(root, "runtime", "base2") != first
    (root / "operator" / "kubeml" / "cli.py").write_text("print(2)\n")
    second = images.content_hash(root, "runtime", "base1")
    assert second != first
    (root / "images" / "runtime" / "Dockerfile").write_text("FROM y\n")
    assert images.content_hash(root, "runtime", "base1") != second


def test_wheelhouse_follows_the_dependencies() -> None:
    reqs = images.requirements(ROOT)
    # The build backend too: the image build resolves offline from the wheelhouse.
    assert any(r.startswith("setuptools") for r in reqs)
    assert any(r.startswith("kopf") for r in reqs)

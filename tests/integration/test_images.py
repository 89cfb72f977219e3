"""The operator and runtime images, built here without Docker (``kubeml local images``).

Builds them (or finds them cached: the first build on a fresh machine takes minutes,
later ones seconds) and runs the runtime the way pods do: as uid 65532, through buildah's
chroot isolation. No cluster is needed. Without buildah or mmdebstrap this fails, with
the install command, rather than skipping: CI installs both, and a skip would hide that
the images no longer build.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from kubeml.settings import Settings
from kubeml_local import images

pytestmark = pytest.mark.integration


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def built() -> list[images.Result]:
    try:
        return images.build_all(_echo)
    except images.ImagesError as err:
        message = str(err)  # failed outside the except block: one message, no traceback
    pytest.fail(message, pytrace=False)


def _container(ref: str) -> Iterator[str]:
    name = subprocess.run(
        ["buildah", "from", "--quiet", ref], text=True, capture_output=True, check=True
    ).stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


@pytest.fixture
def runtime(built: list[images.Result]) -> Iterator[str]:
    yield from _container(images.tag("runtime", images.repo_root()))


@pytest.fixture
def operator(built: list[images.Result]) -> Iterator[str]:
    yield from _container(images.tag("operator", images.repo_root()))


def run(container: str, *argv: str, user: str = "65532:65532") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "run", "--isolation", "chroot", "--user", user, container, "--", *argv],
        text=True,
        capture_output=True,
        timeout=120,
    )


def test_both_images_exist_with_their_content_label(built: list[images.Result]) -> None:
    root = images.repo_root()
    base = images.inspect(images.BASE_TAG)
    assert base is not None
    for name in images.NAMES:
        info = images.inspect(images.tag(name, root))
        assert info is not None, f"{images.tag(name, root)} missing"
        expected = images.content_hash(root, name, images.image_id(base))
        assert images.labels(info)[images.CONTENT_LABEL] == expected


def test_tags_are_what_the_operator_and_chart_run(built: list[images.Result]) -> None:
    root = images.repo_root()
    assert images.tag("runtime", root) == Settings.runtime_image
    assert {r.tag for r in built} >= {images.tag(n, root) for n in images.NAMES}


def test_second_build_is_cached(built: list[images.Result]) -> None:
    again = images.build_all(_echo)
    assert [(r.name, r.cached) for r in again] == [
        ("base", True),
        ("operator", True),
        ("runtime", True),
    ]
    assert {r.tag: r.content_hash for r in again} == {r.tag: r.content_hash for r in built}


def test_runtime_runs_as_the_pods_user(runtime: str) -> None:
    version = run(runtime, "kubeml", "--version")
    assert version.returncode == 0, version.stderr
    assert images.version(images.repo_root()) in version.stdout
    assert run(runtime, "id", "-u").stdout.strip() == "65532"
    # What the runtime's pods import: training, data, S3 and the API client.
    imports = run(runtime, "python", "-c", "import sklearn, pyarrow, boto3, kubernetes, kubeml")
    assert imports.returncode == 0, imports.stderr


def test_runtime_image_user_is_the_pods_user(runtime: str) -> None:
    # Without --user: the image's own USER, what `docker run` would use.
    done = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", runtime, "--", "id", "-u"],
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.stdout.strip() == "65532", done.stderr


def test_operator_image_runs_the_operator(operator: str) -> None:
    done = run(operator, "kubeml", "operator", "run", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: kubeml operator run" in done.stdout

"""The `kubeml` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
@click.version_option(package_name="kubeml")
def main() -> None:
    """KubeML: the MLOps lifecycle as Kubernetes resources."""


@main.command()
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("crds"),
    show_default=True,
    help="Directory to write the CRD YAML files into.",
)
@click.option("--check", is_flag=True, help="Exit 1 if the files differ instead of writing.")
def crds(out: Path, check: bool) -> None:
    """Generate the CustomResourceDefinitions from the API models."""
    from . import crdgen

    rendered = crdgen.render_all()
    if check:
        stale = [n for n, text in rendered.items() if _read(out / n) != text]
        if stale:
            click.echo(f"out of date in {out}: {', '.join(stale)} (run `kubeml crds`)", err=True)
            sys.exit(1)
        click.echo(f"{len(rendered)} CRDs in {out} are up to date")
        return
    for path in crdgen.write(out):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Validate KubeML manifests offline (the same checks as admission)."""
    import yaml

    from .api import ManifestError, parse_manifest

    failed = 0
    for path in files:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if not doc:
                continue
            name = (doc.get("metadata") or {}).get("name", f"document {i}")
            try:
                parse_manifest(doc)
            except ManifestError as err:
                failed += 1
                for problem in err.problems:
                    click.echo(f"{path}: {doc.get('kind')}/{name}: {problem}", err=True)
            else:
                click.echo(f"{path}: {doc.get('kind')}/{name}: valid")
    sys.exit(1 if failed else 0)


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/reference.md"),
    show_default=True,
)
def docs(out: Path) -> None:
    """Generate the resource reference from the API models."""
    from . import refdoc

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(refdoc.render())
    click.echo(f"wrote {out}")


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _register_optional_groups() -> None:
    """Command groups that live in their own packages."""
    try:
        from .local.cli import local
    except ImportError:
        return
    main.add_command(local)


_register_optional_groups()

"""The `kubeml` command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import click

# Options and command shapes several commands share.
namespace_option = click.option(
    "-n", "--namespace", default=None, help="Namespace (default: the kubeconfig context's)."
)
check_option = click.option(
    "--check", is_flag=True, help="Exit 1 if the files differ instead of writing."
)


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
@check_option
def crds(out: Path, check: bool) -> None:
    """Generate the CustomResourceDefinitions from the API models."""
    from . import crdgen

    rendered = {out / name: text for name, text in crdgen.render_all().items()}
    _write_or_check(rendered, check, "crds")


@main.command("health-checks")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("charts/kubeml/health"),
    show_default=True,
    help="Directory to write the Lua scripts into.",
)
@click.option(
    "--argocd-cm",
    "argocd_cm",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("examples/gitops/argocd/argocd-cm-health.yaml"),
    show_default=True,
    help="The same scripts as an argocd-cm patch.",
)
@check_option
def health_checks(out: Path, argocd_cm: Path, check: bool) -> None:
    """Generate the Argo CD health checks (Lua) from the health rules."""
    from . import health

    rendered = {out / name: text for name, text in health.render_all().items()}
    rendered[argocd_cm] = health.render_argocd_cm()
    _write_or_check(rendered, check, "health-checks")


@main.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("charts/kubeml/dashboards/kubeml.json"),
    show_default=True,
    help="Where to write the dashboard's JSON (the chart ships this file).",
)
@click.option("--check", is_flag=True, help="Exit 1 if the file differs instead of writing.")
def dashboard(out: Path, check: bool) -> None:
    """Generate the Grafana dashboard (needs the dev extra: grafana-foundation-sdk)."""
    try:
        from . import dashboard as board
    except ImportError as err:
        raise click.ClickException(
            f"{err}: the dashboard is built with grafana-foundation-sdk; pip install -e '.[dev]'"
        ) from err
    _write_or_check({out: board.render()}, check, "dashboard")


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


@main.group()
def operator() -> None:
    """The KubeML operator."""


@operator.command("run")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only these namespaces (repeatable); all when omitted.",
)
@click.option(
    "--prometheus-url",
    default=None,
    help="Judge rollout steps on Prometheus' HTTP API at this URL (KUBEML_PROMETHEUS_URL); "
    "default: each server pod's /metrics.",
)
def operator_run(namespaces: tuple[str, ...], prometheus_url: str | None) -> None:
    """Run the operator (settings from KUBEML_* and AWS_* environment variables)."""
    import dataclasses
    import logging

    from . import listening, manager
    from .settings import Settings

    # kopf installs its own log handler; its per-handler success lines are noise.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per probe
    settings = Settings.from_env()
    if namespaces:
        settings = dataclasses.replace(settings, namespaces=namespaces)
    if prometheus_url is not None:
        settings = dataclasses.replace(settings, prometheus_url=prometheus_url.strip().rstrip("/"))
    try:
        listening.preflight(settings)
    except listening.PortTaken as err:
        raise click.ClickException(str(err)) from err
    manager.run(settings)


def runtime_command(f: Callable[[tuple[str, ...]], None]) -> click.Command:
    """A command that hands all its arguments, unparsed, to a runtime entry point."""
    f = click.argument("args", nargs=-1, type=click.UNPROCESSED)(f)
    return main.command(context_settings={"ignore_unknown_options": True})(f)


@runtime_command
def prepare(args: tuple[str, ...]) -> None:
    """Prepare a dataset version (runs inside the preparation Job)."""
    from .runtime.prepare import main as prepare_main

    sys.exit(prepare_main(list(args)))


@runtime_command
def train(args: tuple[str, ...]) -> None:
    """Train, tune and measure a model (runs inside the training Job)."""
    from .runtime.train import main as train_main

    sys.exit(train_main(list(args)))


@runtime_command
def serve(args: tuple[str, ...]) -> None:
    """Serve a ModelVersion over HTTP (runs inside the server pods)."""
    from .runtime.serve import main as serve_main

    sys.exit(serve_main(list(args)))


@main.command()
@click.argument("model")
@click.argument("version", type=int)
@click.option("--alias", default="champion", show_default=True, help="Alias to move.")
@namespace_option
def promote(model: str, version: int, alias: str, namespace: str | None) -> None:
    """Point ALIAS at VERSION of MODEL (the operator moves it from the old holder)."""
    from .k8s import aliases, client

    ns = namespace or client.current_namespace()
    try:
        done = aliases.claim(client.api_client(), ns, model, version, alias)
    except aliases.ClaimError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{alias} -> {done.name}" + ("" if done.changed else " (already)"))


@main.command()
@click.argument("model")
@namespace_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format, as kubectl's -o.",
)
def runs(model: str, namespace: str | None, output: str) -> None:
    """Compare the TrainingRuns of MODEL: metrics, parameters, data version, duration,
    gates and version produced, best key metric first."""
    import json

    import yaml
    from kubernetes.client.exceptions import ApiException

    from . import experiments
    from .k8s import client, objects

    ns = namespace or client.current_namespace()
    try:
        found = objects.list_(client.api_client(), "kubeml.io/v1alpha1", "TrainingRun", ns)
    except ApiException as err:
        raise click.ClickException(
            f"cannot list trainingruns in namespace {ns}: {err.status} {err.reason}"
        ) from err
    rows = experiments.compare(found, model)
    if output == "json":
        click.echo(json.dumps([r.wire() for r in rows], indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump([r.wire() for r in rows], sort_keys=False), nl=False)
    elif not rows:
        click.echo(f"No trainingruns of model {model} in namespace {ns}.", err=True)
    else:
        click.echo(experiments.table(rows))


main.add_command(runs, "experiments")


@main.command()
@click.argument("ref", metavar="KIND/NAME")
@namespace_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["tree", "json"]),
    default="tree",
    show_default=True,
    help="A tree with each step's key facts, or the same as JSON.",
)
def lineage(ref: str, namespace: str | None, output: str) -> None:
    """The chain dataset version -> run -> model version -> deployments through KIND/NAME
    (a deployment, modelversion, trainingrun or dataset), e.g. deployment/iris."""
    import json

    from kubernetes.client.exceptions import ApiException

    from . import lineage as lineage_
    from .k8s import client, objects

    try:
        kind, name = lineage_.parse_ref(ref)
    except lineage_.LineageError as err:
        raise click.BadParameter(str(err), param_hint="KIND/NAME") from err
    ns = namespace or client.current_namespace()
    api = client.api_client()
    found: dict[str, list[dict[str, object]]] = {}
    for kind_, plural in (
        ("Dataset", "datasets"),
        ("TrainingRun", "trainingruns"),
        ("ModelVersion", "modelversions"),
        ("Deployment", "deployments"),
    ):
        try:
            found[plural] = objects.list_(api, "kubeml.io/v1alpha1", kind_, ns)
        except ApiException as err:
            raise click.ClickException(
                f"cannot list {plural}.kubeml.io in namespace {ns}: {err.status} {err.reason}"
            ) from err
    try:
        result = lineage_.build(
            kind,
            name,
            datasets=found["datasets"],
            runs=found["trainingruns"],
            versions=found["modelversions"],
            deployments=found["deployments"],
        )
    except lineage_.LineageError as err:
        raise click.ClickException(f"{err} in namespace {ns}") from err
    if output == "json":
        click.echo(json.dumps(result.wire(), indent=2))
    else:
        click.echo(lineage_.render(result))


@main.command()
@click.argument("version")
@namespace_option
@click.option(
    "-o",
    "--output",
    "out",
    default=None,
    help="File to write ('-' for standard output; default: VERSION.html).",
)
def report(version: str, namespace: str | None, out: str | None) -> None:
    """Fetch the model report of VERSION (a ModelVersion; trainingrun/NAME for a run whose
    gates failed) from S3, its sha256 checked: one HTML page that opens anywhere.
    S3 settings and credentials come from the environment (AWS_*, KUBEML_BUCKET)."""
    from .client import Client, KubeMLError

    try:
        data = Client(namespace).report(version)
    except KubeMLError as err:
        raise click.ClickException(str(err)) from err
    if out == "-":
        sys.stdout.buffer.write(data)
        return
    path = Path(out or f"{version.rpartition('/')[2]}.html")
    path.write_bytes(data)
    click.echo(f"wrote {path} ({len(data)} bytes, sha256 verified)")


def _write_or_check(rendered: dict[Path, str], check: bool, command: str) -> None:
    """Write generated files, or with --check exit 1 naming the stale ones."""
    if check:
        stale = [str(p) for p, text in rendered.items() if _read(p) != text]
        if stale:
            click.echo(f"out of date: {', '.join(stale)} (run `kubeml {command}`)", err=True)
            sys.exit(1)
        click.echo(f"{len(rendered)} generated files are up to date")
        return
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        click.echo(f"wrote {path}")


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _add_plugin_commands() -> None:
    """Commands other distributions add under ``kubeml`` (``kubeml-local`` adds ``local``
    and ``demo``). An entry point keeps the dependency one way: they import kubeml, never
    the reverse, and the operator and runtime images, which lack them, lack the commands."""
    for entry in entry_points(group="kubeml.commands"):
        command = entry.load()
        if isinstance(command, click.Command):
            main.add_command(command, entry.name)


_add_plugin_commands()


if __name__ == "__main__":
    main()

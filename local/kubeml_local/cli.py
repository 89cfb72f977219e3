"""``kubeml local ...``: run the local control plane (see ``kubeml_local.cluster``).

Pod logs: ``kubeml local logs POD`` reads the per-container files the node agent writes at
``<state-dir>/pods/<namespace>/<pod>/<container>.log`` (the agent's documented layout).
Component logs are in ``<state-dir>/logs/<component>.log``.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import click
from kubernetes.client.rest import ApiException

from kubeml_local import bootstrap, cluster, install
from kubeml_local.config import S3_OBJECT_NAME, read_config
from kubeml_local.layout import Layout

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cluster state directory (default: $KUBEML_HOME or ~/.kubeml/local).",
)


def _echo(line: str) -> None:
    click.echo(line, err=True)  # progress on stderr keeps stdout clean for `env`


@click.group("local")
def local() -> None:
    """A real single-node Kubernetes control plane and S3 server on loopback."""


@local.command()
@state_dir_option
@click.option("--node-name", default=None, help="Name of the Node the agent registers.")
@click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory with etcd, kube-apiserver, kube-controller-manager, kubectl.",
)
@click.option(
    "--crds-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="CRD manifests to install (default: crds/ of the source checkout).",
)
@click.option("--no-agent", is_flag=True, help="Do not start the node agent.")
@click.option(
    "--no-operator",
    is_flag=True,
    help="A bare cluster: do not install KubeML's chart (run `kubeml operator run` yourself).",
)
@click.option(
    "--images/--no-images",
    default=None,
    help="Run every pod inside its container image (built here with `kubeml local images`) "
    "instead of on the host's Python; an image not built is ErrImagePull. Default: as the "
    "cluster last ran (off for a new one).",
)
@click.option("--timeout", type=float, default=cluster.UP_TIMEOUT_S, show_default=True)
def up(
    state_dir: Path | None,
    node_name: str | None,
    bin_dir: Path | None,
    crds_dir: Path | None,
    no_agent: bool,
    no_operator: bool,
    images: bool | None,
    timeout: float,
) -> None:
    """Start the cluster with KubeML installed (or show it, if it is already running)."""
    t0 = time.monotonic()
    try:
        conn = cluster.up(
            state_dir,
            node_name=node_name,
            bin_dir=bin_dir,
            crds_dir=crds_dir,
            with_agent=not no_agent,
            images=images,
            timeout=timeout,
            echo=_echo,
        )
        if not (no_operator or no_agent):
            install.install(conn, echo=_echo)
    except KeyboardInterrupt:
        _echo("interrupted")
        sys.exit(130)
    except Exception as err:
        raise click.ClickException(str(err)) from err
    _echo(f"up took {time.monotonic() - t0:.1f}s")
    if not (no_operator or no_agent):
        _echo('next: eval "$(kubeml local env)"; kubectl apply -f examples/iris/')


@local.command()
@state_dir_option
@click.argument("name")
@click.option(
    "--restricted/--no-restricted",
    default=True,
    show_default=True,
    help='Enforce Pod Security "restricted" (every pod KubeML creates passes it).',
)
def namespace(state_dir: Path | None, name: str, restricted: bool) -> None:
    """Make namespace NAME ready for KubeML workloads: create it, add the S3 Secret."""
    try:
        conn = cluster.connection(state_dir)
        bootstrap.apply_workload_namespace(
            bootstrap.api_client(conn.kubeconfig), name, conn.s3, restricted=restricted
        )
    except cluster.ClusterError as err:
        raise click.ClickException(str(err)) from err
    except ApiException as err:
        raise click.ClickException(f"namespace {name}: {bootstrap.api_error(err)}") from err
    click.echo(f"namespace {name} ready for KubeML workloads (Secret {S3_OBJECT_NAME})")


@local.command()
@state_dir_option
@click.option("--timeout", type=float, default=cluster.DOWN_TIMEOUT_S, show_default=True)
@click.option("--purge", is_flag=True, help="Also delete the state dir (data, keys, logs).")
def down(state_dir: Path | None, timeout: float, purge: bool) -> None:
    """Stop every process of the cluster (its data stays in the state dir)."""
    try:
        cluster.down(state_dir, timeout=timeout, echo=_echo)
    except cluster.ClusterError as err:
        raise click.ClickException(str(err)) from err
    if purge:
        root = Layout.at(state_dir).root
        shutil.rmtree(root, ignore_errors=True)
        _echo(f"removed {root}")


@local.command()
@state_dir_option
def status(state_dir: Path | None) -> None:
    """Show the phase and processes; exit status 0 only when healthy."""
    report = cluster.status(state_dir)
    for line in report.lines():
        click.echo(line)
    if report.healthy:
        conn = cluster.connection(state_dir)
        click.echo(f"apiserver:  {conn.apiserver}")
        click.echo(f"S3:         {conn.s3.endpoint}")
        click.echo(f"kubeconfig: {conn.kubeconfig}")
    sys.exit(0 if report.healthy else 1)


@local.command()
@state_dir_option
def env(state_dir: Path | None) -> None:
    """Print shell exports: eval "$(kubeml local env)"."""
    try:
        conn = cluster.connection(state_dir)
    except cluster.ClusterError as err:
        raise click.ClickException(str(err)) from err
    for key, value in conn.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")
    cfg = read_config(Layout.at(conn.state_dir).cluster_json)
    if cfg is not None:
        # The kubectl built with the control plane (matching its version).
        click.echo(f'export PATH={shlex.quote(cfg.bin_dir)}:"$PATH"')


@local.command()
@state_dir_option
@click.argument("pod")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-c", "--container", default=None, help="Needed when the pod has several.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
def logs(
    state_dir: Path | None, pod: str, namespace: str, container: str | None, follow: bool
) -> None:
    """Print a container's log from <state-dir>/pods/<namespace>/<pod>/<container>.log."""
    layout = Layout.at(state_dir)
    pod_dir = layout.pods / namespace / pod
    if container is None:
        found = sorted(p.stem for p in pod_dir.glob("*.log"))
        if not found:
            raise click.ClickException(f"no logs for pod {namespace}/{pod} in {pod_dir}")
        if len(found) > 1:
            raise click.ClickException(
                f"pod {namespace}/{pod} has several containers, choose one with -c: "
                + ", ".join(found)
            )
        container = found[0]
    path = layout.container_log(namespace, pod, container)
    if not path.exists():
        raise click.ClickException(f"no log file {path}")
    _cat(path, follow)


def _cat(path: Path, follow: bool) -> None:
    out = sys.stdout.buffer
    with path.open("rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow:
                return
            try:
                time.sleep(0.2)  # tail -f: wait for the agent to append more
            except KeyboardInterrupt:
                return


@local.command()
@click.option(
    "--rebuild", is_flag=True, help="Make the base, the wheelhouse and both images even if cached."
)
def images(rebuild: bool) -> None:
    """Build the operator and runtime images here, without Docker (buildah, mmdebstrap).

    A Debian base from mmdebstrap stands in for the official Python image; each image is
    tagged as the chart references it and rebuilt only when what goes into it changed.
    """
    from kubeml_local import images as images_module

    try:
        results = images_module.build_all(_echo, rebuild=rebuild)
    except images_module.ImagesError as err:
        raise click.ClickException(str(err)) from err
    for result in results:
        click.echo(result.line())


@click.command("demo")
@state_dir_option
def demo(state_dir: Path | None) -> None:
    """The whole lifecycle on the local control plane: data -> model -> predictions."""
    from kubeml_local import demo as demo_module

    demo_module.run(state_dir, echo=lambda line: click.echo(line))

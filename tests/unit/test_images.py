"""The Dockerfiles under images/ and what the operator runs in them.

Parsed, not built (tests/integration/test_images.py builds them with buildah): basic
invariants (multi-stage, pinned bases, non-root, no build tools or health checks in the
final stage). And every
command the operator or the chart puts in a pod spec must be an entry point of the
installed package, so the images and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.metadata
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from kubeml.cli import main
from kubeml.reconcile import dataset as ds
from kubeml.reconcile import deployment as dep
from kubeml.reconcile import trainingrun as tr
from kubeml.settings import Settings
from tests.support.cases import ROOT, load_yaml
from tests.support.outcomes import Seen

IMAGES = {"operator": ROOT / "images" / "operator", "runtime": ROOT / "images" / "runtime"}
NOW = "2026-11-26T12:00:00Z"
SETTINGS = Settings(
    bucket="kubeml",
    s3_endpoint="http://minio.kubeml-system.svc:9000",
    runtime_image="ghcr.io/kubeml/runtime:0.1.0",
)


# -- a small Dockerfile parser ------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    directives: dict[str, str]
    stages: list[Stage]
    # ARGs declared before the first FROM, with their defaults: only these reach FROM lines.
    global_args: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Instructions per stage, continuation lines joined and comments dropped."""
    directives: dict[str, str] = {}
    logical: list[str] = []
    current = ""
    in_header = True
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if in_header and (m := re.match(r"#\s*(\w+)\s*=\s*(\S+)", line)):
            directives[m[1].lower()] = m[2]
            continue
        if line.startswith("#") or not line:
            in_header = in_header and not line.startswith("#") and not line
            continue
        in_header = False
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, f"{path}: dangling line continuation"
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
            continue
        if keyword == "ARG" and not stages:
            key, _, default = args.strip().partition("=")
            global_args[key] = default
            continue
        assert stages, f"{path}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return Dockerfile(directives, stages, global_args)


def expand(text: str, args: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced by the ARG defaults, as a build without
    --build-arg sees them."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m[1]], text)


DOCKERFILES = {name: parse(d / "Dockerfile") for name, d in IMAGES.items()}
PINNED_BASE = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+(-[\w.-]+)?(@sha256:[0-9a-f]{64})?$")


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_is_multi_stage_with_pinned_bases(name: str) -> None:
    df = DOCKERFILES[name]
    assert len(df.stages) >= 2, "a build stage and a final stage"
    assert df.stages[0].name == "build"
    # Every stage's base is the BASE_IMAGE build argument (so a build without registry
    # access, `make images-local`, can pass a local Debian base), pinned by its default.
    assert [s.base for s in df.stages] == ["${BASE_IMAGE}"] * len(df.stages)
    for stage in df.stages:
        base = expand(stage.base, df.global_args)
        assert PINNED_BASE.match(base), f"{base} is not pinned to an exact version"
        assert "latest" not in base
    # The same base in both stages: wheels built for the interpreter that runs them.
    assert len({s.base for s in df.stages}) == 1
    # The frontend too: RUN --mount needs dockerfile syntax >= 1.2.
    assert re.fullmatch(r"docker/dockerfile:1\.\d+", df.directives.get("syntax", ""))


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_final_stage_runs_as_numeric_non_root(name: str) -> None:
    users = DOCKERFILES[name].final.all("USER")
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert int(uid) == 65532  # what the chart and the operator's pods run as


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_final_stage_installs_wheels_only(name: str) -> None:
    final = DOCKERFILES[name].final
    runs = " ".join(final.all("RUN"))
    # Wheels come from the build stage through a bind mount (never a layer) ...
    assert "--mount=type=bind,from=build" in runs
    assert "pip install --no-index" in runs
    # ... and nothing is compiled or fetched from package managers here.
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "pip wheel", "git "):
        assert tool not in runs, f"{tool!r} in the final stage"
    assert not any("--from=build /src" in c for c in final.all("COPY"))
    assert len(final.all("RUN")) == 1, "one RUN layer in the final stage"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_no_docker_healthcheck(name: str) -> None:
    # Kubernetes ignores HEALTHCHECK; probes live in the pod specs (the operator's
    # /healthz and the server's /v2/health/*), and Jobs have nothing to probe.
    for stage in DOCKERFILES[name].stages:
        assert not stage.all("HEALTHCHECK")


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"{args} must be the exec (JSON) form"
    return [str(v) for v in value]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_entrypoint_is_the_console_script(name: str) -> None:
    final = DOCKERFILES[name].final
    assert exec_form(final.all("ENTRYPOINT")[-1]) == ["kubeml"]
    default = exec_form(final.all("CMD")[-1])
    if name == "operator":
        assert default == ["operator", "run"]
    resolve(["kubeml", *default])


def env_of(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def test_runtime_image_runs_one_blas_thread_per_process() -> None:
    env = env_of(DOCKERFILES["runtime"].final)
    assert env["OMP_NUM_THREADS"] == "1" and env["OPENBLAS_NUM_THREADS"] == "1"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_read_only_root_filesystem_is_enough(name: str) -> None:
    env = env_of(DOCKERFILES[name].final)
    assert env["HOME"] == "/tmp"  # the chart mounts an emptyDir there
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "compileall" in " ".join(DOCKERFILES[name].final.all("RUN"))


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def in_context(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last match wins)."""
    from fnmatch import fnmatch

    included = True
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pat) or fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            included = negate
    return included


def test_dockerignore_admits_exactly_what_the_builds_copy() -> None:
    assert dockerignore_patterns()[0] == "*", "an allowlist: everything else stays out"
    for df in DOCKERFILES.values():
        for stage in df.stages:
            for args in stage.all("COPY"):
                if args.startswith("--from"):
                    continue
                for source in args.split()[:-1]:
                    assert in_context(source.rstrip("/")), f"COPY {source} is ignored"
    # pyproject names README.md as the long description: the build needs it.
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"] == (
        "README.md"
    )
    for secret in (".venv", ".git", "tests/unit/test_images.py", ".kubeml", "charts"):
        assert not in_context(secret), f"{secret} would enter the build context"
    assert not in_context("operator/kubeml/__pycache__/cli.cpython-311.pyc")
    assert in_context("operator/kubeml/cli.py")


# -- the commands in pod specs are entry points of the package ------------------------------


def resolve(argv: list[str]) -> click.Command:
    """The click command `argv` runs, as the image's PATH would resolve it."""
    assert argv[0] == "kubeml", argv
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubeml"] == "kubeml.cli:main"
    installed = importlib.metadata.entry_points(group="console_scripts", name="kubeml")
    assert [ep.value for ep in installed] == ["kubeml.cli:main"], "pip install -e . again"
    command: click.Command = main
    ctx = click.Context(main)
    for token in argv[1:]:
        if not isinstance(command, click.Group) or token.startswith("-"):
            break
        sub = command.get_command(ctx, token)
        assert sub is not None, f"`{' '.join(argv)}`: no subcommand {token!r} in kubeml"
        command = sub
    assert not isinstance(command, click.Group) or argv[1:] == ["--help"], (
        f"`{' '.join(argv)}` stops at a group"
    )
    return command


def pod_specs_from_the_operator() -> dict[str, dict[str, Any]]:
    """Every kind of pod the reconcilers build, from the examples."""
    out: dict[str, dict[str, Any]] = {}

    dataset = load_yaml(ROOT / "examples" / "iris" / "dataset.yaml")
    dataset["metadata"].update(namespace="ml", uid="ds-uid", generation=1)
    target = ds.target(dataset, datetime(2026, 11, 26, tzinfo=UTC))
    job = Seen(ds.decide(dataset, target, None, None, SETTINGS, now=NOW)).job
    assert job is not None
    out["prepare Job"] = job["spec"]["template"]["spec"]

    run = load_yaml(ROOT / "examples" / "iris" / "trainingrun.yaml")
    run["metadata"].update(namespace="ml", uid="run-uid", generation=1)
    ready = {"type": "Ready", "status": "True", "reason": "Prepared", "message": ""}
    ready_dataset = {
        "metadata": {"name": "iris"},
        "status": {"version": "d" * 64, "conditions": [{**ready, "lastTransitionTime": NOW}]},
    }
    decision = Seen(
        tr.decide(
            run,
            dataset=ready_dataset,
            job=None,
            result=None,
            versions=[],
            settings=SETTINGS,
            now=NOW,
        )
    )
    assert decision.job is not None
    out["train Job"] = decision.job["spec"]["template"]["spec"]

    def version(n: int, aliases: list[str]) -> dict[str, Any]:
        mv = load_yaml(ROOT / "examples" / "modelversion.yaml")
        mv["metadata"].update(name=f"churn-classifier-v{n}", namespace="ml")
        mv["spec"]["artifact"]["uri"] = mv["spec"]["artifact"]["uri"].replace("/default/", "/ml/")
        mv["spec"].update(model="churn-classifier", version=n, aliases=aliases)
        mv["status"] = {
            "conditions": [
                {**ready, "reason": "Verified", "lastTransitionTime": NOW},
            ]
        }
        return mv

    canary = load_yaml(ROOT / "examples" / "deployment-canary.yaml")
    canary["metadata"].update(namespace="ml", uid="dep-uid", generation=1)
    view = dep.DeploymentView(
        copy.deepcopy(canary),
        [version(3, []), version(4, ["challenger"])],
        {},
        prometheus_operator=True,
    )
    served = dep.decide(view, SETTINGS, now=NOW)
    for obj in served.apply:
        if obj["kind"] == "Deployment":
            out[f"server {obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
    assert any(k.endswith("-canary") for k in out), "the canary track was not built"
    return out


def test_every_operator_pod_command_is_a_package_entry_point() -> None:
    specs = pod_specs_from_the_operator()
    assert {"prepare Job", "train Job"} <= set(specs)
    seen = set()
    for label, spec in specs.items():
        for c in spec.get("initContainers", []) + spec["containers"]:
            argv = [*c.get("command", []), *c.get("args", [])]
            assert argv, f"{label}: no command (the local agent and readers need one)"
            resolve(argv)
            seen.add(" ".join(argv[:2]))
            # The image the command runs in is the runtime image built from images/runtime.
            assert c["image"] == SETTINGS.runtime_image
    assert seen == {"kubeml prepare", "kubeml train", "kubeml serve"}


def chart_commands() -> dict[str, list[str]]:
    """`command:` of every container in the chart's templates (template text, no helm)."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "charts" / "kubeml" / "templates").rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)command:(.*)$", line)
            if not m:
                continue
            if m[2].strip():
                argv = yaml.safe_load(m[2])
            else:  # block list: "- item" lines, a literal block for `python -c`
                block = []
                for nxt in lines[i + 1 :]:
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= len(m[1]):
                        break
                    block.append(nxt)
                argv = yaml.safe_load("\n".join(block))
            out[f"{path.name}:{i + 1}"] = [str(a) for a in argv]
    return out


@functools.cache
def runtime_modules() -> frozenset[str]:
    """Top-level modules the runtime image has: the standard library, kubeml and what
    `pip install kubeml` pulls in (required dependencies, transitively; no extras)."""
    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    wanted, todo = set(), ["kubeml"]
    while todo:
        dist = todo.pop()
        for text in importlib.metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if norm(req.name) not in wanted:
                wanted.add(norm(req.name))
                todo.append(req.name)
    owners = importlib.metadata.packages_distributions()
    third_party = {m for m, dists in owners.items() if any(norm(d) in wanted for d in dists)}
    return frozenset(sys.stdlib_module_names | third_party | {"kubeml"})


def test_every_chart_command_exists_in_the_images() -> None:
    commands = chart_commands()
    assert ["kubeml", "operator", "run"] in commands.values()
    for where, argv in commands.items():
        if argv[0] == "kubeml":
            resolve(argv)
        elif argv[0] == "python":
            # Inline scripts of hook pods: they must compile, and what they import
            # must be installed with the package (the runtime image has nothing else).
            assert argv[1] == "-c", where
            tree = ast.parse(argv[2], filename=where)
            modules = {
                alias.name.split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.Import)
                for alias in node.names
            } | {
                str(node.module).split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
            }
            for module in modules:
                assert module in runtime_modules(), f"{where}: {module} is not in the image"
        elif argv[0] == "minio":
            continue  # the MinIO image's own binary
        else:
            pytest.fail(f"{where}: unexpected command {argv}")

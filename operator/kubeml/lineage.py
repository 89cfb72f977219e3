"""Where a model came from and where it serves (`kubeml lineage KIND/NAME`).

Pure: the namespace's Datasets, TrainingRuns, ModelVersions and Deployments in, a tree
out, rooted at dataset versions: dataset version -> runs trained on it -> the version
each produced -> the Deployments serving it. Every link is read from the objects
themselves (a version's spec.lineage, a run's status.datasetVersion and
status.modelVersion, a Deployment's served tracks), so it needs nothing but read
access to the four kinds (the `view` role).

Which part of the graph is shown depends on where one starts:
- a Deployment: the versions it serves, back to their runs and data; only that
  Deployment at the end;
- a ModelVersion or a TrainingRun: back to the data, forward to every Deployment
  serving the version;
- a Dataset: forward from each of its versions to every run trained on it, their
  versions and the Deployments serving those.
An object a link names that no longer exists is shown as missing, not dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .experiments import RunRow
from .experiments import row as run_row

Obj = Mapping[str, Any]

# What `kubeml lineage` accepts before the slash: kubectl's names and short names.
KINDS: dict[str, str] = {}
for _kind, _names in {
    "Dataset": ("dataset", "datasets", "dset", "kmlds"),
    "TrainingRun": ("trainingrun", "trainingruns", "trun", "kmltr"),
    "ModelVersion": ("modelversion", "modelversions", "mv", "kmlmv"),
    "Deployment": ("deployment", "deployments", "mldeploy", "kmldeploy"),
}.items():
    KINDS.update(dict.fromkeys(_names, _kind))


class LineageError(ValueError):
    pass


def parse_ref(ref: str) -> tuple[str, str]:
    """`deployment/iris` -> ("Deployment", "iris")."""
    kind, sep, name = ref.partition("/")
    if not sep or not name or "/" in name:
        raise LineageError(f"expected KIND/NAME (e.g. deployment/iris), got {ref!r}")
    found = KINDS.get(kind.lower().removesuffix(".kubeml.io"))
    if found is None:
        raise LineageError(
            f"unknown kind {kind!r}: one of dataset, trainingrun, modelversion, deployment"
        )
    return found, name


@dataclass
class Serving:
    """A Deployment serving a version, on one track."""

    name: str
    track: str  # stable or canary
    traffic_percent: int | None = None
    ready_replicas: int = 0
    replicas: int = 0
    ready: str = "Unknown"  # the Deployment's Ready condition status

    def wire(self) -> dict[str, Any]:
        return {
            "kind": "Deployment",
            "name": self.name,
            "track": self.track,
            "trafficPercent": self.traffic_percent,
            "readyReplicas": self.ready_replicas,
            "replicas": self.replicas,
            "ready": self.ready,
        }


@dataclass
class VersionNode:
    name: str
    found: bool = True
    model: str = ""
    version: int | None = None
    aliases: list[str] = field(default_factory=list)
    key_metric: str | None = None  # e.g. accuracy=0.9667
    ready: str = "Unknown"
    deployments: list[Serving] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "kind": "ModelVersion",
            "name": self.name,
            "found": self.found,
            "model": self.model,
            "version": self.version,
            "aliases": self.aliases,
            "keyMetric": self.key_metric,
            "ready": self.ready,
            "deployments": [d.wire() for d in self.deployments],
        }


@dataclass
class RunNode:
    name: str
    found: bool = True
    state: str = ""
    key_metric: str | None = None
    key_value: float | None = None
    gates_passed: int = 0
    gates_total: int = 0
    model_version: VersionNode | None = None

    def wire(self) -> dict[str, Any]:
        return {
            "kind": "TrainingRun",
            "name": self.name,
            "found": self.found,
            "state": self.state,
            "keyMetric": self.key_metric,
            "keyValue": self.key_value,
            "gates": {"passed": self.gates_passed, "total": self.gates_total},
            "modelVersion": self.model_version.wire() if self.model_version else None,
        }


@dataclass
class DataNode:
    dataset: str
    version: str  # the content hash; "" while a run has not resolved one
    found: bool = True
    current: bool = False  # the Dataset's version now
    rows: dict[str, int] = field(default_factory=dict)  # total, and per split when known
    runs: list[RunNode] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.version[:12] if self.version else "(unresolved)"

    def wire(self) -> dict[str, Any]:
        return {
            "kind": "DatasetVersion",
            "dataset": self.dataset,
            "version": self.version or None,
            "shortVersion": self.version[:12] if self.version else None,
            "found": self.found,
            "current": self.current,
            "rows": self.rows,
            "runs": [r.wire() for r in self.runs],
        }


@dataclass
class Lineage:
    start: str  # kind/name asked for
    roots: list[DataNode]

    def wire(self) -> dict[str, Any]:
        return {"start": self.start, "datasetVersions": [d.wire() for d in self.roots]}


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _ready(obj: Obj, type_: str = "Ready") -> str:
    for c in _status(obj).get("conditions") or []:
        if c.get("type") == type_:
            return str(c.get("status", "Unknown"))
    return "Unknown"


def _by_name(objs: Iterable[Obj]) -> dict[str, Obj]:
    return {_name(o): o for o in objs}


def serving(deployment: Obj) -> list[Serving]:
    """The tracks a Deployment serves now (stable first), each naming its ModelVersion."""
    st = _status(deployment)
    canary = st.get("canary") or {}
    # The stable track's share is what the canary does not take (status records the
    # canary's only); unknown while the canary's is.
    shares: dict[str, int | None] = {"stable": 100, "canary": canary.get("trafficPercent")}
    if canary.get("modelVersion"):
        shares["stable"] = None if shares["canary"] is None else 100 - int(shares["canary"])
    out = []
    for track in ("stable", "canary"):
        served = st.get(track) or {}
        if served.get("modelVersion"):
            out.append(
                Serving(
                    name=_name(deployment),
                    track=track,
                    traffic_percent=shares[track],
                    ready_replicas=int(served.get("readyReplicas") or 0),
                    replicas=int(served.get("replicas") or 0),
                    ready=_ready(deployment),
                )
            )
    return out


def _served_versions(deployment: Obj) -> list[str]:
    st = _status(deployment)
    names = [(st.get(t) or {}).get("modelVersion") for t in ("stable", "canary")]
    return [str(n) for n in names if n]


class _Graph:
    def __init__(
        self,
        datasets: Iterable[Obj],
        runs: Iterable[Obj],
        versions: Iterable[Obj],
        deployments: Iterable[Obj],
    ) -> None:
        self.datasets = _by_name(datasets)
        self.runs = _by_name(runs)
        self.versions = _by_name(versions)
        self.deployments = _by_name(deployments)

    def version_node(self, name: str, only: str | None) -> VersionNode:
        mv = self.versions.get(name)
        if mv is None:
            return VersionNode(name=name, found=False)
        spec, st = mv.get("spec") or {}, _status(mv)
        aliases = [str(h.get("name")) for h in st.get("aliases") or [] if h.get("name")]
        serving_it = [
            s
            for d_name in sorted(self.deployments)
            if only is None or d_name == only
            for s in serving(self.deployments[d_name])
            if self._track_version(d_name, s.track) == name
        ]
        return VersionNode(
            name=name,
            model=str(spec.get("model", "")),
            version=spec.get("version"),
            aliases=aliases or [str(a) for a in spec.get("aliases") or []],
            key_metric=spec.get("keyMetric"),
            ready=_ready(mv),
            deployments=serving_it,
        )

    def _track_version(self, deployment: str, track: str) -> str | None:
        served = _status(self.deployments[deployment]).get(track) or {}
        return served.get("modelVersion")

    def run_node(self, name: str, version: VersionNode | None) -> RunNode:
        run = self.runs.get(name)
        if run is None:
            return RunNode(name=name, found=False, model_version=version)
        r: RunRow = run_row(run)
        return RunNode(
            name=name,
            state=r.state,
            key_metric=r.key_metric,
            key_value=r.key_value,
            gates_passed=r.gates_passed,
            gates_total=r.gates_total,
            model_version=version,
        )

    def data_node(self, dataset: str, version: str) -> DataNode:
        ds = self.datasets.get(dataset)
        if ds is None:
            return DataNode(dataset=dataset, version=version, found=False)
        st = _status(ds)
        node = DataNode(dataset=dataset, version=version, current=st.get("version") == version)
        if node.current and version:
            node.rows = {k: int(v) for k, v in (st.get("rows") or {}).items()}
        else:
            for rec in st.get("history") or []:
                if rec.get("version") == version and rec.get("rows") is not None:
                    node.rows = {"total": int(rec["rows"])}
        return node

    def run_data(self, run_name: str, mv: Obj | None) -> tuple[str, str]:
        """(dataset, version) a run trained on: the version's record first (immutable),
        else the run's own status."""
        if mv is not None:
            lin = (mv.get("spec") or {}).get("lineage") or {}
            return str(lin.get("dataset", "")), str(lin.get("datasetVersion", ""))
        run = self.runs.get(run_name) or {}
        return (
            str(((run.get("spec") or {}).get("datasetRef") or {}).get("name", "")),
            str(_status(run).get("datasetVersion") or ""),
        )


def _assemble(g: _Graph, links: Sequence[tuple[tuple[str, str], RunNode | None]]) -> list[DataNode]:
    roots: dict[tuple[str, str], DataNode] = {}
    for key, run in links:
        if key not in roots:
            roots[key] = g.data_node(*key)
        if run is not None:
            roots[key].runs.append(run)
    for node in roots.values():
        node.runs.sort(key=lambda r: r.name)
    return sorted(roots.values(), key=lambda d: (d.dataset, not d.current, d.version))


def build(
    kind: str,
    name: str,
    *,
    datasets: Iterable[Obj],
    runs: Iterable[Obj],
    versions: Iterable[Obj],
    deployments: Iterable[Obj],
) -> Lineage:
    """The lineage of KIND/NAME among one namespace's objects."""
    g = _Graph(datasets, runs, versions, deployments)
    table = {
        "Dataset": g.datasets,
        "TrainingRun": g.runs,
        "ModelVersion": g.versions,
        "Deployment": g.deployments,
    }[kind]
    if name not in table:
        raise LineageError(f"{kind.lower()} {name} not found")
    # Each link: the dataset version a chain starts from, and the chain's run (None: the
    # dataset version alone). A version whose run is unknown hangs off a nameless run.
    links: list[tuple[tuple[str, str], RunNode | None]] = []

    def from_version(mv_name: str, only: str | None) -> None:
        mv = g.versions.get(mv_name)
        vnode = g.version_node(mv_name, only)
        run_name = str(((mv or {}).get("spec") or {}).get("lineage", {}).get("trainingRun", ""))
        run = g.run_node(run_name, vnode) if run_name else RunNode("", False, model_version=vnode)
        links.append((g.run_data(run_name, mv), run))

    def from_run(run_name: str) -> None:
        produced = str(_status(g.runs[run_name]).get("modelVersion") or "")
        vnode = g.version_node(produced, None) if produced else None
        links.append((g.run_data(run_name, g.versions.get(produced)), g.run_node(run_name, vnode)))

    if kind == "Deployment":
        for mv_name in dict.fromkeys(_served_versions(g.deployments[name])):
            from_version(mv_name, name)
    elif kind == "ModelVersion":
        from_version(name, None)
    elif kind == "TrainingRun":
        from_run(name)
    else:
        for run_name in sorted(g.runs):
            run = g.runs[run_name]
            if ((run.get("spec") or {}).get("datasetRef") or {}).get("name") == name:
                from_run(run_name)
        # The current version, even before anything trained on it.
        links.append(((name, str(_status(g.datasets[name]).get("version") or "")), None))
    return Lineage(f"{kind.lower()}/{name}", _assemble(g, links))


# -- the tree, as text ----------------------------------------------------------------------


def _run_facts(r: RunNode) -> str:
    if not r.found:
        return f"trainingrun {r.name} (not found)"
    parts = [f"trainingrun {r.name}", r.state]
    if r.key_metric and r.key_value is not None:
        parts.append(f"{r.key_metric}={r.key_value:.4g}")
    if r.gates_total:
        parts.append(f"gates {r.gates_passed}/{r.gates_total} passed")
    return "  ".join(parts)


def _version_facts(v: VersionNode) -> str:
    if not v.found:
        return f"modelversion {v.name} (not found)"
    parts = [f"modelversion {v.name}", f"{v.model} v{v.version}"]
    parts.append(f"aliases {','.join(v.aliases)}" if v.aliases else "no alias")
    if v.key_metric:
        parts.append(v.key_metric)
    parts.append(f"Ready={v.ready}")
    return "  ".join(parts)


def _serving_facts(s: Serving) -> str:
    share = f"{s.traffic_percent}%" if s.traffic_percent is not None else "share unknown"
    return (
        f"deployment {s.name}  {s.track} {share}  "
        f"{s.ready_replicas}/{s.replicas} ready  Ready={s.ready}"
    )


def _data_facts(d: DataNode) -> str:
    parts = [f"dataset {d.dataset}@{d.short}"]
    if not d.found:
        parts.append("(dataset not found)")
    if d.rows:
        splits = ", ".join(f"{k} {v}" for k, v in d.rows.items() if k != "total")
        parts.append(f"{d.rows.get('total', '?')} rows" + (f" ({splits})" if splits else ""))
    if d.current:
        parts.append("current")
    return "  ".join(parts)


Tree = tuple[str, list["Tree"]]


def _lines(tree: Tree, prefix: str, out: list[str]) -> None:
    """The children of `tree`, drawn below it the way `tree(1)` does."""
    _, children = tree
    for i, child in enumerate(children):
        last = i == len(children) - 1
        out.append(f"{prefix}{'└── ' if last else '├── '}{child[0]}")
        _lines(child, prefix + ("    " if last else "│   "), out)


def _tree(node: DataNode) -> Tree:
    def version(v: VersionNode) -> Tree:
        return _version_facts(v), [(_serving_facts(s), []) for s in v.deployments]

    def run(r: RunNode) -> Tree:
        if r.model_version is None:
            return _run_facts(r), []
        if not r.name:  # a version whose run is unknown
            return version(r.model_version)
        return _run_facts(r), [version(r.model_version)]

    return _data_facts(node), [run(r) for r in node.runs]


def render(lineage: Lineage) -> str:
    """The tree, one object per line with its key facts."""
    if not lineage.roots:  # e.g. a Deployment that serves nothing yet
        return f"{lineage.start}: no lineage recorded yet (nothing served or trained)"
    out: list[str] = []
    for root in lineage.roots:
        tree = _tree(root)
        out.append(tree[0])
        _lines(tree, "", out)
    return "\n".join(out)

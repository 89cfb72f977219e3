"""Where everything of one local cluster lives inside its state directory.

One directory holds a whole cluster, so tests can run a private cluster in a temp dir and
``rm -rf`` is a complete reset::

    <state>/cluster.json      ports, node name, binaries (kept so a restart reuses them)
    <state>/status.json       phase and pids of the supervisor and its components
    <state>/progress.log      one line per bring-up step, followed by ``up``
    <state>/kubeconfig        admin (system:masters) kubeconfig
    <state>/kubeconfig-agent  the node agent's kubeconfig
    <state>/s3.env            S3 endpoint and credentials for host-side tools
    <state>/pki/              CA, serving and client certificates, service-account keys
    <state>/etcd/             etcd data
    <state>/seaweedfs/        S3 data and identities.json
    <state>/logs/<name>.log   one log per component, plus supervisor.log
    <state>/pods/             owned by the node agent (per-container logs)
    <state>/run/              unix sockets
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_ENV = "KUBEML_HOME"
# Every process we start carries this variable; ``down`` and the tests find strays by it.
MARKER_ENV = "KUBEML_LOCAL_STATE"


def default_state_dir() -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".kubeml" / "local"


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, state_dir: Path | str | None) -> Layout:
        path = Path(state_dir).expanduser() if state_dir else default_state_dir()
        return cls(path.resolve())

    @property
    def cluster_json(self) -> Path:
        return self.root / "cluster.json"

    @property
    def status_json(self) -> Path:
        return self.root / "status.json"

    @property
    def progress_log(self) -> Path:
        return self.root / "progress.log"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def agent_kubeconfig(self) -> Path:
        return self.root / "kubeconfig-agent"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "kubeconfig-controller-manager"

    @property
    def s3_env(self) -> Path:
        return self.root / "s3.env"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def seaweedfs(self) -> Path:
        return self.root / "seaweedfs"

    @property
    def seaweedfs_data(self) -> Path:
        return self.seaweedfs / "data"

    @property
    def s3_identities(self) -> Path:
        return self.seaweedfs / "identities.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log (JSON lines): who asked what, with which client."""
        return self.logs / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.run / "audit-policy.yaml"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def container_log(self, namespace: str, pod: str, container: str) -> Path:
        """Per-container log file kept by the node agent (its documented layout)."""
        return self.pods / namespace / pod / f"{container}.log"

    def create(self) -> None:
        dirs = (self.root, self.pki, self.etcd_data, self.seaweedfs_data, self.logs, self.run)
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        # Keys and credentials live here; keep the tree private.
        for private in (self.root, self.pki, self.etcd_data):
            private.chmod(0o700)

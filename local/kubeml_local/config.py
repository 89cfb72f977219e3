"""The persisted shape of one local cluster: ports, node name, binaries, and its status."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kubeml_local import service_range

DEFAULT_NODE = "kubeml-local"
BUCKET = "kubeml"
REGION = "us-east-1"
SYSTEM_NAMESPACE = "kubeml-system"
S3_OBJECT_NAME = "kubeml-s3"


class Ports(BaseModel):
    model_config = ConfigDict(extra="forbid")

    etcd_client: int
    etcd_peer: int
    apiserver: int
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    # The node agent's kubelet API (logs), which the apiserver dials. A default so that a
    # cluster.json written before it existed still reads; 0 means "not chosen yet".
    kubelet: int = 0

    def all(self) -> list[int]:
        return list(self.model_dump().values())


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_name: str = DEFAULT_NODE
    bin_dir: str
    crds_dir: str | None = None
    ports: Ports
    # This cluster's ClusterIPs: a loopback /20 of its own (service_range.py). None only
    # in a cluster.json written before there was a choice; `up` then picks one.
    service_cidr: str | None = None
    # Pods run inside their images (`kubeml local up --images`; the node agent's --images).
    images: bool = False

    @property
    def service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP (the first address of the range)."""
        return service_range.first_address(self.require_service_cidr())

    def require_service_cidr(self) -> str:
        if self.service_cidr is None:
            raise ValueError("cluster.json has no service_cidr; run `kubeml local up`")
        return self.service_cidr

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.etcd_client}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"


Phase = Literal["starting", "ready", "stopping", "stopped", "failed"]


class ComponentPid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: int
    pgid: int
    # Kept by the supervisor, which restarts a component that exits (see restarts.py).
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_at: str | None = None


class Status(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: Phase
    supervisor_pid: int | None = None
    components: dict[str, ComponentPid] = {}
    message: str = ""
    ready_seconds: float | None = None


def write_json(path: Path, model: BaseModel) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(model.model_dump_json(indent=2) + "\n")
    tmp.replace(path)  # atomic: `up`, `status` and `down` read it while it changes


def read_status(path: Path) -> Status | None:
    try:
        return Status.model_validate(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def read_config(path: Path) -> ClusterConfig | None:
    try:
        return ClusterConfig.model_validate(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves bind (Go sets SO_REUSEADDR): connections of the previous
        # run lingering in TIME_WAIT must not count as "taken".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so the kernel cannot repeat one)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def choose_ports(previous: Ports | None) -> Ports:
    """Reuse the previous ports when all are free: etcd keeps its peer URL in its data, and
    kubeconfigs handed out earlier keep working."""
    if previous and all(_port_free(p) for p in previous.all() if p):
        if not previous.kubelet:
            taken = set(previous.all())
            port = next(p for p in free_ports(len(taken) + 1) if p not in taken)
            return previous.model_copy(update={"kubelet": port})
        return previous
    names = list(Ports.model_fields)
    return Ports(**dict(zip(names, free_ports(len(names)), strict=True)))

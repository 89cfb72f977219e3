"""kind-config.yaml against kind's v1alpha4 config schema (kind cannot run here).

The field names are kind's own (sigs.k8s.io/kind pkg/apis/config/v1alpha4/types.go, the
yaml tags of Cluster, Node, Networking, Mount, PortMapping and PatchJSON6902); kind
rejects unknown fields, so a typo here would only show on a user's machine.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.cases import ROOT

CLUSTER_FIELDS = {
    "kind",
    "apiVersion",
    "name",
    "nodes",
    "networking",
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
}
NODE_FIELDS = {
    "role",
    "image",
    "labels",
    "extraMounts",
    "extraPortMappings",
    "gpus",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
}
NETWORKING_FIELDS = {
    "ipFamily",
    "apiServerPort",
    "apiServerAddress",
    "podSubnet",
    "serviceSubnet",
    "disableDefaultCNI",
    "kubeProxyMode",
    "dnsSearch",
}
PORT_MAPPING_FIELDS = {"containerPort", "hostPort", "listenAddress", "protocol"}
MOUNT_FIELDS = {"containerPath", "hostPath", "readOnly", "selinuxRelabel", "propagation"}
ROLES = {"control-plane", "worker"}
PROTOCOLS = {"TCP", "UDP", "SCTP"}
NODE_PORT_RANGE = range(30000, 32768)


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    return data


def values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "charts" / "kubeml" / "values.yaml").read_text())
    return data


def test_only_kind_v1alpha4_fields() -> None:
    cfg = config()
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(cfg) <= CLUSTER_FIELDS, set(cfg) - CLUSTER_FIELDS
    assert set(cfg.get("networking") or {}) <= NETWORKING_FIELDS
    for node in cfg["nodes"]:
        assert set(node) <= NODE_FIELDS, set(node) - NODE_FIELDS
        assert node.get("role", "control-plane") in ROLES
        for mapping in node.get("extraPortMappings") or []:
            assert set(mapping) <= PORT_MAPPING_FIELDS, set(mapping) - PORT_MAPPING_FIELDS
            assert isinstance(mapping["containerPort"], int)
            assert isinstance(mapping["hostPort"], int)
            assert mapping.get("protocol", "TCP") in PROTOCOLS
        for mount in node.get("extraMounts") or []:
            assert set(mount) <= MOUNT_FIELDS


def test_one_control_plane_and_one_worker() -> None:
    roles = [n.get("role", "control-plane") for n in config()["nodes"]]
    assert sorted(roles) == ["control-plane", "worker"]


def mappings() -> dict[int, dict[str, Any]]:
    return {
        m["containerPort"]: m for n in config()["nodes"] for m in n.get("extraPortMappings") or []
    }


def test_minio_port_mapping_matches_the_chart_node_port() -> None:
    makefile = (ROOT / "Makefile").read_text()
    node_port = int(re.search(r"minio\.service\.nodePort=(\d+)", makefile)[1])  # type: ignore[index]
    assert "minio.service.type=NodePort" in makefile
    assert node_port in NODE_PORT_RANGE
    assert mappings()[node_port]["hostPort"] == 9000
    assert values()["minio"]["service"]["port"] == 9000


def test_model_endpoint_port_mapping_matches_the_make_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    node_port = int(re.search(r"nodePort: (\d+)", makefile)[1])  # type: ignore[index]
    assert node_port in NODE_PORT_RANGE
    assert mappings()[node_port]["hostPort"] == 8080


def test_host_ports_stay_on_loopback() -> None:
    # kind's default listenAddress is 0.0.0.0: MinIO with root credentials would be
    # reachable from the network.
    for mapping in mappings().values():
        assert mapping["listenAddress"] == "127.0.0.1"


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    for target in ("kind-up", "images", "kind-load", "kind-install", "chart-crds", "helm"):
        assert target in targets, target
    assert "--config kind-config.yaml" in makefile
    install = (ROOT / "docs" / "install.md").read_text()
    for target in ("kind-up", "images", "kind-load", "kind-install", "kind-iris"):
        assert f"make {target}" in install or f" {target}" in install, target

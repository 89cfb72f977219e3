"""Ports of a local cluster: kept across restarts, the kubelet port added to older configs."""

from __future__ import annotations

import json

from kubeml_local.config import ClusterConfig, Ports, choose_ports, free_ports


def test_a_config_from_before_the_kubelet_port_gets_one_and_keeps_the_rest() -> None:
    names = [n for n in Ports.model_fields if n != "kubelet"]
    old = dict(zip(names, free_ports(len(names)), strict=True))
    cfg = ClusterConfig.model_validate(json.loads(json.dumps({"bin_dir": "/b", "ports": old})))
    assert cfg.ports.kubelet == 0
    chosen = choose_ports(cfg.ports)
    assert chosen.kubelet not in (0, *old.values())
    assert chosen.model_dump(exclude={"kubelet"}) == old
    assert choose_ports(chosen) == chosen  # then kept on every restart


def test_fresh_ports_are_distinct() -> None:
    ports = choose_ports(None).all()
    assert len(set(ports)) == len(ports) and 0 not in ports

"""The service proxy's decisions: listeners, endpoints, balancing, environment variables,
and each local cluster's own range of ClusterIPs."""

from __future__ import annotations

import ipaddress
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kubeml_local import service_range
from kubeml_local.agent import services as svc
from kubeml_local.agent.services import Endpoint, PortKey

Json = dict[str, Any]
CIDR = "127.100.16.0/20"


def service(
    name: str = "web",
    ns: str = "shop",
    ip: str | None = "127.100.16.10",
    ports: list[Json] | None = None,
    selector: dict[str, str] | None = None,
    **spec: Any,
) -> Json:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}"},
        "spec": {
            "clusterIP": ip,
            "selector": {"app": name} if selector is None else selector,
            "ports": ports
            if ports is not None
            else [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            **spec,
        },
    }


def pod(
    name: str,
    ip: str,
    *,
    ns: str = "shop",
    labels: dict[str, str] | None = None,
    ready: bool = True,
    phase: str = "Running",
    deleting: bool = False,
    port: int = 8080,
) -> Json:
    meta: Json = {"name": name, "namespace": ns, "uid": name, "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


# -- listeners -----------------------------------------------------------------------------


def test_every_tcp_port_of_a_service_with_a_cluster_ip_in_range_gets_a_listener() -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "grpc", "port": 8081, "targetPort": 9000, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "raw", "port": 90},  # no targetPort: the port itself
    ]
    got = svc.service_ports(service(ports=ports), CIDR)
    assert [(p.key.port_name, p.cluster_ip, p.port, p.target_port) for p in got] == [
        ("http", "127.100.16.10", 80, "http"),
        ("grpc", "127.100.16.10", 8081, 9000),
        ("raw", "127.100.16.10", 90, 90),
    ]


@pytest.mark.parametrize(
    "spec",
    [
        {"ip": None},
        {"ip": "None"},  # headless
        {"ip": "127.100.32.10"},  # another cluster's range
        {"ip": "10.0.0.10"},  # never anything but loopback
        {"type": "ExternalName"},
    ],
)
def test_no_listener_without_a_cluster_ip_of_this_cluster(spec: Json) -> None:
    assert svc.service_ports(service(**spec), CIDR) == []


# -- endpoints -----------------------------------------------------------------------------


def test_endpoints_are_the_ready_pods_the_selector_matches_in_the_namespace() -> None:
    pods = [
        pod("a", "127.1.0.3"),
        pod("b", "127.1.0.2", port=9090),  # a named targetPort resolves per pod
        pod("unready", "127.1.0.4", ready=False),
        pod("leaving", "127.1.0.5", deleting=True),
        pod("done", "127.1.0.6", phase="Succeeded"),
        pod("other-app", "127.1.0.7", labels={"app": "db"}),
        pod("other-ns", "127.1.0.8", ns="elsewhere"),
        pod("off-machine", "10.1.0.9"),
    ]
    s = service()
    (port,) = svc.service_ports(s, CIDR)
    assert svc.endpoints(s, port, pods) == (
        Endpoint("127.1.0.2", 9090, "b"),
        Endpoint("127.1.0.3", 8080, "a"),
    )


def test_a_pod_without_the_named_port_is_no_endpoint_and_numbers_need_no_name() -> None:
    s = service(ports=[{"port": 80, "targetPort": "metrics"}])
    (port,) = svc.service_ports(s, CIDR)
    assert svc.endpoints(s, port, [pod("a", "127.1.0.3")]) == ()
    s = service(ports=[{"port": 80, "targetPort": "7000"}])
    (port,) = svc.service_ports(s, CIDR)
    assert svc.endpoints(s, port, [pod("a", "127.1.0.3")]) == (Endpoint("127.1.0.3", 7000),)


def test_a_service_without_selector_has_no_endpoints_but_kubernetes_is_the_apiserver() -> None:
    manual = service(selector={})
    (port,) = svc.service_ports(manual, CIDR)
    assert svc.endpoints(manual, port, [pod("a", "127.1.0.3")]) == ()
    api = Endpoint("127.0.0.1", 6443, "kube-apiserver")
    master = service("kubernetes", "default", "127.100.16.1", selector={})
    master["spec"]["ports"] = [{"name": "https", "port": 443, "targetPort": 6443}]
    plan = svc.plan([master], [], CIDR, api)
    assert plan == {
        ("127.100.16.1", 443): svc.Listener(PortKey("default", "kubernetes", "https"), (api,))
    }


def test_plan_lists_every_listener_with_its_endpoints() -> None:
    web = service()
    db = service("db", ip="127.100.16.11", ports=[{"port": 5432, "targetPort": 5432}])
    pods = [pod("a", "127.1.0.3"), pod("d", "127.1.0.9", labels={"app": "db"})]
    plan = svc.plan([web, db], pods, CIDR)
    assert plan == {
        ("127.100.16.10", 80): svc.Listener(
            PortKey("shop", "web", "http"), (Endpoint("127.1.0.3", 8080),)
        ),
        ("127.100.16.11", 5432): svc.Listener(
            PortKey("shop", "db", ""), (Endpoint("127.1.0.9", 5432),)
        ),
    }
    changes = svc.diff([("127.100.16.10", 80), ("127.100.16.12", 80)], plan)
    assert changes.open == (("127.100.16.11", 5432),)
    assert changes.close == (("127.100.16.12", 80),)


def test_slim_objects_keep_what_endpoints_are_made_of() -> None:
    full = pod("a", "127.1.0.3")
    full["spec"]["containers"][0]["command"] = ["python", "-c", "x" * 1000]
    full["metadata"]["annotations"] = {"big": "y" * 1000}
    s = service()
    (port,) = svc.service_ports(s, CIDR)
    slim = svc.slim_pod(full)
    assert "annotations" not in slim["metadata"] and "command" not in json.dumps(slim)
    assert svc.endpoints(s, port, [slim]) == svc.endpoints(s, port, [full])
    assert svc.service_ports(svc.slim_service(s), CIDR) == [port]


# -- balancing -----------------------------------------------------------------------------


def test_round_robin_gives_each_endpoint_its_share_of_new_connections() -> None:
    eps = [Endpoint(f"127.1.0.{i}", 8080) for i in range(2, 6)]  # 3 stable + 1 canary
    rr = svc.RoundRobin()
    key = PortKey("shop", "web", "http")
    firsts = Counter(rr.order(key, eps)[0] for _ in range(400))
    assert set(firsts.values()) == {100}


def test_the_rest_of_the_rotation_is_the_retry_order() -> None:
    eps = [Endpoint("127.1.0.2", 1), Endpoint("127.1.0.3", 1), Endpoint("127.1.0.4", 1)]
    rr = svc.RoundRobin()
    key = PortKey("shop", "web", "")
    assert rr.order(key, eps) == eps
    assert rr.order(key, eps) == [eps[1], eps[2], eps[0]]
    assert rr.order(key, eps[:2]) == [eps[0], eps[1]]  # the set shrank: still in range
    assert rr.order(key, []) == []
    rr.forget([])
    assert rr.order(key, eps)[0] == eps[0]


# -- environment ---------------------------------------------------------------------------


def test_service_env_matches_the_kubelets_names_and_values() -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "grpc-api", "port": 8081, "targetPort": 8081, "protocol": "TCP"},
    ]
    env = svc.service_env([service("iris-model", ports=ports)], "shop", True)
    assert env == {
        "IRIS_MODEL_SERVICE_HOST": "127.100.16.10",
        "IRIS_MODEL_SERVICE_PORT": "80",
        "IRIS_MODEL_SERVICE_PORT_HTTP": "80",
        "IRIS_MODEL_SERVICE_PORT_GRPC_API": "8081",
        "IRIS_MODEL_PORT": "tcp://127.100.16.10:80",
        "IRIS_MODEL_PORT_80_TCP": "tcp://127.100.16.10:80",
        "IRIS_MODEL_PORT_80_TCP_PROTO": "tcp",
        "IRIS_MODEL_PORT_80_TCP_PORT": "80",
        "IRIS_MODEL_PORT_80_TCP_ADDR": "127.100.16.10",
        "IRIS_MODEL_PORT_8081_TCP": "tcp://127.100.16.10:8081",
        "IRIS_MODEL_PORT_8081_TCP_PROTO": "tcp",
        "IRIS_MODEL_PORT_8081_TCP_PORT": "8081",
        "IRIS_MODEL_PORT_8081_TCP_ADDR": "127.100.16.10",
    }


def test_service_env_only_for_the_pods_namespace_with_a_cluster_ip_and_links_on() -> None:
    services = [
        service("web"),
        service("elsewhere", ns="other"),
        service("headless", ip="None"),
        service("kubernetes", "default", "127.100.16.1"),
    ]
    env = svc.service_env(services, "shop", True)
    assert {k for k in env if k.endswith("_SERVICE_HOST")} == {"WEB_SERVICE_HOST"}
    assert svc.service_env(services, "shop", False) == {}


# -- ClusterIP ranges ----------------------------------------------------------------------


def _record(state: Path, cidr: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "cluster.json").write_text(json.dumps({"service_cidr": cidr}))


def test_two_clusters_get_different_ranges_and_each_keeps_its_own(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    a, b = tmp_path / "a", tmp_path / "b"
    ra = service_range.choose(a, None, claims)
    _record(a, ra)
    rb = service_range.choose(b, ra, claims)  # b asks for a's range: taken
    _record(b, rb)
    assert ra != rb
    assert service_range.choose(a, ra, claims) == ra  # a restart keeps it
    assert service_range.first_address(ra).endswith(".1")
    for r in (ra, rb):
        net = ipaddress.IPv4Network(r)
        assert service_range.SUPERNET.supernet_of(net) and net.prefixlen == 20
        assert not net.overlaps(ipaddress.IPv4Network(service_range.LEGACY))
    assert len(service_range.candidates(a)) == 240


def test_an_abandoned_claim_is_taken_over_but_a_fresh_one_is_respected(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    gone, fresh, me = tmp_path / "gone", tmp_path / "fresh", tmp_path / "me"
    r = service_range.choose(gone, None, claims)  # claimed, then the state dir vanished
    old = (claims / r.replace("/", "-")).stat().st_mtime - 3600
    os.utime(claims / r.replace("/", "-"), (old, old))
    assert service_range.choose(me, r, claims) == r
    # Claimed a moment ago, cluster.json not yet written: not taken.
    r2 = service_range.choose(fresh, None, claims)
    assert service_range.choose(tmp_path / "other", r2, claims) != r2


def test_pod_addresses_lie_outside_every_service_range() -> None:
    from kubeml_local.agent.agent import AgentConfig

    pods = ipaddress.IPv4Network(AgentConfig.__dataclass_fields__["pod_cidr"].default)
    assert not pods.overlaps(service_range.SUPERNET)
    assert not ipaddress.IPv4Network(service_range.LEGACY).overlaps(pods)

"""The server objects' ports: gRPC beside HTTP unless the Deployment turns it off."""

from __future__ import annotations

from tests.unit.test_reconcile_deployment import body, decide, mv


def test_grpc_is_exposed_by_default_and_can_be_turned_off() -> None:
    on = decide(body(), [mv(2, ["champion"])])
    dep = next(o for o in on.apply if o["kind"] == "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "grpc": 8081}
    assert env["KUBEML_GRPC_PORT"] == "8081"
    svc = next(o for o in on.apply if o["kind"] == "Service")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http", "grpc"]

    off = decide(body(server={"grpc": False}), [mv(2, ["champion"])])
    dep = next(o for o in off.apply if o["kind"] == "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert [p["name"] for p in c["ports"]] == ["http"] and env["KUBEML_GRPC_PORT"] == "0"
    svc = next(o for o in off.apply if o["kind"] == "Service")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]

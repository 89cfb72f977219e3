"""Pure helpers of the runtime side: /proc parsing, probes' result counting, IPs, binding,
node objects, kubeconfig parsing."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeml_local.agent.binder import binding_body, schedulable
from kubeml_local.agent.credentials import (
    ApiEndpoint,
    endpoint_from_kubeconfig,
    pod_kubeconfig,
    token_request_body,
    wants_token,
)
from kubeml_local.agent.ipam import LoopbackIPAM
from kubeml_local.agent.memory import PAGE_SIZE, MemoryMonitor, ProcStat, parse_stat, session_rss
from kubeml_local.agent.node import NodeResources, lease_body, node_conditions, node_status
from kubeml_local.agent.probes import ProbeTiming, ProbeTracker, is_loopback

# -- memory ------------------------------------------------------------------------------


def test_parse_stat_with_odd_command_names() -> None:
    line = (
        "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
        "12345 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
    )
    s = parse_stat(line)
    assert (s.pid, s.ppid, s.pgrp, s.session) == (4242, 1, 4242, 4242)
    assert s.rss_bytes == 250 * PAGE_SIZE


def test_parse_stat_of_this_process() -> None:
    s = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert s.pid == os.getpid()
    assert s.session == os.getsid(0)
    assert s.rss_bytes > 0


def test_monitor_sums_sessions_and_fires_once(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[int] = []
    monkeypatch.setattr(
        "kubeml_local.agent.memory.kill_session", lambda sid, sig=9, stats=None: killed.append(sid)
    )
    stats = [ProcStat(10, 1, 10, 10, 60), ProcStat(11, 10, 10, 10, 50), ProcStat(20, 1, 20, 20, 10)]
    assert session_rss(stats) == {10: 110, 20: 10}
    seen: list[int] = []
    monitor = MemoryMonitor()
    monitor.watch(10, 100, seen.append)
    monitor.watch(20, 100, seen.append)
    monitor.check(stats)
    monitor.check(stats)
    assert killed == [10]
    assert seen == [110]


# -- probes ------------------------------------------------------------------------------


def timing(success: int = 1, failure: int = 3) -> ProbeTiming:
    return ProbeTiming.of({"successThreshold": success, "failureThreshold": failure})


def test_probe_defaults() -> None:
    t = ProbeTiming.of({})
    assert (t.initial_delay, t.period, t.timeout, t.success_threshold, t.failure_threshold) == (
        0,
        10,
        1,
        1,
        3,
    )


def test_readiness_needs_successes_and_consecutive_failures() -> None:
    r = ProbeTracker("readiness", timing(success=2, failure=2))
    assert r.result is False
    assert r.record(True) is False
    assert r.record(True) is True and r.result is True
    assert r.record(False) is False and r.result is True
    assert r.record(True) is False  # the failure run was broken
    assert r.record(False) is False
    assert r.record(False) is True and r.result is False


def test_liveness_starts_alive_and_startup_unknown() -> None:
    live = ProbeTracker("liveness", timing(failure=3))
    assert live.result is True
    assert [live.record(False) for _ in range(3)] == [False, False, True]
    assert live.result is False
    startup = ProbeTracker("startup", timing())
    assert startup.result is None
    assert startup.record(True) is True and startup.result is True


def test_probes_only_dial_loopback() -> None:
    assert is_loopback("127.1.0.5")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")


# -- IPs -----------------------------------------------------------------------------------


def test_ipam_round_robin_and_release() -> None:
    ipam = LoopbackIPAM("127.1.0.0/16")
    a = ipam.allocate("a")
    b = ipam.allocate("b")
    assert (a, b) == ("127.1.0.2", "127.1.0.3")
    assert ipam.allocate("a") == a
    ipam.release("a")
    assert ipam.allocate("c") == "127.1.0.4"  # freed addresses are not reused at once
    assert ipam.allocate("d", preferred="127.1.0.2") == "127.1.0.2"
    assert ipam.allocate("e", preferred="127.1.0.3") != "127.1.0.3"  # taken


def test_ipam_skips_dot_255_and_rejects_non_loopback() -> None:
    ipam = LoopbackIPAM("127.2.0.0/23")
    ips = [ipam.allocate(str(i)) for i in range(253 + 253)]
    assert all(not ip.endswith((".0", ".1", ".255")) for ip in ips)
    with pytest.raises(RuntimeError, match="exhausted"):
        ipam.allocate("one-too-many")
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        LoopbackIPAM("10.0.0.0/24")


def test_ipam_claims_are_host_wide(tmp_path: Path) -> None:
    first = LoopbackIPAM("127.3.0.0/24", tmp_path)
    second = LoopbackIPAM("127.3.0.0/24", tmp_path)
    assert first.allocate("x") == "127.3.0.2"
    # Same process (pid) owns the claim, so another allocator must skip it.
    assert second.allocate("y") == "127.3.0.3"
    (tmp_path / "127.3.0.4").write_text("999999999")  # claim of a dead agent: taken over
    assert second.allocate("z") == "127.3.0.4"
    first.release("x")
    assert not (tmp_path / "127.3.0.2").exists()


# -- binding and node ------------------------------------------------------------------------


def test_schedulable() -> None:
    labels = {"kubernetes.io/hostname": "n", "kubernetes.io/os": "linux"}
    base = {"metadata": {"name": "p"}, "spec": {"containers": []}}
    assert schedulable(base, labels)
    assert not schedulable({**base, "spec": {"nodeName": "x"}}, labels)
    assert not schedulable({**base, "spec": {"schedulerName": "other"}}, labels)
    assert not schedulable({**base, "spec": {"schedulingGates": [{"name": "g"}]}}, labels)
    assert not schedulable({"metadata": {"deletionTimestamp": "t"}, "spec": {}}, labels)
    assert schedulable({**base, "spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}, labels)
    assert not schedulable({**base, "spec": {"nodeSelector": {"gpu": "yes"}}}, labels)
    assert binding_body("p", "n")["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n"}


def test_node_status_and_lease() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    res = NodeResources(cpu="2", memory="1Gi")
    s = node_status("n", res, "127.0.0.1", when, {})
    assert (
        s["capacity"]
        == s["allocatable"]
        == {"cpu": "2", "memory": "1Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    )
    assert s["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in s["addresses"]
    conds = {c["type"]: c for c in node_conditions(when, {"Ready": "2020-01-01T00:00:00Z"})}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert conds["Ready"]["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"
    assert {conds[t]["status"] for t in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {
        "False"
    }
    lease = lease_body("n", "uid-1", when)
    assert lease["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


# -- credentials ---------------------------------------------------------------------------


def test_endpoint_from_kubeconfig(tmp_path: Path) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "b",
        "clusters": [
            {"name": "one", "cluster": {"server": "https://127.0.0.1:1"}},
            {
                "name": "two",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": base64.b64encode(b"CA").decode(),
                },
            },
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "one", "user": "u"}},
            {"name": "b", "context": {"cluster": "two", "user": "u"}},
        ],
        "users": [{"name": "u", "user": {}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    ep = endpoint_from_kubeconfig(path)
    assert ep == ApiEndpoint("https://127.0.0.1:6443", b"CA")
    assert (ep.host, ep.port) == ("127.0.0.1", 6443)


def test_pod_kubeconfig_uses_token_file() -> None:
    text = pod_kubeconfig(
        ApiEndpoint("https://127.0.0.1:6443", b"CA"),
        Path("/sa/ca.crt"),
        Path("/sa/token"),
        "ns",
        "runner",
    )
    cfg = yaml.safe_load(text)
    assert cfg["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": "/sa/ca.crt",
    }
    assert cfg["users"][0] == {
        "name": "system:serviceaccount:ns:runner",
        "user": {"tokenFile": "/sa/token"},
    }
    assert cfg["contexts"][0]["context"]["namespace"] == "ns"


def test_token_request_and_opt_out() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {
            "volumes": [
                {
                    "name": "kube-api-access-1",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            ]
        },
    }
    body = token_request_body(pod, "", 3607)
    assert body["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "p",
        "uid": "u",
    }
    assert "audiences" not in body["spec"]
    assert token_request_body(pod, "vault", 60)["spec"] == {
        "expirationSeconds": 600,
        "audiences": ["vault"],
        "boundObjectRef": body["spec"]["boundObjectRef"],
    }
    assert wants_token(pod)
    assert not wants_token({"spec": {}})  # the ServiceAccount opted out: no volume injected
    assert not wants_token({**pod, "spec": {**pod["spec"], "automountServiceAccountToken": False}})

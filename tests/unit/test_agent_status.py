"""Pod status building: phase, conditions, transition times, back-off."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubeml_local.agent import status as st
from kubeml_local.agent.status import ContainerRecord

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=5)


def rec(
    name: str = "c",
    *,
    state: str = "waiting",
    code: int = 0,
    final: bool = False,
    ready: bool = False,
    init: bool = False,
    sidecar: bool = False,
    last: bool = False,
) -> ContainerRecord:
    r = ContainerRecord(name, "img", init=init, sidecar=sidecar)
    if state == "running":
        r.state = st.running(T0)
    elif state == "terminated":
        r.state = st.terminated(code, st.termination_reason(code, False), T0, T1)
    r.final, r.ready = final, ready
    if last:
        r.last_state = st.terminated(1, "Error", T0, T1)
    return r


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (3, 3), (-9, 137), (-15, 143)])
def test_exit_code_of_signals(returncode: int, code: int) -> None:
    assert st.exit_code(returncode) == code


def test_termination_reasons() -> None:
    assert st.termination_reason(0, False) == "Completed"
    assert st.termination_reason(1, False) == "Error"
    assert st.termination_reason(137, True) == "OOMKilled"


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_restart_allowed(policy: str, code: int, restart: bool) -> None:
    assert st.restart_allowed(policy, code) is restart


def test_init_policy() -> None:
    assert st.init_policy("Never", False) == "Never"
    assert st.init_policy("Always", False) == "OnFailure"
    assert st.init_policy("OnFailure", False) == "OnFailure"
    assert st.init_policy("Never", True) == "Always"


def test_phase() -> None:
    assert st.pod_phase([], [rec()]) == "Pending"
    assert st.pod_phase([], [rec(state="running")]) == "Running"
    assert st.pod_phase([], [rec(state="terminated", final=True)]) == "Succeeded"
    both = [
        rec("a", state="terminated", final=True),
        rec("b", state="terminated", code=2, final=True),
    ]
    assert st.pod_phase([], both) == "Failed"
    # One finished, one still running: Running.
    assert (
        st.pod_phase([], [rec("a", state="terminated", final=True), rec("b", state="running")])
        == "Running"
    )
    # Restarting after a crash (waiting with a last state) is Running, not Pending.
    assert st.pod_phase([], [rec(last=True)]) == "Running"


def test_phase_with_init_containers() -> None:
    main = rec("main")
    assert st.pod_phase([rec("i", state="running", init=True)], [main]) == "Pending"
    failed = rec("i", state="terminated", code=1, final=True, init=True)
    assert st.pod_phase([failed], [main]) == "Failed"
    done = rec("i", state="terminated", final=True, init=True)
    assert st.pod_phase([done], [rec("main", state="running")]) == "Running"
    # A sidecar does not hold the pod in Pending, nor decide its outcome.
    side = rec("s", state="running", init=True, sidecar=True)
    assert st.pod_phase([side], [rec("main", state="terminated", final=True)]) == "Succeeded"


def conditions(*args: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st.desired_conditions(*args, **kwargs)}


def test_conditions_running_and_ready() -> None:
    c = conditions([], [rec(state="running", ready=True)], sandbox_ready=True, phase="Running")
    assert {k: v["status"] for k, v in c.items()} == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }


def test_conditions_not_ready_names_containers() -> None:
    c = conditions(
        [],
        [rec("a", state="running"), rec("b", state="running", ready=True)],
        sandbox_ready=True,
        phase="Running",
    )
    assert c["Ready"]["status"] == "False"
    assert c["Ready"]["reason"] == "ContainersNotReady"
    assert c["Ready"]["message"] == "containers with unready status: [a]"


def test_conditions_init_pending_and_completed() -> None:
    c = conditions(
        [rec("i", state="running", init=True)], [rec()], sandbox_ready=True, phase="Pending"
    )
    assert c["Initialized"]["status"] == "False"
    assert c["Initialized"]["message"] == "containers with incomplete status: [i]"
    done = conditions(
        [], [rec(state="terminated", final=True)], sandbox_ready=True, phase="Succeeded"
    )
    assert done["Ready"] == {"type": "Ready", "status": "False", "reason": "PodCompleted"}
    assert done["PodReadyToStartContainers"]["status"] == "False"


def test_readiness_gates() -> None:
    ready = [rec(state="running", ready=True)]
    c = conditions([], ready, sandbox_ready=True, phase="Running", readiness_gates=["x/y"])
    assert c["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert c["ContainersReady"]["status"] == "True"
    c = conditions(
        [],
        ready,
        sandbox_ready=True,
        phase="Running",
        readiness_gates=["x/y"],
        existing=[{"type": "x/y", "status": "True"}],
    )
    assert c["Ready"]["status"] == "True"


def test_transition_time_kept_while_status_unchanged() -> None:
    previous = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "Initialized", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
    ]
    desired = [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]
    out = {c["type"]: c for c in st.with_transition_times(desired, previous, T1)}
    assert out["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert out["Initialized"]["lastTransitionTime"] == "2026-01-01T12:00:05Z"
    # Absent reason/message are sent as null so a merge patch drops stale ones.
    assert out["Initialized"]["reason"] is None
    assert out["Initialized"]["message"] is None


def test_pod_status_wire_form() -> None:
    view = st.PodView(
        host_ip="127.0.0.1",
        pod_ip="127.1.0.2",
        start_time=T0,
        sandbox_ready=True,
        observed_generation=1,
    )
    main = rec(state="terminated", code=3, final=True)
    main.restart_count = 2
    out = st.pod_status(view, [], [main], [], T1)
    assert out["phase"] == "Failed"
    assert out["podIP"] == "127.1.0.2"
    assert out["podIPs"] == [{"ip": "127.1.0.2"}]
    assert out["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert out["startTime"] == "2026-01-01T12:00:00Z"
    assert "initContainerStatuses" not in out
    cs = out["containerStatuses"][0]
    assert cs["restartCount"] == 2
    assert cs["state"]["terminated"] == {
        "exitCode": 3,
        "reason": "Error",
        "startedAt": "2026-01-01T12:00:00Z",
        "finishedAt": "2026-01-01T12:00:05Z",
    }
    assert cs["imageID"].endswith("img")


def test_without_times_ignores_only_stamps() -> None:
    a = {"phase": "Running", "conditions": [{"type": "Ready", "lastTransitionTime": "x"}]}
    b = {"phase": "Running", "conditions": [{"type": "Ready", "lastTransitionTime": "y"}]}
    assert st.without_times(a) == st.without_times(b)
    assert st.without_times(a) != st.without_times({**b, "phase": "Failed"})


def test_restart_delay_first_fast_then_doubling_to_cap() -> None:
    delays = [st.restart_delay(n) for n in range(1, 10)]
    assert delays[:6] == [1.0, 10.0, 20.0, 40.0, 80.0, 160.0]
    assert delays[6:] == [300.0, 300.0, 300.0]


def test_crash_count_resets_after_long_run() -> None:
    assert st.next_crash_count(4, 5.0) == 5
    assert st.next_crash_count(4, 600.0) == 1


def test_rfc3339() -> None:
    assert st.rfc3339(T0) == "2026-01-01T12:00:00Z"
    assert st.rfc3339_micro(T0) == "2026-01-01T12:00:00.000000Z"

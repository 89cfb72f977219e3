"""Progressive rollout decisions (spec.rollout): which versions serve at what weight,
when a step is judged, advanced, completed or rolled back. Pure: the serving pods'
metrics come in as an analysis Sample read by the controller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.deployment import DeploymentSpec, Rollout, RolloutStep, duration_seconds
from ..labels import APPROVED_STEP
from ..schedules import parse_time
from . import analysis

HISTORY = 20
PROGRESSING, SUCCEEDED, ROLLED_BACK, ABORTED = "Progressing", "Succeeded", "RolledBack", "Aborted"
# While waiting for a weight to take effect, the apps/v1 watch wakes the reconcile;
# this only bounds the wait if a wake-up is missed.
RECHECK_SECONDS = 5.0


@dataclass
class Decision:
    stable: dict[str, Any]  # the ModelVersion the stable servers serve
    canary: dict[str, Any] | None = None
    weight: int = 0
    status: dict[str, Any] | None = None  # status.rollout (None: unchanged)
    needs_sample: bool = False  # an analysis is due: decide again with a Sample
    requeue_after: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # ModelVersion -> aliases


def _ref(mv: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": mv["spec"]["version"], "modelVersion": mv["metadata"]["name"]}


def _log(st: dict[str, Any], now: str, reason: str, message: str) -> None:
    st["history"] = [*st.get("history", []), {"time": now, "reason": reason, "message": message}][
        -HISTORY:
    ]
    st["message"] = message


def plan(
    body: Mapping[str, Any],
    spec: DeploymentSpec,
    target: dict[str, Any],
    versions: list[dict[str, Any]],
    in_effect: bool,
    stable_serving: bool,
    sample: analysis.Sample | None,
    now: str,
    cannot_serve: str | None = None,
) -> Decision:
    """``target``: the version the spec asks for. ``in_effect``: the stable servers
    forward the current step's weight to a ready new version. ``stable_serving``: the
    stable servers run the version status.stable names and it has no known problem (a
    rollout starts from it; moving away from a version that cannot serve is at once).
    The steps are spec.rollout's, or the default ones for a retraining promotion.
    ``cannot_serve``: why the new version of a rollout under way cannot serve (its
    ModelVersion failed verification, its servers missed their progress deadline): a
    breach like a failed judgement, or the rollout would wait for its weight forever."""
    policy = spec.rollout_policy()
    assert policy is not None
    status = body.get("status") or {}
    old = status.get("rollout")
    by_name = {v["metadata"]["name"]: v for v in versions}
    name = target["metadata"]["name"]
    if old and old.get("phase") == PROGRESSING:
        to, frm = old["to"]["modelVersion"], old["from"]["modelVersion"]
        if name == to and frm in by_name and cannot_serve:
            st = dict(old)
            return _roll_back(st, by_name[frm], target, spec, f"cannot serve: {cannot_serve}", now)
        if name == to and frm in by_name:
            annotations = (body.get("metadata") or {}).get("annotations") or {}
            return _step(
                dict(old), policy, by_name[frm], target, in_effect, sample, spec, now, annotations
            )
        if name == frm or frm not in by_name:
            st = dict(old, phase=ABORTED)
            _log(
                st,
                now,
                "RolloutAborted",
                f"rollout to v{old['to']['version']} abandoned: "
                f"spec asks for v{target['spec']['version']}",
            )
            return Decision(target, status=st, events=[("Normal", "RolloutAborted", st["message"])])
        return _start(policy, by_name[frm], target, now)
    if old and old.get("phase") == ROLLED_BACK and old["to"]["modelVersion"] == name:
        frm = old["from"]["modelVersion"]
        if frm in by_name:  # sticky: a failed version is not tried again by itself
            return Decision(by_name[frm])
    serving = (status.get("stable") or {}).get("modelVersion")
    if serving and serving != name and serving in by_name and stable_serving:
        return _start(policy, by_name[serving], target, now)
    return Decision(target)


def _start(policy: Rollout, frm: dict[str, Any], to: dict[str, Any], now: str) -> Decision:
    first = policy.steps[0].set_weight
    st: dict[str, Any] = {
        "phase": PROGRESSING,
        "from": _ref(frm),
        "to": _ref(to),
        "step": 0,
        "steps": len(policy.steps),
        "weight": first,
        "failures": 0,
        "stepPassed": False,
        "history": [],
    }
    msg = (
        f"rolling out v{to['spec']['version']} from v{frm['spec']['version']} in "
        f"{len(policy.steps)} step(s): step 1 at {first}%"
    )
    _log(st, now, "RolloutStarted", msg)
    return Decision(
        frm,
        to,
        first,
        st,
        requeue_after=RECHECK_SECONDS,
        events=[("Normal", "RolloutStarted", msg)],
    )


def _since(now: str, then: str | None) -> float | None:
    a, b = parse_time(now), parse_time(then) if then else None
    if a is None or b is None:
        return None
    return (a - b).total_seconds() if isinstance(a, datetime) else None


def _step(
    st: dict[str, Any],
    policy: Rollout,
    frm: dict[str, Any],
    to: dict[str, Any],
    in_effect: bool,
    sample: analysis.Sample | None,
    spec: DeploymentSpec,
    now: str,
    annotations: Mapping[str, str],
) -> Decision:
    i = int(st.get("step", 0))
    steps = policy.steps
    if i >= len(steps):  # steps were removed mid-rollout: the last one left
        i = len(steps) - 1
    weight = steps[i].set_weight
    st.update(step=i, steps=len(steps), weight=weight)
    d = Decision(frm, to, weight, st)
    label = f"step {i + 1}/{len(steps)} at {weight}%"
    if not in_effect:
        st.pop("stepStartTime", None)
        st["message"] = f"{label}: waiting for the weight to take effect"
        d.requeue_after = RECHECK_SECONDS
        return d
    if not st.get("stepStartTime"):
        st["stepStartTime"] = now
        st["stepPassed"] = False
    interval = duration_seconds(policy.analysis.interval)
    last = st.get("lastAnalysis") or {}
    since_last = _since(now, last.get("time"))
    since_start = _since(now, st["stepStartTime"]) or 0.0
    fresh = last.get("time") and (_since(last["time"], st["stepStartTime"]) or 0.0) >= 0
    due = not fresh or since_last is None or since_last >= interval
    if due and sample is None:
        d.needs_sample = True
        d.requeue_after = 1.0
        return d
    if due:
        assert sample is not None
        j = _record(st, d, policy, label, sample, now)
        if j.rollback:
            return _roll_back(st, frm, to, spec, _failed(j), now)
        since_last = 0.0
    gate = steps[i].pause.duration is None
    pause = 0.0 if gate else duration_seconds(steps[i].pause.duration or "0s")
    st.pop("waitingFor", None)
    if gate and st.get("stepPassed") and not _approved(spec, annotations, to, i + 1):
        st["waitingFor"] = "Approval"
        v = to["spec"]["version"]
        st["message"] = (
            f"{label}: waiting for approval: set spec.rollout.approval to "
            f"{{version: {v}, step: {i + 1}}} (or annotate {APPROVED_STEP}={v}/{i + 1})"
        )
        if (st.get("history") or [{}])[-1].get("reason") != "WaitingForApproval":
            _log(st, now, "WaitingForApproval", st["message"])
            d.events.append(("Normal", "WaitingForApproval", st["message"]))
        d.requeue_after = interval
        return d
    if st.get("stepPassed") and since_start >= pause:
        return _advance(st, d, steps, i, to, now)
    wait = interval - (since_last or 0.0)
    if st.get("stepPassed"):
        wait = min(wait, pause - since_start)
    d.requeue_after = max(0.5, wait)
    return d


def _record(
    st: dict[str, Any],
    d: Decision,
    policy: Rollout,
    label: str,
    sample: analysis.Sample,
    now: str,
) -> analysis.Judgement:
    """Judge the step so far and record the judgement in the status."""
    j = analysis.judge(sample, policy.analysis, int(st.get("failures", 0)))
    st["lastAnalysis"] = {
        "time": now,
        "result": j.result,
        "requests": j.requests,
        "checks": [c.to_status() for c in j.checks],
        "source": sample.source,
    }
    if j.result == "Inconclusive":
        st["lastAnalysis"]["message"] = j.why[:1024]
    st["failures"] = j.failures
    st["message"] = f"{label}: {j.describe()}"
    if j.result == "Pass":
        st["stepPassed"] = True
    elif j.result == "Fail":
        _log(st, now, "AnalysisFailed", f"{label}: {j.describe()}")
        d.events.append(("Warning", "AnalysisFailed", st["message"]))
    return j


def _advance(
    st: dict[str, Any],
    d: Decision,
    steps: list[RolloutStep],
    i: int,
    to: dict[str, Any],
    now: str,
) -> Decision:
    """The next step, or the new version stable after the last."""
    if i + 1 >= len(steps):
        st.update(phase=SUCCEEDED, weight=100)
        st.pop("stepStartTime", None)
        msg = f"v{to['spec']['version']} passed {len(steps)} step(s) and is stable"
        _log(st, now, "RolloutSucceeded", msg)
        return Decision(to, status=st, events=[("Normal", "RolloutSucceeded", msg)])
    nxt = steps[i + 1].set_weight
    st.update(step=i + 1, weight=nxt, stepPassed=False)
    st.pop("stepStartTime", None)
    msg = f"step {i + 2}/{len(steps)} at {nxt}%"
    _log(st, now, "StepStarted", msg)
    d.weight = nxt
    d.events.append(("Normal", "StepStarted", msg))
    d.requeue_after = RECHECK_SECONDS
    return d


def _approved(
    spec: DeploymentSpec, annotations: Mapping[str, str], to: dict[str, Any], step: int
) -> bool:
    """Whether the spec (or the annotation shortcut) approves ``step`` (1-based) of
    the rollout to ``to``'s version."""
    version = int(to["spec"]["version"])
    policy = spec.rollout_policy()
    approval = policy.approval if policy is not None else None
    if approval is not None and approval.version == version and approval.step >= step:
        return True
    raw = str(annotations.get(APPROVED_STEP, ""))
    v, _, s = raw.strip().partition("/")
    return v.isdigit() and s.isdigit() and int(v) == version and int(s) >= step


def _failed(j: analysis.Judgement) -> str:
    shown = ", ".join(
        f"{c.name} {c.value:.4g} {'below' if c.name in analysis.MINIMUMS else 'above'} {c.limit:g}"
        if c.value is not None
        else c.name
        for c in j.failed
    )
    return f"failed {shown} over {j.requests} requests ({j.failures} failed judgement(s))"


def _roll_back(
    st: dict[str, Any],
    frm: dict[str, Any],
    to: dict[str, Any],
    spec: DeploymentSpec,
    why: str,
    now: str,
) -> Decision:
    st["phase"] = ROLLED_BACK  # stepStartTime stays: when the failed weight took effect
    msg = f"rolled back to v{frm['spec']['version']}: v{to['spec']['version']} {why}"
    d = Decision(frm, status=st)
    alias = spec.alias
    if alias and alias in (to["spec"].get("aliases") or []):
        # The alias goes back: whoever follows it (other Deployments, clients reading
        # the registry) sees the version that serves.
        d.aliases[to["metadata"]["name"]] = [a for a in to["spec"]["aliases"] if a != alias]
        d.aliases[frm["metadata"]["name"]] = [
            *[a for a in frm["spec"].get("aliases") or [] if a != alias],
            alias,
        ]
        msg += f"; alias {alias} moved back to {frm['metadata']['name']}"
    _log(st, now, "RolledBack", msg)
    d.events = [("Warning", "RolledBack", msg)]
    return d

"""Health from status alone: one set of rules for Argo CD, kstatus and us.

Per kind, the rules say which condition summarises an object, which of its False
reasons are work in progress, and whether rollout conditions (Degraded,
Progressing) decide first. From them come:

- ``health()``: the verdict (Healthy, Progressing, Degraded) and its message;
- ``lua_script()``: the same rules as an Argo CD health check (Lua 5.1, as Argo CD
  embeds gopher-lua), written to charts/kubeml/health/ by ``kubeml health-checks``;
- ``kstatus_conditions()``: ``Reconciling`` and ``Stalled``, the abnormal-true
  conditions kstatus reads (Flux, kpt, cli-utils), which the operator sets on every
  status write so those tools wait for work in progress and fail fast on failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import ConditionDict, find, set_condition

HEALTHY, PROGRESSING, DEGRADED = "Healthy", "Progressing", "Degraded"
RECONCILING, STALLED = "Reconciling", "Stalled"


@dataclass(frozen=True)
class Rules:
    summary: str
    in_progress_note: str  # why these False reasons are not failures (a Lua comment)
    in_progress: tuple[str, ...] = ()
    rollout: bool = False


RULES: dict[str, Rules] = {
    "Dataset": Rules(
        "Ready",
        "Reasons the operator reports with Ready=False while a preparation Job\n"
        "is under way, or its result waits for S3 to answer again (not failures):\n"
        "Progressing, not Degraded.",
        ("Preparing", "Refreshing", "Pending", "StorageUnavailable"),
    ),
    "TrainingRun": Rules(
        "Succeeded",
        "A running TrainingRun reports Succeeded=Unknown; no False reason means\nwork in progress.",
    ),
    "ModelVersion": Rules(
        "Ready",
        "Verification is quick and reported as True or False; no False reason\n"
        "means work in progress.",
    ),
    "Deployment": Rules(
        "Ready", "Work in progress shows as Progressing=True (checked below).", rollout=True
    ),
}


def describe(c: Mapping[str, Any]) -> str:
    text = f"{c.get('type')}={c.get('status') or 'Unknown'}"
    if c.get("reason"):
        text += f" ({c['reason']})"
    if c.get("message"):
        text += f": {c['message']}"
    return text


def health(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """Healthy, Progressing or Degraded, with the deciding condition described."""
    verdict, message, _ = _decide(kind, obj)
    return verdict, message


def _decide(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any] | None]:
    """The verdict, its message and the condition that decided it (if one did)."""
    rules = RULES[kind]
    status = obj.get("status")
    if status is None:
        return PROGRESSING, "Waiting for the KubeML operator to reconcile", None
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        message = f"Waiting for the KubeML operator to observe generation {int(generation)}"
        if observed is not None:
            message += f" (status is for generation {int(observed)})"
        return PROGRESSING, message, None
    conditions = status.get("conditions")
    if rules.rollout:
        degraded = find(conditions, "Degraded")
        if degraded is not None and degraded.get("status") == "True":
            return DEGRADED, describe(degraded), degraded
        progressing = find(conditions, "Progressing")
        if progressing is not None and progressing.get("status") == "True":
            return PROGRESSING, describe(progressing), progressing
    summary = find(conditions, rules.summary)
    if summary is None:
        return PROGRESSING, f"No {rules.summary} condition yet", None
    if summary.get("status") == "True":
        verdict = HEALTHY
    elif summary.get("status") == "False" and summary.get("reason") not in rules.in_progress:
        verdict = DEGRADED
    else:
        verdict = PROGRESSING
    return verdict, describe(summary), summary


def kstatus_conditions(kind: str, obj: Mapping[str, Any], *, now: str) -> list[ConditionDict]:
    """The object's conditions with Reconciling and Stalled set from its health.

    Called with the status about to be written (observedGeneration current), so the
    verdict is about the summary condition, never about a stale generation.
    """
    status = obj.get("status") or {}
    conditions: Sequence[Mapping[str, Any]] = status.get("conditions") or []
    generation = (obj.get("metadata") or {}).get("generation")
    verdict, message, deciding = _decide(kind, obj)
    reason = str((deciding or {}).get("reason") or "Unknown")
    out: list[ConditionDict] = [dict(c) for c in conditions]
    for type_, when, calm in (
        (RECONCILING, PROGRESSING, "Reconciled"),
        (STALLED, DEGRADED, "NotStalled"),
    ):
        on = verdict == when
        out = set_condition(
            out,
            type_,
            "True" if on else "False",
            reason if on else calm,
            message if on else "",
            observed_generation=generation,
            now=now,
        )
    return out


# -- the Argo CD scripts ---------------------------------------------------------------

_ROLLOUT_LUA = """
-- A failing rollout or a broken model version wins over everything else;
-- a rollout under way is Progressing even while the old version still serves.
local degraded = condition(status.conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local progressing = condition(status.conditions, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end
"""

_LUA = """\
-- Argo CD health check for kubeml.io/{kind} (argocd-cm key
-- resource.customizations.health.kubeml.io_{kind}), from status alone.
-- Argo CD does not derive health from children, so this reads the summary
-- condition the operator maintains ({summary}), and treats a status older than
-- the spec (observedGeneration < generation) as Progressing: it describes a
-- spec the operator has not looked at yet. Lua 5.1-compatible (gopher-lua).
-- Generated by `kubeml health-checks` from operator/kubeml/health.py.

local SUMMARY = "{summary}"
{note}
local IN_PROGRESS = {in_progress}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.type .. "=" .. (c.status or "Unknown")
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local hs = {{}}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the KubeML operator to reconcile"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the KubeML operator to observe generation "
    .. tostring(math.floor(generation))
  if observed ~= nil then
    hs.message = hs.message .. " (status is for generation " .. tostring(math.floor(observed)) .. ")"
  end
  return hs
end
{rollout}
local summary = condition(status.conditions, SUMMARY)
if summary == nil then
  hs.status = "Progressing"
  hs.message = "No " .. SUMMARY .. " condition yet"
  return hs
end
if summary.status == "True" then
  hs.status = "Healthy"
elseif summary.status == "False" and not IN_PROGRESS[summary.reason or ""] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(summary)
return hs
"""  # noqa: E501 (the Lua keeps its own line lengths)


def lua_script(kind: str) -> str:
    rules = RULES[kind]
    entries = ", ".join(f"{r} = true" for r in rules.in_progress)
    return _LUA.format(
        kind=kind,
        summary=rules.summary,
        note="\n".join(f"-- {line}" for line in rules.in_progress_note.splitlines()),
        in_progress="{ " + entries + " }" if entries else "{}",
        rollout=_ROLLOUT_LUA if rules.rollout else "",
    )


def render_all() -> dict[str, str]:
    """File name -> script, for charts/kubeml/health/."""
    return {f"{kind}.lua": lua_script(kind) for kind in RULES}


_ARGOCD_CM_HEAD = """\
# Argo CD health checks for the four KubeML kinds, as a patch for argocd-cm:
#   kubectl -n argocd patch configmap argocd-cm --patch-file examples/gitops/argocd/argocd-cm-health.yaml
# Generated by `kubeml health-checks`, with charts/kubeml/health/*.lua, from
# operator/kubeml/health.py (`helm template ... --set argocd.healthChecks.enabled=true`
# renders the same data). They read status only: observedGeneration behind generation is
# Progressing; then the summary condition (Ready, Succeeded for TrainingRun).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""  # noqa: E501 (a command to copy whole)


def render_argocd_cm() -> str:
    """The same scripts as a patch for Argo CD's own ConfigMap."""
    out = [_ARGOCD_CM_HEAD]
    for kind in sorted(RULES):
        body = "".join(f"    {line}\n" if line else "\n" for line in lua_script(kind).splitlines())
        out.append(f"  resource.customizations.health.kubeml.io_{kind}: |\n{body}")
    return "".join(out)

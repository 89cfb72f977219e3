-- Argo CD health check for kubeml.io/Deployment (argocd-cm key
-- resource.customizations.health.kubeml.io_Deployment), from status alone.
-- Argo CD does not derive health from children, so this reads the summary
-- condition the operator maintains (Ready), and treats a status older than
-- the spec (observedGeneration < generation) as Progressing: it describes a
-- spec the operator has not looked at yet. Lua 5.1-compatible (gopher-lua).

local SUMMARY = "Ready"
-- Work in progress shows as Progressing=True (checked below).
local IN_PROGRESS = {}

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

local hs = {}
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

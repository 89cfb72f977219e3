-- Argo CD health check for kubeml.io/Dataset (argocd-cm key
-- resource.customizations.health.kubeml.io_Dataset), from status alone.
-- Argo CD does not derive health from children, so this reads the summary
-- condition the operator maintains (Ready), and treats a status older than
-- the spec (observedGeneration < generation) as Progressing: it describes a
-- spec the operator has not looked at yet. Lua 5.1-compatible (gopher-lua).

local SUMMARY = "Ready"
-- Reasons the operator reports with Ready=False while a preparation Job
-- is under way (not failures): Progressing, not Degraded.
local IN_PROGRESS = { Preparing = true, Refreshing = true, Pending = true }

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

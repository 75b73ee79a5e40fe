-- Argo CD health of the Sluice kinds (Logging, Flow, ClusterFlow, Output, ClusterOutput).
-- argocd-cm.yaml carries this script once per kind; a test keeps the copies equal.
-- Degraded only for what needs a person's action: the operator sets the Degraded condition
-- for exactly that. Warnings (TLS disabled, an unverified endpoint, a deprecation) are in the
-- Warning condition and leave the resource Healthy.
-- Order matters: a status about an older generation says nothing about the current spec.
local hs = { status = "Progressing", message = "Waiting for the Sluice operator to report status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the Sluice operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  if condition.type ~= nil then
    conditions[condition.type] = condition
  end
end
local function describe(condition)
  local text = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end
local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  local warning = conditions["Warning"]
  if warning ~= nil and warning.status == "True" then
    hs.message = hs.message .. " (warning: " .. describe(warning) .. ")"
  end
  return hs
end
if ready ~= nil then
  hs.message = describe(ready)
  -- Valid, but no applied Logging renders it: it waits for someone else's change (a Logging
  -- collecting its namespace, a flow using it, its Logging fixed), not for the operator.
  if ready.reason == "Unused" or ready.reason == "LoggingRefused" then
    hs.status = "Suspended"
  end
end
return hs

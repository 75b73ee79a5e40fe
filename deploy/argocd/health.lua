-- Argo CD health of the Sluice kinds (Logging, Flow, ClusterFlow, Output, ClusterOutput).
-- argocd-cm.yaml carries this script once per kind; a test keeps the copies equal.
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
local certificates = conditions["CertificatesReady"]
if certificates ~= nil and certificates.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(certificates)
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil then
  hs.message = describe(ready)
end
return hs

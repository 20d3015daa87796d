-- Argo CD health of a tenantdb.io Backup, read from what the operator writes:
-- status.observedGeneration, status.phase and the Ready and Stalled conditions.
local hs = { status = "Progressing", message = "Waiting for the operator" }
local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
local ready, stalled = nil, nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" and condition.status == "True" then
    stalled = condition
  end
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.message = "Waiting for the operator to reconcile generation " .. generation
  return hs
end
local message = (ready ~= nil and ready.message) or ""
if stalled ~= nil or status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if status.phase == "Completed" then
  hs.status = "Healthy"
  hs.message = message ~= "" and message or ("Completed: " .. (status.location or ""))
  return hs
end
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. message
end
return hs

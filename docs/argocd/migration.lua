-- Argo CD health of a tenantdb.io Migration, read from what the operator
-- writes: status.observedGeneration, status.phase and the Ready and Stalled conditions.
-- A rollout waiting for spec.approved is Suspended: a person has to act, and
-- nothing is wrong.
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
if generation ~= nil and (status.observedGeneration ~= generation
    or (ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation)) then
  hs.message = "Waiting for the operator to reconcile generation " .. generation
  return hs
end
local message = (ready ~= nil and ready.message) or ""
local phase = status.phase
if phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
if stalled ~= nil or phase == "Failed" or phase == "Halted" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if phase == "Succeeded" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
-- Running or Pending: the rollout goes on, or waits on something transient.
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. message
end
return hs

-- Argo CD health of a tenantdb.io Tenant, read from what the operator writes:
-- status.observedGeneration, status.phase and the Ready, Stalled and
-- IsolationVerified conditions.
local hs = { status = "Progressing", message = "Waiting for the operator" }
local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
local ready, isolation, stalled = nil, nil, nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" and condition.status == "True" then
    stalled = condition
  elseif condition.type == "IsolationVerified" then
    isolation = condition
  end
end
if generation ~= nil and (status.observedGeneration ~= generation
    or (ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation)) then
  hs.message = "Waiting for the operator to reconcile generation " .. generation
  return hs
end
local message = (ready ~= nil and ready.message) or ""
if obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Deleting"
  return hs
end
if stalled ~= nil or status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
if ready ~= nil and ready.status == "True" then
  if isolation ~= nil and isolation.status == "False" then
    hs.status = "Degraded"
    hs.message = isolation.message
    return hs
  end
  hs.status = "Healthy"
  hs.message = message
  return hs
end
-- Pending: a transient failure (database unavailable, busy, waiting for a
-- Migration) the operator retries by itself.
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. message
end
return hs

-- Argo CD custom health check for edgeml.dev/EdgeModel, keyed on its status conditions.
--
--   Degraded=True                        -> Degraded    (retraining stopped after rejections)
--   Ready=True                           -> Healthy     (a model serves; retraining may run)
--   Retraining=True                      -> Progressing (no model serves yet, a Job trains one)
--   Ready=False, reason NoModel          -> Progressing (waiting for the first model)
--   Ready=False, InferenceUnavailable or
--                BrokerUnavailable       -> Degraded    (a model exists but nothing serves it)
--   no status, an old observedGeneration,
--   Ready Unknown or another reason      -> Progressing
--
-- Installed through argocd-cm (see argocd-cm-patch.yaml beside this file). Argo CD runs
-- it with gopher-lua (Lua 5.1): `obj` is the live object, the script returns {status, message}.
local hs = {}

local PROGRESSING_REASONS = { NoModel = true }
local DEGRADED_REASONS = { InferenceUnavailable = true, BrokerUnavailable = true }

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.type .. " (" .. (c.reason or "") .. "): " .. c.message
  end
  return c.type .. " " .. c.status .. " (" .. (c.reason or "") .. ")"
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report conditions"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local conditions = {}
for _, c in ipairs(obj.status.conditions) do
  conditions[c.type] = c
end

local degraded = conditions["Degraded"]
local ready = conditions["Ready"]
local retraining = conditions["Retraining"]

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if retraining ~= nil and retraining.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(retraining)
  return hs
end

if ready ~= nil and ready.status == "False" then
  -- NoModel (PROGRESSING_REASONS) and reasons this script does not know wait as Progressing.
  if DEGRADED_REASONS[ready.reason] and not PROGRESSING_REASONS[ready.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs

-- infra/render.lua: a plan as people read it (+ create, ~ update, -/+
-- replace, - destroy, attribute by attribute, drift, the totals) and as
-- JSON (--json, and the saved plan apply runs); sensitive values hidden in
-- both.
local infra = require("orch.infra")
local infra_plan = require("orch.infra.plan")
local secret = require("orch.secret")

local M = {}

M.SYMBOL = { create = "+", update = "~", replace = "-/+", delete = "-" }
local STYLE = { create = "ok", update = "changed", replace = "changed", delete = "failed" }
M.DOING = { create = "creating", update = "updating", replace = "replacing", delete = "destroying" }
local WORDS = { create = "will be created", update = "will be updated in place", delete = "will be destroyed" }

--- The plan as text; paint(style, text) colours a part (styles: ok,
-- changed, failed, bold), or returns it as it is.
function M.text(plan, paint)
  local out, show = {}, infra_plan.show
  for _, a in ipairs(plan.actions) do
    if a.drift and #a.drift > 0 then
      out[#out + 1] = paint("changed", ("  ! %s changed outside orch:"):format(a.address))
      for _, c in ipairs(a.drift) do
        out[#out + 1] = ("      %s: %s -> %s"):format(c.attr, show(c.from, c.sensitive), show(c.to, c.sensitive))
      end
    end
    if a.gone then out[#out + 1] = paint("changed", ("  ! %s was deleted outside orch"):format(a.address)) end
    if M.SYMBOL[a.action] then
      local words = WORDS[a.action] or ("must be replaced (%s)"):format(a.reason or "")
      out[#out + 1] = paint(STYLE[a.action], ("  %s %s"):format(M.SYMBOL[a.action], a.address)) .. "  " .. words
      for _, c in ipairs(a.action ~= "delete" and a.changes or {}) do
        if a.action == "update" or (a.action == "replace" and c.from ~= nil) then
          out[#out + 1] = ("      ~ %s: %s -> %s%s"):format(c.attr, show(c.from, c.sensitive), show(c.to, c.sensitive),
            c.forces and "  (forces replacement)" or "")
        else
          out[#out + 1] = ("      + %s = %s"):format(c.attr, show(c.to, c.sensitive))
        end
      end
    end
  end
  if #out == 0 then out[1] = "  No changes: the infrastructure matches the configuration." end
  for _, item in ipairs(plan.after or {}) do
    if item.kind == "play" then
      out[#out + 1] = ("  then: play %q on %s (after apply)"):format(item.name, item.spec.on)
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = paint("bold", ("Plan: %d to add, %d to change, %d to destroy."):format(plan.counts.add,
    plan.counts.change, plan.counts.destroy))
  return table.concat(out, "\n")
end

--- The plan as JSON (--json, -out): values resolved where known, sensitive
-- ones hidden; with sealer (-out), what apply needs to run it exactly,
-- its secrets sealed.
function M.json(plan, file, sealer)
  local function clean(v, sensitive)
    if sensitive then return "(sensitive)" end
    if v == infra.UNKNOWN then return { ["$unknown"] = true } end
    if secret.is(v) then return "(sensitive)" end
    if type(v) == "string" then return secret.scrub(v) end
    if type(v) == "table" then
      local o = {}
      for k, x in pairs(v) do o[k] = clean(x) end
      return o
    end
    return v
  end
  local function masked(attrs, hidden)
    if type(attrs) ~= "table" then return nil end
    local o = {}
    for k, v in pairs(attrs) do o[k] = clean(v, hidden and hidden[k]) end
    return o
  end
  local actions = {}
  for i, a in ipairs(plan.actions) do
    local changes = {}
    for j, c in ipairs(a.changes or {}) do
      changes[j] = { attr = c.attr, from = clean(c.from, c.sensitive), to = clean(c.to, c.sensitive), forces = c.forces }
    end
    actions[i] = { address = a.address, type = a.type, action = a.action, reason = a.reason, deps = a.deps,
      -- what apply PLAN will use: the attributes as planned
      attrs = sealer and a.want and sealer.seal_secrets(a.want) or nil,
      changes = changes, lifecycle = a.lifecycle, want = masked(a.want, a.sensitive), have = masked(a.have, a.sensitive),
      recorded = a.recorded and masked(a.recorded.attrs, a.sensitive) }
    if a.drift then
      actions[i].drift = {}
      for j, c in ipairs(a.drift) do
        actions[i].drift[j] = { attr = c.attr, from = clean(c.from, c.sensitive), to = clean(c.to, c.sensitive) }
      end
    end
  end
  return { orch_plan = 1, file = file, workspace = plan.workspace, lineage = plan.lineage, serial = plan.serial,
    counts = plan.counts, actions = actions, outputs = plan.outputs }
end

return M

-- infra/plan.lua: what apply would do: every resource in state refreshed
-- through its provider's read (in parallel), each declared one resolved
-- (references to what isn't known yet are "known after apply") and
-- compared: create, update in place, replace (naming the attribute that
-- forces it), destroy, or nothing; and drift, what changed outside orch.
local fs = require("orch.core.fs")
local task = require("orch.task")
local secret = require("orch.secret")

-- secret.is, inlined: it runs on every table of every resource's attributes
local SECRET = getmetatable(secret.new(""))
local function is_secret(v) return getmetatable(v) == SECRET end
-- v with secrets revealed (v itself when there are none: nothing here writes to it)
local function reveal(v)
  if type(v) ~= "table" or not secret.any() then return v end
  return (secret.reveal_deep(v))
end
local providers = require("orch.resource.providers")
local fileattrs = require("orch.fileattrs")
local infra = require("orch.infra")

local M = {}

local UNKNOWN = infra.UNKNOWN

local deep_equal = require("orch.tables").deep_equal

-- ---- file types: compared by content hash, mode and owner -------------

-- A file type's object as infrastructure sees it.
local function file_read(ctx, typedef, attrs)
  local path = typedef.path and typedef.path(attrs) or attrs.path
  local st = ctx.host:stat(path, { sha256 = true })
  if not st then return nil end
  return { path = path, sha256 = st.sha256, mode = fileattrs.octal(st.mode), owner = st.user, group = st.group }
end

-- want as a file type's object: the content it renders, hashed (unknown
-- when want holds values apply has yet to learn).
local function file_want(ctx, typedef, want, open)
  local path = typedef.path and typedef.path(want) or want.path
  if open then
    return { path = path, sha256 = UNKNOWN, mode = math.type(want.mode) == "integer" and fileattrs.octal(want.mode) or nil,
      owner = want.owner, group = want.group }
  end
  local content = typedef.content(ctx, want, nil)
  return { path = path, sha256 = content and fs.sha256_data(content),
    mode = want.mode and fileattrs.octal(want.mode), owner = want.owner, group = want.group }
end

--- The provider's view of an object: read(ctx, attrs), with file types
-- adapted. nil when the object is gone.
function M.read(ctx, typedef, attrs)
  if typedef.file then return file_read(ctx, typedef, attrs) end
  return typedef.read(ctx, attrs)
end

-- ---- comparing --------------------------------------------------------

-- How a value shows in a plan.
function M.show(v, sensitive)
  if v == UNKNOWN then return "(known after apply)" end
  if sensitive or is_secret(v) then return "(sensitive)" end
  if v == nil then return "(none)" end
  if type(v) == "table" and infra.has_unknown(v) then
    -- a list or map with values still to come: each shown as it is
    local parts, keys = {}, {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = (math.type(k) == "integer" and "" or (tostring(k) .. " = ")) .. M.show(v[k])
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if type(v) == "string" then
    -- a plain string may still hold a secret's text ("echo " .. token.value)
    return '"' .. secret.scrub(v):gsub('[\\"\n\t]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\t"] = "\\t" }) .. '"'
  end
  -- a secret inside a table shows as (sensitive) even where the caller
  -- didn't know it was there
  if type(v) == "table" then return (require("orch.json").encode(secret.scrub(v)):gsub("\\/", "/")) end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
  return tostring(v)
end

local EMPTY = {}   -- the spec of an attribute the schema doesn't name (a file's sha256)
local function by_attr(a, b) return a.attr < b.attr end

-- The attributes of want that differ from have: { attr, from, to, forces }.
-- (Runs for every resource of a plan: no allocation unless something differs.)
local function changes_of(typedef, want, have, lifecycle)
  local ignored = lifecycle.ignore_changes
  local out = {}
  for attr, v in pairs(want) do
    local spec = typedef.schema[attr] or EMPTY
    local differs = v == UNKNOWN or (type(v) == "table" and infra.has_unknown(v))
      or not deep_equal(reveal(v), have and have[attr])
    if differs and not (spec.computed and not spec.optional) and spec.diff ~= false
        and not (ignored and infra.contains(ignored, attr)) then
      out[#out + 1] = { attr = attr, from = have and have[attr], to = v, forces = spec.force_new or nil }
    end
  end
  if #out > 1 then table.sort(out, by_attr) end
  return out
end

-- What the world changed since orch recorded it: { attr, from, to }.
local function drift_of(recorded, have)
  local out = {}
  for attr, v in pairs(recorded) do
    if have[attr] ~= nil and attr ~= "pid" and not deep_equal(reveal(v), have[attr]) then
      out[#out + 1] = { attr = attr, from = v, to = have[attr] }
    end
  end
  if #out > 1 then table.sort(out, by_attr) end
  return out
end

-- The schema's sensitive attributes, per type.
local sensitive_by_type = setmetatable({}, { __mode = "k" })
local function sensitive_of(typedef)
  local set = sensitive_by_type[typedef]
  if not set then
    set = {}
    for k, spec in pairs(typedef.schema) do if spec.sensitive then set[k] = true end end
    sensitive_by_type[typedef] = set
  end
  return set
end

-- A declared resource against what is there: its action (create, update,
-- replace, noop), the changes, and drift.
local function compare(r, want, have, recorded, ctx)
  local a = { address = r.address, type = r.type, deps = {}, lifecycle = r.lifecycle, want = r.attrs,
    sensitive = setmetatable({}, { __index = sensitive_of(r.typedef) }), have = have, recorded = recorded }
  -- an attribute is sensitive as a whole when anything in it is, now or
  -- as recorded: its old value may be the secret the new one no longer is
  for k, v in pairs(want) do if secret.find(v) then a.sensitive[k] = true end end
  for _, k in ipairs(recorded and recorded.sensitive or {}) do a.sensitive[k] = true end
  local open = not r.static and infra.has_unknown(want)
  local typedef = r.typedef
  if recorded and recorded.type ~= r.type then
    a.action, a.reason = "replace", ("its type changed from %s"):format(recorded.type)
  elseif not have then
    a.action = "create"
    a.gone = recorded ~= nil
  else
    if typedef.file then
      a.changes = changes_of(typedef, file_want(ctx, typedef, reveal(want), open), have, r.lifecycle)
    elseif typedef.diff and not open then
      -- the type knows what counts (a directory's recurse, a command's guard)
      a.changes = typedef.diff(ctx, reveal(want), have) or {}
      for _, c in ipairs(a.changes) do c.forces = (typedef.schema[c.attr] or EMPTY).force_new or nil end
    else
      a.changes = changes_of(typedef, want, have, r.lifecycle)
    end
    a.drift = drift_of(recorded.attrs, have)
    local forces = {}
    for _, c in ipairs(a.changes) do if c.forces then forces[#forces + 1] = c.attr end end
    if #forces > 0 then a.action, a.reason = "replace", table.concat(forces, ", ") .. " forces replacement"
    elseif #a.changes > 0 then a.action = "update"
    else a.action = "noop" end
  end
  if a.action == "create" or a.action == "replace" then
    -- every attribute is set anew; a replace keeps what changed (and forces it)
    local changed = {}
    for _, c in ipairs(a.changes or {}) do changed[c.attr] = c end
    a.changes = {}
    for attr, v in pairs(want) do
      local spec = typedef.schema[attr] or EMPTY
      if spec.type == "mode" and math.type(v) == "integer" then v = fileattrs.octal(v) end
      a.changes[#a.changes + 1] = changed[attr] or { attr = attr, to = v }
    end
    for attr, spec in pairs(typedef.schema) do
      if spec.computed and want[attr] == nil then a.changes[#a.changes + 1] = { attr = attr, to = UNKNOWN } end
    end
    table.sort(a.changes, function(x, y) return x.attr < y.attr end)
  end
  for _, c in ipairs(a.changes or EMPTY) do c.sensitive = a.sensitive[c.attr] or nil end
  for _, c in ipairs(a.drift or EMPTY) do c.sensitive = a.sensitive[c.attr] or nil end
  return a
end

-- What references to a's object see after apply: unknown where apply
-- decides, and secret where the attribute is sensitive (what refers to
-- it becomes sensitive too).
local function after_of(typedef, a, want)
  local after = {}
  if a.have and a.action ~= "replace" then for k, v in pairs(a.have) do after[k] = v end end
  for k, v in pairs(want) do after[k] = v end
  if a.action == "create" or a.action == "replace" then
    for attr, spec in pairs(typedef.schema) do
      if spec.computed and want[attr] == nil then after[attr] = UNKNOWN end
    end
  end
  for k, v in pairs(after) do
    if a.sensitive[k] and v ~= UNKNOWN then after[k] = secret.wrap_deep(v, a.address .. "." .. k) end
  end
  return after
end

--- The plan for config against workspace ws: opts { parallelism, context
-- (fn(type, typedef) -> provider ctx), destroy (plan to destroy all) }.
-- Returns { actions (in dependency order), by_address, counts }.
function M.make(config, ws, opts)
  local state, state_order = ws:resources()
  local plan = { actions = {}, by = {}, workspace = ws.name, lineage = ws.lineage, serial = ws.serial,
    destroy = opts.destroy or nil,
    counts = { add = 0, change = 0, destroy = 0 } }

  -- refresh: read every object in state, bounded
  local refreshed = {}
  local results = task.map(state_order, opts.parallelism or 10, function(addr)
    local s = state[addr]
    local r = config.resources[addr]
    local typedef = r and r.typedef or providers.find(s.type, config.playbook_dir)
    if not typedef then error(("%s: its type %s is no longer found in any providers/ folder"):format(addr, s.type), 0) end
    local have = M.read(opts.context(s.type, typedef), typedef, reveal(s.attrs))
    refreshed[addr] = have or false
  end)
  for i, res in ipairs(results) do
    if not res.ok then error(("%s: refresh failed: %s"):format(state_order[i], require("orch.errors").message(res.err)), 0) end
  end

  local function add(a)
    plan.actions[#plan.actions + 1] = a
    plan.by[a.address] = a
  end

  -- the value of address.path as apply will know it, or UNKNOWN
  local function lookup(address, path)
    local a = plan.by[address]
    if not a then return UNKNOWN end
    local v = a.after
    for _, k in ipairs(path) do
      if v == UNKNOWN then return UNKNOWN end
      if type(v) ~= "table" then return nil end
      v = v[k]
    end
    if v == nil and a.action ~= "noop" and a.action ~= "update" then return UNKNOWN end
    return v
  end

  if not opts.destroy then
    -- a.after (what references see) is only kept for what is referred to
    local referenced = {}
    for _, r in pairs(config.resources) do
      for d in pairs(r.deps) do for _, t in ipairs(infra.targets(config, d)) do referenced[t] = true end end
    end
    for _, o in pairs(config.outputs) do
      for d in pairs(o.deps) do for _, t in ipairs(infra.targets(config, d)) do referenced[t] = true end end
    end
    for _, addr in ipairs(infra.order(config)) do
      local r = config.resources[addr]
      local want = r.static or infra.check_attrs(r, infra.resolve(r.attrs, lookup))
      local a = compare(r, want, refreshed[addr] or nil, state[addr], opts.context(r.type, r.typedef))
      for d in pairs(r.deps) do
        for _, t in ipairs(infra.targets(config, d)) do a.deps[#a.deps + 1] = t end
      end
      table.sort(a.deps)
      if referenced[addr] then a.after = after_of(r.typedef, a, want) end
      add(a)
      if a.action == "create" or a.action == "replace" then plan.counts.add = plan.counts.add + 1 end
      if a.action == "update" then plan.counts.change = plan.counts.change + 1 end
      if a.action == "replace" then plan.counts.destroy = plan.counts.destroy + 1 end
    end
  end

  -- in state, no longer declared (or everything, to destroy): destroy,
  -- dependants first
  local doomed = {}
  for _, addr in ipairs(state_order) do
    if opts.destroy or not config.resources[addr] then doomed[#doomed + 1] = addr end
  end
  for _, addr in ipairs(doomed) do
    local r = config.resources[addr]
    if r and r.lifecycle.prevent_destroy then
      error(("%s: %s has lifecycle.prevent_destroy: orch will not destroy it (remove that first)"):format(r.where, addr), 0)
    end
    local s = state[addr]
    if refreshed[addr] then
      local sensitive = {}
      for _, k in ipairs(s.sensitive or {}) do sensitive[k] = true end
      add({ address = addr, type = s.type, action = "delete", deps = s.deps, have = refreshed[addr], recorded = s,
        sensitive = sensitive })
      plan.counts.destroy = plan.counts.destroy + 1
    else
      -- gone already: only the record goes
      add({ address = addr, type = s.type, action = "forget", deps = s.deps, recorded = s })
    end
  end

  plan.outputs = {}
  for _, name in ipairs(config.output_order) do
    local o = config.outputs[name]
    plan.outputs[#plan.outputs + 1] = { name = name, value = o.value, sensitive = o.sensitive }
  end
  return plan
end

--- Does the plan change anything?
function M.has_changes(plan)
  for _, a in ipairs(plan.actions) do
    if a.action ~= "noop" or (a.drift and #a.drift > 0) then return true end
  end
  return false
end

return M

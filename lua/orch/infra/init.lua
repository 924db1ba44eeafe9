-- infra/init.lua: the infrastructure DSL: `resource "TYPE" "NAME" { ... }`,
-- `variable`, `output`; references between resources (`web.address`,
-- also inside strings and tables), checked whole (types, attributes,
-- references, cycles) before anything runs.
local errors = require("orch.errors")
local schema_mod = require("orch.resource.schema")
local providers = require("orch.resource.providers")
local secret = require("orch.secret")

-- secret.is, inlined: it runs on every table of every resource's attributes
local SECRET = getmetatable(secret.new(""))
local function is_secret(v) return getmetatable(v) == SECRET end

local M = {}

-- A reference is kept as plain data, so a plan can be saved as JSON and
-- resolved later: { ["$ref"] = address, path = { "attr", ... } }, and a
-- string built from references { ["$concat"] = { part, ... } }.
local Ref = {}
-- what a reference points at, beside it: any field name is an attribute
local target = setmetatable({}, { __mode = "k" })

local function ref(address, path)
  local r = setmetatable({}, Ref)
  target[r] = { address = address, path = path or {} }
  return r
end

local function is_ref(v) return getmetatable(v) == Ref end

Ref.__index = function(r, k)
  if type(k) ~= "string" and math.type(k) ~= "integer" then error("a reference is indexed by a name", 2) end
  local t = target[r]
  local path = table.move(t.path, 1, #t.path, 1, {})
  path[#path + 1] = k
  return ref(t.address, path)
end

local Concat = {}
local function parts_of(v)
  if getmetatable(v) == Concat then return v.parts end
  return { v }
end
local function concat(a, b)
  local parts = {}
  for _, p in ipairs(parts_of(a)) do parts[#parts + 1] = p end
  for _, p in ipairs(parts_of(b)) do parts[#parts + 1] = p end
  return setmetatable({ parts = parts }, Concat)
end
Ref.__concat, Concat.__concat = concat, concat
Ref.__tostring = function(r)
  local t = target[r]
  error(("%s%s can't become a string while the playbook loads: join it with .. instead"):format(
    t.address, #t.path > 0 and ("." .. table.concat(t.path, ".")) or ""), 2)
end
Concat.__tostring = function() error("a string made with a reference can't be used while the playbook loads", 2) end

--- v with references turned into plain markers (secrets kept as they are).
local function freeze(v)
  if is_ref(v) then
    return { ["$ref"] = target[v].address, path = target[v].path }
  elseif getmetatable(v) == Concat then
    local parts = {}
    for i, p in ipairs(v.parts) do parts[i] = freeze(p) end
    return { ["$concat"] = parts }
  elseif type(v) == "table" and not is_secret(v) then
    local out = {}
    for k, x in pairs(v) do out[k] = freeze(x) end
    return out
  end
  return v
end

-- The addresses frozen value v refers to, into deps.
local function collect_deps(v, deps)
  if type(v) ~= "table" or is_secret(v) then return deps end
  if v["$ref"] then deps[v["$ref"]] = true end
  for _, x in pairs(v) do collect_deps(x, deps) end
  return deps
end

-- Frozen v with each.key / each.value put in (for one for_each instance).
local function put_each(v, key, value)
  if type(v) ~= "table" or is_secret(v) then return v end
  if v["$ref"] == "each" then
    local x = v.path[1] == "key" and key or value
    for i = 2, #v.path do x = type(x) == "table" and x[v.path[i]] or nil end
    return x
  end
  local out = {}
  for k, x in pairs(v) do out[k] = put_each(x, key, value) end
  if out["$concat"] then   -- made only of plain values now: a plain string
    for _, p in ipairs(out["$concat"]) do
      if type(p) == "table" and not is_secret(p) then return out end
    end
    return M.resolve(out)
  end
  return out
end

-- r's attributes (frozen) and the dependencies they and depends_on make.
local function set_attrs(r, attrs)
  r.attrs = attrs
  r.deps = collect_deps(attrs, {})
  for _, d in ipairs(r.depends_on) do r.deps[d] = true end
end

--- The attributes a saved plan recorded, in place of what the file says now
-- (orch apply PLAN applies what was planned), its secrets opened with
-- sealer; checked again.
function M.use_planned(config, actions, sealer)
  for _, a in ipairs(actions) do
    local r = config.resources[a.address]
    if r and a.attrs then
      set_attrs(r, sealer.open_secrets(require("orch.json").integers(a.attrs), a.address .. " (saved plan)"))
    end
  end
  for _, r in pairs(config.resources) do r.static = nil end
  config.ordered = nil
  M.check(config)
end

local UNKNOWN = setmetatable({}, { __tostring = function() return "(known after apply)" end,
  __name = "orch.unknown" })
M.UNKNOWN = UNKNOWN

--- v with its markers replaced through lookup(address, path) (a value, or
-- UNKNOWN). A string with an unknown part is unknown.
function M.resolve(v, lookup)
  if type(v) ~= "table" or is_secret(v) then return v end
  if v["$ref"] then return lookup(v["$ref"], v.path) end
  if v["$concat"] then
    -- a string made with a secret is secret
    local out, made_with = {}, nil
    for i, p in ipairs(v["$concat"]) do
      local x = M.resolve(p, lookup)
      if x == UNKNOWN then return UNKNOWN end
      if is_secret(x) then made_with = made_with or x end
      out[i] = is_secret(x) and secret.reveal(x) or tostring(x)
    end
    if made_with then return secret.new(table.concat(out), secret.origin(made_with)) end
    return table.concat(out)
  end
  local out = {}
  for k, x in pairs(v) do out[k] = M.resolve(x, lookup) end
  return out
end

--- Is x in list?
function M.contains(list, x)
  for _, y in ipairs(list) do if y == x then return true end end
  return false
end

--- Does v (resolved) hold an unknown value anywhere?
function M.has_unknown(v)
  if v == UNKNOWN then return true end
  if type(v) == "table" and not is_secret(v) then
    for _, x in pairs(v) do if M.has_unknown(x) then return true end end
  end
  return false
end

--- "lab.host.web" or 'file.f["a"]' as type, name, key; nil if malformed.
function M.parse_address(addr)
  local base, key = addr:match('^(.-)%["(.*)"%]$')
  base = base or addr
  local tname, name = base:match("^([%w_.]+)%.([%w_%-]+)$")
  if not tname then return nil end
  return tname, name, key
end

function M.address(tname, name, key)
  return key and ('%s.%s["%s"]'):format(tname, name, key) or (tname .. "." .. name)
end

local META = { depends_on = true, for_each = true, lifecycle = true }
local LIFECYCLE = { prevent_destroy = true, create_before_destroy = true, ignore_changes = true }

--- A new configuration: the DSL functions (for the playbook's
-- environment) and what they declare: { resources (by address, in order),
-- variables, outputs }.
function M.new(opts)
  local config = { resources = {}, order = {}, variables = {}, outputs = {}, output_order = {},
    playbook_dir = opts.playbook_dir }
  local dsl = {}
  local var_values = opts.vars or {}   -- -var and -var-file, by name

  local where = errors.where

  local types = {}   -- found once per type: a for_each finds it a thousand times
  local function declare(tname, name, key, attrs, meta, at)
    local found = types[tname] or { providers.find(tname, config.playbook_dir) }
    types[tname] = found
    local typedef, path = found[1], found[2]
    if not typedef then
      error(("%s: no resource type '%s' (looked in %s)"):format(at, tname,
        table.concat(providers.dirs(config.playbook_dir), ", ")), 0)
    end
    local depends_on = {}
    for _, d in ipairs(meta.depends_on or {}) do
      local a = is_ref(d) and target[d].address or d
      if type(a) ~= "string" then error(("%s: depends_on takes references or addresses"):format(at), 0) end
      depends_on[#depends_on + 1] = a
    end
    local addr = M.address(tname, name, key)
    if config.resources[addr] then
      error(("%s: %s is declared twice (first at %s)"):format(at, addr, config.resources[addr].where), 0)
    end
    -- the block's label names the object when the type has a `name` the
    -- block leaves out: resource "lab.host" "web01" {} makes host web01
    local name_attr = typedef.schema and typedef.schema.name
    if attrs.name == nil and name_attr and not (name_attr.computed and not name_attr.optional) then
      attrs.name = key and (name .. "-" .. key) or name
    end
    local r = { address = addr, type = tname, name = name, key = key, typedef = typedef, provider_path = path,
      depends_on = depends_on, lifecycle = meta.lifecycle or {}, where = at }
    set_attrs(r, attrs)
    config.resources[addr] = r
    config.order[#config.order + 1] = addr
  end

  -- resource "TYPE" "NAME" { attrs }: declared now, converged by plan/apply
  function dsl.resource(tname)
    if type(tname) ~= "string" then error("resource needs a type name (a string)", 2) end
    return function(name)
      if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
        error(("resource %s: name must be letters, digits, '_' and '-'"):format(tname), 2)
      end
      return function(spec)
        local at = where(2)
        if type(spec) ~= "table" then error(("resource %s.%s: expected a table"):format(tname, name), 2) end
        local attrs, meta = {}, {}
        for k, v in pairs(spec) do
          if META[k] then meta[k] = v else attrs[k] = v end
        end
        for k in pairs(meta.lifecycle or {}) do
          if not LIFECYCLE[k] then error(("%s: lifecycle: unknown key '%s'"):format(at, tostring(k)), 0) end
        end
        local base = ref(tname .. "." .. name)
        attrs = freeze(attrs)
        if meta.for_each == nil then
          declare(tname, name, nil, attrs, meta, at)
          return base
        end
        if type(meta.for_each) ~= "table" or is_ref(meta.for_each) then
          error(("%s: for_each must be a table known when the playbook loads"):format(at), 0)
        end
        local refs, keys, values = {}, {}, {}
        for k, v in pairs(meta.for_each) do
          -- a list gives its values as keys, as Terraform's toset()
          local ekey = math.type(k) == "integer" and tostring(v) or tostring(k)
          keys[#keys + 1], values[ekey] = ekey, v
        end
        table.sort(keys)
        for _, ekey in ipairs(keys) do
          local ok, err = pcall(declare, tname, name, ekey, put_each(attrs, ekey, values[ekey]), meta, at)
          if not ok then error(err, 0) end
          refs[ekey] = ref(M.address(tname, name, ekey))
        end
        return setmetatable(refs, { __index = function(_, k)
          error(("%s.%s has no instance [%q] (for_each keys: %s)"):format(tname, name, tostring(k),
            table.concat(keys, ", ")), 2)
        end })
      end
    end
  end

  -- host and play wait for apply: a host's address may be a reference to
  -- the lab.host that apply makes, and a play configures what exists
  -- (host "name" { ... } or host(name, { ... }), as in a playbook)
  config.after = {}
  function dsl.host(name, attrs)
    if type(name) ~= "string" and not is_ref(name) and getmetatable(name) ~= Concat then
      error("host needs a name (a string, or a reference such as web.name)", 2)
    end
    local at = where(2)
    local function add(a)
      config.after[#config.after + 1] = { kind = "host", name = freeze(name), attrs = freeze(a or {}), where = at }
    end
    if attrs ~= nil then return add(attrs) end
    return add
  end
  function dsl.play(name, spec)
    if type(name) ~= "string" then error("play needs a name (a string)", 2) end
    local at = where(2)
    local function add(s)
      local ok, err = pcall(require("orch.playbook.play").check, name, s)
      if not ok then error(("%s: %s"):format(at, err), 0) end
      config.after[#config.after + 1] = { kind = "play", name = name, spec = s, where = at }
    end
    if spec ~= nil then return add(spec) end
    return add
  end

  -- each.key / each.value inside a for_each resource
  dsl.each = ref("each")

  -- variable "name" { type =, default =, sensitive =, description = }:
  -- its value, from -var, -var-file, ORCH_VAR_name or the default
  function dsl.variable(name)
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then error("variable needs a name like region_1", 2) end
    return function(spec)
      spec = spec or {}
      local v = var_values[name]
      if v == nil then v = os.getenv("ORCH_VAR_" .. name) end
      if v == nil then v = spec.default end
      if v == nil then
        error(("variable '%s' has no value: set it with -var %s=VALUE, -var-file or ORCH_VAR_%s"):format(name, name, name), 2)
      end
      if spec.type == "number" and type(v) == "string" then
        v = tonumber(v) or error(("variable '%s' must be a number, got %q"):format(name, v), 2)
      elseif spec.type == "bool" or spec.type == "boolean" then
        if v == "true" then v = true elseif v == "false" then v = false end
        if type(v) ~= "boolean" then error(("variable '%s' must be true or false"):format(name), 2) end
      end
      if spec.sensitive then
        v = type(v) == "table" and secret.wrap_deep(v, "var." .. name) or secret.new(v, "var." .. name)
      end
      config.variables[name] = { value = v, sensitive = spec.sensitive }
      rawset(dsl.var, name, v)
      return v
    end
  end
  -- var.NAME of a variable not declared (above: a file runs in order) is a
  -- mistake to name, not nil planned as "no content"
  dsl.var = setmetatable({}, { __index = function(_, name)
    error(('var.%s is not declared: add variable "%s" { ... } above the line that uses it'):format(
      tostring(name), tostring(name)), 2)
  end })

  -- output "name" { value = ..., sensitive = }: shown after apply, kept in state
  function dsl.output(name)
    if type(name) ~= "string" then error("output needs a name", 2) end
    return function(spec)
      if type(spec) ~= "table" or spec.value == nil then error(("output '%s': give value = ..."):format(name), 2) end
      local value = freeze(spec.value)
      config.outputs[name] = { value = value, deps = collect_deps(value, {}), sensitive = spec.sensitive,
        where = where(2) }
      config.output_order[#config.output_order + 1] = name
    end
  end

  return dsl, config
end

-- Is v (or something in it) not a plain value yet: unknown, or a reference?
local function is_open(v)
  if v == UNKNOWN then return true end
  if type(v) == "table" and not is_secret(v) then
    if v["$ref"] or v["$concat"] then return true end
    for _, x in pairs(v) do if is_open(x) then return true end end
  end
  return false
end

--- Resource r's attributes want, checked against its type's schema and
-- with its defaults put in. Values not known yet (references, unknown)
-- are left out of the check and put back. Raises "file:line: address: why".
function M.check_attrs(r, want)
  local known, open = {}, {}
  for k, v in pairs(want) do
    if is_open(v) then open[k] = v else known[k] = v end
  end
  local ok, checked = pcall(schema_mod.check, r.type, r.typedef.schema, known)
  if not ok then
    local msg = tostring(checked):gsub("^[^:]*:%d+: ", "")
    local missing = msg:match("missing required attribute '([^']+)'")
    if not (missing and open[missing]) then error(("%s: %s: %s"):format(r.where, r.address, msg), 0) end
    checked = known
  end
  for k, v in pairs(open) do checked[k] = v end
  return checked
end

--- Check a loaded configuration: attributes against each type's schema
-- (references are checked when known), references to resources that
-- exist, and no dependency cycle. Raises with file:line.
function M.check(config)
  for _, addr in ipairs(config.order) do
    local r = config.resources[addr]
    for d in pairs(r.deps) do
      if not config.resources[d] and not config.resources[d .. '["'] then
        local prefix_ok = false
        for other in pairs(config.resources) do
          if other:sub(1, #d + 2) == d .. '["' then prefix_ok = true end
        end
        if not prefix_ok then
          error(("%s: %s refers to %s, which is not declared"):format(r.where, addr, d), 0)
        end
      end
    end
    local sch = r.typedef.schema
    for k in pairs(r.attrs) do
      if not sch[k] and not schema_mod.meta[k] then
        local names = {}
        for n in pairs(sch) do names[#names + 1] = n end
        table.sort(names)
        error(("%s: %s: unknown attribute '%s'%s"):format(r.where, addr, k,
          require("orch.suggest").did_you_mean(k, names) or ""), 0)
      end
      if sch[k] and sch[k].computed and not sch[k].optional then
        error(("%s: %s: '%s' is computed by the provider, it can't be set"):format(r.where, addr, k), 0)
      end
    end
    -- with no references, what apply gets is known now, once
    local checked = M.check_attrs(r, r.attrs)
    if not is_open(r.attrs) then r.static = checked end
  end
  M.order(config)   -- raises on a cycle
  -- as Terraform: an output that shows a sensitive value must say so
  for _, name in ipairs(config.output_order) do
    local o = config.outputs[name]
    local source = not o.sensitive and M.sensitive_source(config, o.value)
    if source then
      error(("%s: output '%s' shows a sensitive value (from %s): declare it sensitive = true, or leave that value out"):format(
        o.where, name, source), 0)
    end
  end
end

-- The instances a dependency address names: itself, or all of a for_each.
local function targets(config, d)
  if config.resources[d] then return { d } end
  local list = {}
  for _, a in ipairs(config.order) do
    if a:sub(1, #d + 2) == d .. '["' then list[#list + 1] = a end
  end
  return list
end
M.targets = targets

--- Where frozen value v gets a sensitive value from ("var.pw",
-- "lab.database.db.url"), following references through the attributes
-- they point at; nil when nothing in it is sensitive.
function M.sensitive_source(config, v, seen)
  if is_secret(v) then return secret.origin(v) or "a secret() value" end
  if type(v) ~= "table" then return nil end
  seen = seen or {}
  if seen[v] then return nil end
  seen[v] = true
  if v["$ref"] then
    local attr = v.path[1]
    for _, addr in ipairs(targets(config, v["$ref"])) do
      local r = config.resources[addr]
      for k, spec in pairs(r.typedef.schema) do
        if spec.sensitive and (attr == nil or attr == k) then return addr .. "." .. k end
      end
      local found = M.sensitive_source(config, attr and r.attrs[attr] or (not attr and r.attrs), seen)
      if found then return found end
    end
    return nil
  end
  for _, x in pairs(v) do
    local found = M.sensitive_source(config, x, seen)
    if found then return found end
  end
end

--- Addresses in dependency order (dependencies first); a cycle raises,
-- named resource by resource. Worked out once per configuration.
local sort_addresses
function M.order(config)
  if not config.ordered then config.ordered = sort_addresses(config) end
  return config.ordered
end

function sort_addresses(config)
  local state, stack, out = {}, {}, {}
  local function visit(addr)
    if state[addr] == "done" then return end
    if state[addr] == "active" then
      local from
      for i, a in ipairs(stack) do if a == addr then from = i end end
      local cycle = table.move(stack, from, #stack, 1, {})
      cycle[#cycle + 1] = addr
      error(("%s: resources form a cycle: %s"):format(config.resources[addr].where, table.concat(cycle, " -> ")), 0)
    end
    state[addr] = "active"
    stack[#stack + 1] = addr
    local deps = {}
    for d in pairs(config.resources[addr].deps) do
      for _, t in ipairs(targets(config, d)) do deps[#deps + 1] = t end
    end
    table.sort(deps)
    for _, d in ipairs(deps) do visit(d) end
    stack[#stack] = nil
    state[addr] = "done"
    out[#out + 1] = addr
  end
  for _, addr in ipairs(config.order) do visit(addr) end
  return out
end

return M

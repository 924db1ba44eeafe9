-- resource/schema.lua: check a resource's attributes against its type's schema:
-- types, required, defaults, enums, and typos named with a suggestion.
local secret = require("orch.secret")

local M = {}

-- Attributes every resource takes; the engine handles them, providers
-- never see them.
M.meta = {
  notify = { type = { "string", "list" } },
  when = { type = "boolean" },
}

-- The closest attribute name (the type's or the engine's) to a typo.
local function suggest(name, schema)
  local names = {}
  for k in pairs(schema) do names[#names + 1] = k end
  for k in pairs(M.meta) do names[#names + 1] = k end
  table.sort(names)
  return require("orch.suggest").did_you_mean(name, names)
end

local function is_list(v)
  if type(v) ~= "table" or getmetatable(v) then return false end
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- mode: "0644", "644" or "0o644"; a Lua number is refused, since 0644
-- in Lua is decimal 644 and would silently mean 01204.
local function to_mode(v)
  if type(v) ~= "string" then return nil end
  local digits = v:match("^0?[oO]?([0-7][0-7][0-7][0-7]?)$")
  return digits and tonumber(digits, 8)
end

local checks = {
  string = function(v) return type(v) == "string" or type(v) == "number" or secret.is(v) end,
  number = function(v) return type(v) == "number" end,
  integer = function(v) return math.type(v) == "integer" end,
  boolean = function(v) return type(v) == "boolean" end,
  list = is_list,
  map = function(v) return type(v) == "table" and not getmetatable(v) and (next(v) == nil or not is_list(v)) end,
  table = function(v) return type(v) == "table" end,
  ["function"] = function(v) return type(v) == "function" end,
  mode = function(v) return to_mode(v) ~= nil end,
  any = function() return true end,
}

local function describe_type(t)
  if type(t) == "table" then return table.concat(t, " or ") end
  if t == "mode" then return 'a mode string like "0644"' end
  return t
end

local function type_ok(t, v)
  if type(t) == "table" then
    for _, one in ipairs(t) do
      if type_ok(one, v) then return true end
    end
    return false
  end
  local check = checks[t]
  if not check then error("schema: unknown type '" .. tostring(t) .. "'", 0) end
  return check(v)
end

local function show(v)
  if secret.is(v) then return "(sensitive)" end
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" or type(v) == "function" then return "" end
  return tostring(v)
end

--- The attribute a call gives positionally (file { "/etc/x" }): the one
-- marked positional, else path, else name.
function M.positional(schema)
  for k, spec in pairs(schema) do
    if spec.positional then return k end
  end
  if schema.path then return "path" end
  if schema.name then return "name" end
end

--- Check attrs for type `tname`; raises "what: why" at `level`. Returns
-- want (attributes with defaults applied, modes as integers, strings
-- coerced) and meta (notify, when). Secrets stay wrapped in want.
function M.check(tname, schema, attrs, level)
  level = (level or 1) + 1
  if type(attrs) ~= "table" then
    error(("%s: expected a table of attributes, got %s"):format(tname, type(attrs)), level)
  end
  local key = M.positional(schema)
  local want, meta = {}, {}
  for k, v in pairs(attrs) do
    if k == 1 and key then
      want[key] = v
    elseif math.type(k) == "integer" then
      error(("%s: unexpected positional value #%d %s"):format(tname, k, show(v)), level)
    elseif M.meta[k] then
      meta[k] = v
    elseif schema[k] then
      if want[k] ~= nil and k == key then
        error(("%s: '%s' given twice (positionally and by name)"):format(tname, k), level)
      end
      want[k] = v
    else
      error(("%s: unknown attribute '%s'%s"):format(tname, tostring(k), suggest(tostring(k), schema)), level)
    end
  end
  local label = key and want[key] ~= nil and ("%s %s"):format(tname, show(want[key])) or tname
  for k, spec in pairs(schema) do
    local v = want[k]
    if v == nil and spec.default ~= nil then
      v = spec.default
      want[k] = v
    end
    if v == nil then
      if spec.required then error(("%s: missing required attribute '%s'"):format(label, k), level) end
    else
      if spec.type and not type_ok(spec.type, v) then
        local got = is_list(v) and next(v) ~= nil and "a list" or (type(v) .. " " .. show(v)):gsub(" $", "")
        error(("%s: attribute '%s' must be %s, got %s"):format(label, k, describe_type(spec.type), got), level)
      end
      if spec.enum then
        local found = false
        for _, e in ipairs(spec.enum) do if e == v then found = true end end
        if not found then
          error(("%s: attribute '%s' must be one of %s; got %s"):format(label, k,
            table.concat(spec.enum, ", "), show(v)), level)
        end
      end
      if spec.check then
        local ok, why = spec.check(v)
        if not ok then error(("%s: attribute '%s' %s"):format(label, k, why or "is not valid"), level) end
      end
      if spec.type == "mode" then want[k] = to_mode(v)
      elseif spec.type == "string" and type(v) == "number" then want[k] = tostring(v) end
      if spec.sensitive and not secret.is(want[k]) and type(want[k]) == "string" then
        want[k] = secret.new(want[k])
      end
    end
  end
  for k, spec in pairs(M.meta) do
    if meta[k] ~= nil and not type_ok(spec.type, meta[k]) then
      error(("%s: attribute '%s' must be %s, got %s"):format(label, k, describe_type(spec.type), type(meta[k])), level)
    end
  end
  if type(meta.notify) == "string" then meta.notify = { meta.notify } end
  return want, meta, label
end

return M

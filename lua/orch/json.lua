-- json.lua: JSON for playbooks: lua-cjson's decoder, and an encoder whose
-- output is the same on every run (keys sorted), since Lua's table order
-- changes between runs and a file resource would see a change each time.
local cjson = require("cjson")

local M = { null = cjson.null }

-- A decoder of JSON as RFC 8259 has it: NaN, Infinity and hex numbers are
-- refused (lua-cjson takes them by default, then can't encode them again).
local strict = cjson.new()
strict.decode_invalid_numbers(false)

local function finite(v, path)
  if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
    error(("number out of range%s"):format(path ~= "" and (" at " .. path) or ""), 0)
  end
  if type(v) == "table" then
    for k, x in pairs(v) do finite(x, path .. "/" .. tostring(k)) end
  end
end

--- text as a Lua value; raises on invalid JSON and on numbers a double
-- can't hold (1e999), which no encoder could write back.
function M.decode(text)
  local ok, v = pcall(strict.decode, text)
  if not ok then error("invalid JSON: " .. tostring(v), 2) end   -- at the caller's line, not ours
  local fine, why = pcall(finite, v, "")
  if not fine then error(why, 2) end
  return v
end

--- v with whole floats as integers again, as they were written: cjson
-- gives every number back as a float, and 3.0 prints as "3.0". A copy.
function M.integers(v)
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then return math.tointeger(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.integers(x) end
  return out
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local function encode(v, indent, depth, out, seen)
  local t = type(v)
  if t ~= "table" then
    out[#out + 1] = cjson.encode(v)
    return
  end
  if seen[v] then error("json.encode: a table contains itself", 0) end
  seen[v] = true
  local pad = indent and ("\n" .. indent:rep(depth + 1)) or ""
  local close = indent and ("\n" .. indent:rep(depth)) or ""
  local sep = indent and ": " or ":"
  if next(v) == nil then
    out[#out + 1] = (cjson.empty_array_mt and getmetatable(v) == cjson.empty_array_mt) and "[]" or "{}"
  elseif is_array(v) then
    out[#out + 1] = "["
    for i = 1, #v do
      out[#out + 1] = (i > 1 and "," or "") .. pad
      encode(v[i], indent, depth + 1, out, seen)
    end
    out[#out + 1] = close .. "]"
  else
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" and type(k) ~= "number" then
        error("json.encode: keys must be strings or numbers, got " .. type(k), 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      out[#out + 1] = (i > 1 and "," or "") .. pad .. cjson.encode(tostring(k)) .. sep
      encode(v[k], indent, depth + 1, out, seen)
    end
    out[#out + 1] = close .. "}"
  end
  seen[v] = nil
end

--- Encode v with object keys sorted; opts.indent (e.g. "  ") pretty-prints.
function M.encode(v, opts)
  local out = {}
  encode(v, opts and opts.indent, 0, out, {})
  return table.concat(out)
end

return M

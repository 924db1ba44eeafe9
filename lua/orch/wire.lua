-- wire.lua: Lua values as bytes and back, for messages between orch's own
-- processes (host/persist.lua and its keeper): nil, booleans, numbers,
-- strings and tables of them, nested, holes and all. Not for anything
-- another program reads, and never loaded from a source orch didn't start.
local pack, unpack = string.pack, string.unpack
local mtype = math.type

local M = {}

local function put(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = pack("<c1s4", "s", v)
  elseif t == "table" then
    out[#out + 1] = "{"
    for k, x in next, v do
      put(k, out)
      put(x, out)
    end
    out[#out + 1] = "}"
  elseif mtype(v) == "integer" then
    out[#out + 1] = pack("<c1j", "i", v)
  elseif t == "number" then
    out[#out + 1] = pack("<c1n", "d", v)
  elseif t == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif t == "nil" then
    out[#out + 1] = "N"
  else
    error(("wire: cannot send a %s"):format(t), 3)
  end
end

--- The bytes for v.
function M.encode(v)
  local out = {}
  put(v, out)
  return table.concat(out)
end

local function get(s, pos)
  local tag = s:sub(pos, pos)
  if tag == "s" then return unpack("<s4", s, pos + 1)
  elseif tag == "i" then return unpack("<j", s, pos + 1)
  elseif tag == "d" then return unpack("<n", s, pos + 1)
  elseif tag == "T" then return true, pos + 1
  elseif tag == "F" then return false, pos + 1
  elseif tag == "N" then return nil, pos + 1
  elseif tag == "{" then
    local t = {}
    pos = pos + 1
    while s:sub(pos, pos) ~= "}" do
      local k, v
      k, pos = get(s, pos)
      v, pos = get(s, pos)
      t[k] = v
    end
    return t, pos + 1
  end
  error(("wire: garbled message at byte %d"):format(pos), 0)
end

--- The value bytes s hold (raises on bytes encode did not make).
function M.decode(s)
  local v, pos = get(s, 1)
  if pos ~= #s + 1 then error(("wire: %d stray bytes after the value"):format(#s + 1 - pos), 0) end
  return v
end

return M

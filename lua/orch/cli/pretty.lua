-- cli/pretty.lua: values as readable Lua-like text, for the REPL: keys sorted,
-- nested tables indented (on one line when they fit), cycles marked,
-- strings quoted.
local term = require("orch.core.term")

local M = {}

local RESERVED = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do RESERVED[w] = true end

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

local function quote(str)
  return '"' .. str:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\x%02x"):format(c:byte())
  end) .. '"'
end

-- Text of several lines reads best as it is: a long bracket string, which
-- Lua reads back to the same value (the newline after [[ is not part of it).
local function string_text(str)
  local _, lines = str:gsub("\n", "")
  if lines < 2 or str:find("[\0-\8\11-\31\127]") then return quote(str) end
  local eq = ""
  while str:find("]" .. eq .. "]", 1, true) do eq = eq .. "=" end
  return "[" .. eq .. "[\n" .. str .. "]" .. eq .. "]"
end

local function function_text(f)
  local fi = debug.getinfo(f, "S")
  if fi.what == "C" then return "function: builtin" end
  return ("function: %s:%d"):format(fi.short_src, fi.linedefined)
end

local function scalar_text(v)
  local t = type(v)
  if t == "string" then return string_text(v) end
  if t == "function" then return function_text(v) end
  local ok, text = pcall(tostring, v)
  return ok and text or ("<%s>"):format(t)
end

local KEY_RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ra, rb = KEY_RANK[type(a)] or 4, KEY_RANK[type(b)] or 4
  if ra ~= rb then return ra < rb end
  if ra == 1 or ra == 2 then return a < b end
  return tostring(a) < tostring(b)
end

local MAX_DEPTH = 12

-- v as text at indentation ind; `path` holds the tables being printed
-- (a table met again inside itself is a cycle).
local function render(v, ind, path, depth, width)
  if type(v) ~= "table" then return scalar_text(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring and mt.__name ~= "orch.results" then
    local ok, text = pcall(tostring, v)
    if ok and type(text) == "string" then return text end
  end
  if path[v] then return ("<cycle: table %p>"):format(v) end
  if depth > MAX_DEPTH then return "{...}" end
  path[v] = true
  local items, inner = {}, ind .. "  "
  local n = 0
  while rawget(v, n + 1) ~= nil do
    n = n + 1
    items[n] = render(rawget(v, n), inner, path, depth + 1, width)
  end
  local keys = {}
  for k in next, v do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    local key
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not RESERVED[k] then key = k
    elseif type(k) == "table" then key = "[<table " .. ("%p"):format(k) .. ">]"
    else key = "[" .. scalar_text(k) .. "]" end
    items[#items + 1] = key .. " = " .. render(rawget(v, k), inner, path, depth + 1, width)
  end
  path[v] = nil
  if #items == 0 then return "{}" end
  local line = "{ " .. table.concat(items, ", ") .. " }"
  if not line:find("\n") and #ind + #line <= width then return line end
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. ",\n" .. ind .. "}"
end

--- v as readable text (tables expanded; a Results' data, not its summary).
function M.format(v)
  local width = term.size("stdout") or 80
  return render(v, "", {}, 1, math.max(40, math.min(width, 120)))
end

return M

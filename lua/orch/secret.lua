-- secret.lua: values marked secret(v): shown as "(sensitive)" everywhere
-- and scrubbed from any text orch emits or stores.
local base64 = require("orch.base64")

local M = {}

local Secret = { __name = "orch.secret" }
local plain = setmetatable({}, { __mode = "k" })  -- secret -> its value
local origins = setmetatable({}, { __mode = "k" })  -- secret -> where it came from ("var.pw")
local known = {}      -- every secret value seen in this process, for scrubbing
local count = 0

function Secret.__tostring() return "(sensitive)" end

-- The forms a value leaks in besides its own, as CI runners mask them: its
-- base64 at each of the three byte alignments (the part bytes around it
-- can't change), its URL encoding, and each line of a multi-line one (a
-- log is kept line by line). Short forms would mask ordinary text.
local function forms_of(value)
  local forms = {}
  local function add(f) if #f >= 6 and f ~= value then forms[#forms + 1] = f end end
  add((value:gsub("[^%w%-._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)))
  if #value >= 5 then
    for shift = 0, 2 do
      local enc = base64.encode(("\0"):rep(shift) .. value)
      local full = (#value + shift) // 3 * 4     -- whole groups only
      add(enc:sub(({ 1, 3, 4 })[shift + 1], full))
    end
  end
  if value:find("\n", 1, true) then
    for line in value:gmatch("[^\r\n]+") do add(line) end
  end
  return forms
end

local function remember(value)
  if value == "" or known[value] then return end
  known[value] = true
  count = count + 1
  for _, f in ipairs(forms_of(value)) do known[f] = true end
end

--- Mark a value secret; origin names where it comes from, for messages
-- ("var.db_password"). Strings built from a secret with .. stay secret.
function M.new(value, origin)
  if getmetatable(value) == Secret then return value end
  if type(value) ~= "string" and type(value) ~= "number" then
    error("secret() takes a string or a number, got " .. type(value), 2)
  end
  value = tostring(value)
  local s = setmetatable({}, Secret)
  plain[s] = value
  origins[s] = origin
  remember(value)
  return s
end

function Secret.__concat(a, b)
  return M.new(M.reveal(a) .. M.reveal(b), M.origin(a) or M.origin(b))
end

function Secret.__eq(a, b) return M.reveal(a) == M.reveal(b) end

function Secret.__len(s) return #plain[s] end

function M.is(v) return getmetatable(v) == Secret end

--- The value behind a secret (anything else is returned as is).
function M.reveal(v)
  if getmetatable(v) == Secret then return plain[v] end
  return v
end

--- Where secret s came from, if it was told.
function M.origin(s) return origins[s] end

--- The first secret in v (itself, or inside its tables), or nil.
function M.find(v, seen)
  if getmetatable(v) == Secret then return v end
  if type(v) ~= "table" or count == 0 then return nil end
  seen = seen or {}
  if seen[v] then return nil end
  seen[v] = true
  for _, x in pairs(v) do
    local s = M.find(x, seen)
    if s then return s end
  end
end

--- v with each string in it made secret (tables copied). Numbers and
-- booleans stay what they are: a provider expects their type, and a
-- secret "1" would mask every 1 in every log.
function M.wrap_deep(v, origin)
  if type(v) == "string" then return M.new(v, origin) end
  if type(v) ~= "table" or getmetatable(v) == Secret then return v end
  local copy = {}
  for k, x in pairs(v) do copy[k] = M.wrap_deep(x, origin) end
  return copy
end

--- Has any secret been made in this process? (Nothing to reveal or scrub
-- if not: callers on a hot path skip the walk.)
function M.any() return count > 0 end

--- A copy of t with every secret revealed, and whether there was one.
function M.reveal_deep(t, seen)
  if getmetatable(t) == Secret then return plain[t], true end
  if type(t) ~= "table" then return t, false end
  seen = seen or {}
  if seen[t] then return seen[t], false end
  local copy, any = {}, false
  seen[t] = copy
  for k, v in pairs(t) do
    local rv, s = M.reveal_deep(v, seen)
    copy[k] = rv
    any = any or s
  end
  return copy, any
end

--- Does text hold any secret's value (only the multi-line ones, with
-- multiline: those scrubbing can't find once text is reshaped by lines)?
function M.contains(text, multiline)
  if count == 0 or type(text) ~= "string" then return false end
  for value in pairs(known) do
    if (not multiline or value:find("\n", 1, true)) and text:find(value, 1, true) then return true end
  end
  return false
end

local function scrub_string(text)
  for value in pairs(known) do
    local from = 1
    while true do
      local i, j = text:find(value, from, true)
      if not i then break end
      text = text:sub(1, i - 1) .. "(sensitive)" .. text:sub(j + 1)
      from = i + #"(sensitive)"
    end
  end
  return text
end

--- v with every secret value replaced by "(sensitive)": strings, and the
-- strings inside tables (a scrubbed copy; v itself is left alone).
function M.scrub(v)
  if count == 0 then return v end
  if getmetatable(v) == Secret then return "(sensitive)" end
  if type(v) == "string" then return scrub_string(v) end
  if type(v) ~= "table" then return v end
  local copy = {}
  for k, x in pairs(v) do copy[k] = M.scrub(x) end
  return copy
end

return M

-- leaks.lua: where a secret turned up. A value's forms as a leak would
-- show it (clear text, base64 at each of the three byte alignments, URL
-- encoding), searched in text and in every file under a folder.
local fs = require("orch.core.fs")

local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  return (s:gsub("..?.?", function(g)
    local a, b, c = g:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local out = {}
    for i = 1, 4 do
      local d = (n >> (6 * (4 - i))) & 63
      out[i] = B64:sub(d + 1, d + 1)
    end
    local keep = #g + 1
    return table.concat(out):sub(1, keep) .. ("="):rep(4 - keep)
  end))
end

local function url_encoded(s)
  return (s:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- { clear, base64 (three alignments: the part no neighbour changes), URL-encoded }
function M.forms(value)
  local forms = { value, url_encoded(value) }
  for shift = 0, 2 do
    local enc = base64(("\0"):rep(shift) .. value)
    -- drop what the leading bytes touch and the last, partial group
    local from = shift == 0 and 1 or (shift == 1 and 3 or 4)
    forms[#forms + 1] = enc:sub(from, #enc - 4)
  end
  return forms
end

--- The first form of any of values found in text, or nil.
function M.in_text(text, values)
  for _, v in ipairs(values) do
    for _, form in ipairs(M.forms(v)) do
      if #form >= 4 and text:find(form, 1, true) then return form end
    end
  end
end

--- "path: form" for each file under dir (skip: paths to leave out) that
-- holds one of values in any form.
function M.in_tree(dir, values, skip)
  local found = {}
  for _, e in ipairs(assert(fs.walk(dir))) do
    local path = dir .. "/" .. e.path
    if e.type == "file" and not (skip and skip[path]) then
      do
        local form = M.in_text(assert(fs.read(path)), values)
        if form then found[#found + 1] = path .. ": " .. form end
      end
    end
  end
  return found
end

return M

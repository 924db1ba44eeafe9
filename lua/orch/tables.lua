-- tables.lua: comparing plain Lua tables, as resource diffs and plans do.
local M = {}

--- Do a and b hold the same values, tables compared key by key (no cycles,
-- no metatables consulted)?
function M.deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not M.deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

return M

-- infra/var_file.lua: a -var-file: a YAML or JSON mapping of variable names to
-- values, or Terraform's .tfvars (`name = value` lines) so that users bring
-- theirs along.
local fs = require("orch.core.fs")
local json = require("orch.json")

local M = {}

-- .tfvars: one `name = value` per line, # and // comments. A value is a
-- string, number, boolean or list as JSON writes them (HCL's literals are
-- the same); a map or a value over several lines is refused, with its line.
local function tfvars(text, file)
  local vars, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local body = line:gsub("^%s+", ""):gsub("%s+$", "")
    if body ~= "" and not body:match("^#") and not body:match("^//") then
      local name, value = body:match("^([%a_][%w_%-]*)%s*=%s*(.+)$")
      if not name then
        error(("%s:%d: expected name = value, got %q"):format(file, n, body), 0)
      end
      local ok, v = pcall(json.decode, value)
      if not ok or (type(v) == "table" and value:sub(1, 1) ~= "[") then
        error(("%s:%d: %s: the value must be a string, number, boolean or list on one line"):format(file, n, name), 0)
      end
      vars[name] = json.integers(v)
    end
  end
  return vars
end

--- The variables in file, or raises "file[:line]: why".
function M.load(file)
  local text, err = fs.read(file)
  if not text then error(err, 0) end
  if file:match("%.tfvars$") then return tfvars(text, file) end
  local ok, data = pcall(require("orch.core.yaml").load, text, file)
  if not ok then error(tostring(data), 0) end
  if type(data) ~= "table" or data[1] ~= nil then
    error(("%s: expected a mapping of variable names to values (YAML or JSON; a .tfvars file for"
      .. " name = value lines)"):format(file), 0)
  end
  return data
end

return M

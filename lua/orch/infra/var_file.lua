-- infra/var_file.lua: a -var-file: a YAML or JSON mapping of variable names to
-- values, or Terraform's .tfvars (`name = value` lines) so that users bring
-- theirs along.
local fs = require("orch.core.fs")
local json = require("orch.json")

local M = {}

-- line without its # or // comment (outside a quoted string).
local function uncommented(line)
  local i, quoted = 1, false
  while i <= #line do
    local c = line:sub(i, i)
    if quoted and c == "\\" then i = i + 1
    elseif c == '"' then quoted = not quoted
    elseif not quoted and (c == "#" or line:sub(i, i + 1) == "//") then return line:sub(1, i - 1) end
    i = i + 1
  end
  return line
end

-- .tfvars: one `name = value` per line, # and // comments (also after a
-- value). A value is a string, number, boolean or list as JSON writes them
-- (HCL's literals are the same); `null` leaves the variable unset (its
-- default applies), as in Terraform. A map, a value over several lines, a
-- number no double holds and a name given twice are refused, with the line.
local function tfvars(text, file)
  local vars, lines, n = {}, {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local body = uncommented(line):gsub("^%s+", ""):gsub("%s+$", "")
    if body ~= "" then
      local name, value = body:match("^([%a_][%w_%-]*)%s*=%s*(.+)$")
      if not name then
        error(("%s:%d: expected name = value, got %q"):format(file, n, body), 0)
      end
      if lines[name] then
        error(("%s:%d: %s is set twice (first at line %d)"):format(file, n, name, lines[name]), 0)
      end
      lines[name] = n
      local ok, v = pcall(json.decode, value)
      if not ok or (type(v) == "table" and value:sub(1, 1) ~= "[") then
        local why = ok and "" or tostring(v):match("number out of range.*") or ""
        error(("%s:%d: %s: the value must be a string, number, boolean or list on one line%s"):format(
          file, n, name, why ~= "" and (" (" .. why .. ")") or ""), 0)
      end
      if v ~= json.null then vars[name] = json.integers(v) end
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

-- providers/env_file.lua: a KEY=value file, read by systemd's
-- EnvironmentFile=, by `docker --env-file` and by a shell's `.`. orch
-- owns the whole file: it is written from vars every time. The quoting
-- is the shell's and systemd's; docker reads a value literally, so one
-- that needs quotes reaches a container with them.
local secret = require("orch.secret")

-- Values made only of these need no quotes in any of the three readers.
local PLAIN = "^[A-Za-z0-9_./:@%%+,=-]*$"

-- Inside double quotes a shell still expands $ and ` and reads \ and ";
-- a newline would end the assignment for systemd and docker.
local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["$"] = "\\$", ["`"] = "\\`", ["\n"] = "\\n" }

local function quote(s)
  if s:find(PLAIN) then return s end
  return '"' .. s:gsub('[\\"$`\n]', ESCAPES) .. '"'
end

-- Every header line a comment: a stray line of prose would be read as a
-- (broken) assignment.
local function header_lines(header, out)
  if header == "" then return end
  for l in (header:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do
    out[#out + 1] = l:find("^#") and l or ("# " .. l):gsub("%s+$", "")
  end
end

-- The file's content for want: the header, then KEY=value sorted by key
-- (a stable order, so the same vars always give the same bytes).
local function render(want)
  local out, keys = {}, {}
  header_lines(want.header, out)
  for k, v in pairs(want.vars) do
    if type(k) ~= "string" or not k:find("^[A-Za-z_][A-Za-z0-9_]*$") then
      error(("%s: %q is not a valid variable name (letters, digits and _, not starting with a digit)")
        :format(want.path, tostring(k)), 0)
    end
    local t = type(v)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      error(("%s: vars.%s must be a string, number or boolean, got %s"):format(want.path, k, t), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local value = tostring(want.vars[k])
    local quoted = quote(value)
    -- orch scrubs a secret from what it shows by its literal value; once
    -- escaped (pa$$ -> "pa\$\$") it would no longer be found, and --diff
    -- would print it. The quoted form becomes a secret of its own.
    if quoted ~= value and secret.contains(value) then secret.new(quoted) end
    out[#out + 1] = k .. "=" .. quoted
  end
  if #out == 0 then return "" end
  return table.concat(out, "\n") .. "\n"
end

return {
  env_file = {
    file = true,
    schema = {
      vars     = { type = "map", required = true },
      -- "" writes no header
      header   = { type = "string", default = "# Managed by orch: changes here are overwritten" },
    },
    content = function(ctx, want) return render(want) end,
  },
}

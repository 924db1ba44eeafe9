-- resource/validate.lua: check content before it is installed (`validate = ...` of
-- file resources): JSON, YAML, shell, env files, a Lua function, or a command.
local cjson = require("cjson")
local yaml = require("orch.core.yaml")
local fs = require("orch.core.fs")
local proc = require("orch.proc")

local M = {}

-- "line L, column C" of the 1-based byte offset `pos` in `text`.
local function position(text, pos)
  local line, line_start = 1, 1
  for nl in text:sub(1, pos - 1):gmatch("()\n") do
    line = line + 1
    line_start = nl + 1
  end
  return ("line %d, column %d"):format(line, pos - line_start + 1)
end

local function check_json(content)
  local ok, err = pcall(cjson.decode, content)
  if ok then return true end
  err = tostring(err)
  -- cjson says where as a 1-based byte offset; people read lines.
  local reason, at = err:match("^(.-) at character (%d+)$")
  if not reason then return nil, "invalid JSON: " .. err end
  return nil, ("invalid JSON at %s: %s"):format(position(content, tonumber(at)), reason)
end

local function check_yaml(content)
  -- A fixed name, so the position can be read back whatever opts.name holds.
  local name = "<content>"
  local ok, err = pcall(yaml.load_all, content, name)
  if ok then return true end
  err = tostring(err)
  local line, col, reason = err:match("^<content>:(%d+):(%d+): (.*)$")
  if not line then return nil, "invalid YAML: " .. err:gsub("^<content>: ", "") end
  return nil, ("invalid YAML at line %s, column %s: %s"):format(line, col, reason)
end

local function check_sh(content)
  local res, err = proc.run({ "sh", "-n" }, { stdin = content })
  if not res then return nil, "cannot check shell syntax: " .. err end
  if res.code == 0 then return true end
  local first = res.stderr:match("^[^\n]*")
  if first == "" then first = proc.failure(res) or "sh -n failed" end
  return nil, "invalid shell: " .. first
end

-- Why an env file line is wrong, or nil when it is fine. Accepts what both
-- sh (`. file`) and systemd's EnvironmentFile= read the same way.
local function env_line_error(line)
  if line:match("^%s*$") or line:match("^%s*#") then return nil end
  local body = line:gsub("^%s+", ""):gsub("^export%s+", "")
  local name, value = body:match("^([^=]*)=(.*)$")
  if not name then return "expected KEY=value" end
  if not name:match("^[A-Za-z_][A-Za-z0-9_]*$") then
    return ("invalid variable name '%s'"):format(name)
  end
  local q = value:sub(1, 1)
  local rest
  if q == "'" then
    local close = value:find("'", 2, true)
    if not close then return "unterminated single quote" end
    rest = value:sub(close + 1)
  elseif q == '"' then
    local i = 2
    while true do
      local c = value:find('[\\"]', i)
      if not c then return "unterminated double quote" end
      if value:sub(c, c) == '"' then rest = value:sub(c + 1); break end
      i = c + 2  -- a backslash escapes the next character
    end
  else
    return nil
  end
  if not rest:match("^%s*$") and not rest:match("^%s+#") then
    return "unexpected text after the closing quote"
  end
  return nil
end

local function check_env(content)
  local n = 0
  for line in (content .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local why = env_line_error((line:gsub("\r$", "")))
    if why then return nil, ("invalid env file at line %d: %s"):format(n, why) end
  end
  return true
end

local function check_function(fn, content)
  local ok, res, msg = pcall(fn, content)
  if not ok then return nil, "validation failed: " .. tostring(res) end
  if res then return true end
  if msg == nil then msg = ("the validator returned %s"):format(tostring(res)) end
  return nil, "validation failed: " .. tostring(msg)
end

-- Local stand-ins for the target's run and write_temp: the temp file keeps
-- the content's file name, since some checkers go by the extension.
local function run_local(cmdline)
  return proc.run(cmdline)
end

local function write_temp_local(content, name)
  local dir, err = fs.tmpdir("orch-validate-")
  if not dir then return nil, err end
  local base = name and name:match("([^/]+)$") or "content"
  local path = dir .. "/" .. base
  local ok, werr = fs.write(path, content, { mode = "0600" })  -- may hold secrets
  if not ok then
    fs.remove(dir, { recursive = true })
    return nil, werr
  end
  return path, function() fs.remove(dir, { recursive = true }) end
end

local function tail(s)
  s = (s or ""):gsub("%s+$", "")
  if #s > 400 then s = "..." .. s:sub(-400) end
  return s
end

local function check_command(template, content, opts)
  local run = opts.run or run_local
  local write_temp = opts.write_temp or write_temp_local
  local path, cleanup = write_temp(content, opts.name)
  if not path then
    return nil, "validation command: cannot write a temp file: " .. tostring(cleanup)
  end
  local cmdline = template:gsub("%%s", function() return proc.quote(path) end)
  -- Clean up whatever run does, even if it raises.
  local ok, res, err = pcall(run, cmdline)
  if cleanup then cleanup() end
  if not ok then error(res, 0) end
  if not res then return nil, ("validation command could not run: %s: %s"):format(cmdline, tostring(err)) end
  if res.code == 0 then return true end
  local why
  if res.code ~= nil then
    why = "exit code " .. res.code
  else
    why = proc.failure(res) or "failed"
  end
  local out = tail(res.stderr)
  if out == "" then out = tail(res.stdout) end  -- some checkers report on stdout
  return nil, ("validation command failed (%s): %s%s"):format(why, cmdline, out ~= "" and ("\n" .. out) or "")
end

local named = { json = check_json, yaml = check_yaml, sh = check_sh, env = check_env }

--- Checks `content` against `spec`: "json", "yaml", "sh", "env", a function
-- (content -> true | false/nil, msg; raising counts as failing) or a command
-- with %s for a temp copy ("nginx -t -c %s"). Returns true, or nil and why;
-- with opts.name the message starts with "name: ". For commands, opts.run
-- (cmdline -> { code, stdout, stderr }) and opts.write_temp (content, name ->
-- path, cleanup) run them on the target; both default to this machine.
function M.check(spec, content, opts)
  opts = opts or {}
  if type(content) ~= "string" then
    error("content to validate must be a string, got " .. type(content), 2)
  end
  local ok, msg
  if type(spec) == "function" then
    ok, msg = check_function(spec, content)
  elseif named[spec] then
    ok, msg = named[spec](content)
  elseif type(spec) == "string" and spec:find("%s", 1, true) then
    ok, msg = check_command(spec, content, opts)
  else
    local got = type(spec) == "string" and ("'" .. spec .. "'") or type(spec)
    error("validate must be json, yaml, sh, env, a function or a command with %s, got " .. got, 2)
  end
  if ok then return true end
  if opts.name then msg = opts.name .. ": " .. msg end
  return nil, msg
end

return M

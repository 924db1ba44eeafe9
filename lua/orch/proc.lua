-- proc.lua: run processes: argv or shell strings, captured or streamed
-- line by line, with the failure described in words a user can act on.
local core = require("orch.core.proc")
local loop = require("orch.core.loop")
local secret = require("orch.secret")
local errors = require("orch.errors")

local M = {}

-- Commands run has started and not yet closed, and the condition a spawn
-- out of descriptors waits on until one of them ends.
local running, freed = 0, loop.cond()

-- Secrets become the values they stand for where the process gets them.
-- `ps` shows a command line to every user and a process's environment
-- only to its owner: a shell command holding a secret's text travels in
-- the environment. (An argv can't: a secret there is visible.)
local function reveal_secrets(spawn)
  if not secret.any() then return spawn end
  if spawn.env then spawn.env = secret.reveal_deep(spawn.env) end
  if spawn.argv then spawn.argv = secret.reveal_deep(spawn.argv) end
  spawn.cmd = secret.reveal(spawn.cmd)
  if spawn.cmd and secret.contains(spawn.cmd) then
    local env = { ORCH_COMMAND = spawn.cmd }
    for k, v in pairs(spawn.env or {}) do env[k] = v end
    spawn.cmd, spawn.env = 'eval "$ORCH_COMMAND"', env
  end
  return spawn
end

--- Raise, at the playbook's line, unless t is nil or a number of seconds
-- above 0: a timeout of 0 would kill at once, a negative one never.
function M.check_timeout(t)
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0 or t == math.huge) then
    local at = errors.user_where(2)
    error(("%stimeout must be a number of seconds above 0, got %s"):format(at and (at .. ": ") or "", tostring(t)), 0)
  end
end

--- Options for core.spawn from run's friendlier forms:
-- run("shell string", opts), run({ "argv", ... }, opts) or run(opts).
local function normalize(cmd, opts)
  local spawn = {}
  if type(cmd) == "table" and opts == nil and (cmd.argv or cmd.cmd) then
    for k, v in pairs(cmd) do spawn[k] = v end
    return reveal_secrets(spawn)
  end
  for k, v in pairs(opts or {}) do spawn[k] = v end
  M.check_timeout(spawn.timeout)
  if type(cmd) == "string" or secret.is(cmd) then
    spawn.cmd = cmd
  elseif type(cmd) == "table" then
    spawn.argv = cmd
  else
    error("command must be a string (shell) or a list (argv), got " .. type(cmd), 3)
  end
  return reveal_secrets(spawn)
end

--- A word quoted for sh, when it needs it.
function M.quote(word)
  word = tostring(word)
  if not word:find("[^%w%-_./=:,@+]") and word ~= "" then return word end
  return "'" .. word:gsub("'", "'\\''") .. "'"
end

--- A command (a shell string or an argv list) as a user would type it.
function M.display(cmd)
  if type(cmd) == "string" or secret.is(cmd) then return tostring(cmd) end
  if cmd.cmd then return cmd.cmd end
  local words = {}
  for i, a in ipairs(cmd.argv or cmd) do words[i] = M.quote(a) end
  return table.concat(words, " ")
end

--- "command failed (why): cmd" and the tail of its stderr, for errors.
function M.failure_message(res, cmd)
  local tail = res.stderr:gsub("%s+$", ""):sub(-400)
  return ("command failed (%s): %s%s"):format(M.failure(res), M.display(cmd),
    tail ~= "" and ("\n" .. tail) or "")
end

--- Why a finished process counts as failed, or nil if it succeeded.
function M.failure(res)
  if res.lost then
    return "the host was lost"
  elseif res.timed_out then
    return ("timed out after %g s"):format(res.timeout)
  elseif res.signal then
    return "killed by signal " .. res.signal
  elseif res.code == 127 and res.shell then
    return "command not found"
  elseif res.code ~= 0 then
    return "exit code " .. res.code
  end
end

-- Feeds chunks to a per-line callback; returns a flush for the tail.
local function line_splitter(callback)
  local pending = ""
  local function feed(chunk)
    pending = pending .. chunk
    local start = 1
    while true do
      local nl = pending:find("\n", start, true)
      if not nl then break end
      callback(pending:sub(start, nl - 1))
      start = nl + 1
    end
    pending = pending:sub(start)
  end
  local function flush()
    if pending ~= "" then callback(pending); pending = "" end
  end
  return feed, flush
end

--- Run to completion: { code | signal, stdout, stderr, timed_out, elapsed, ok }.
-- opts: env, clear_env, cwd, stdin, timeout, grace, on_stdout/on_stderr
-- (called per line as output arrives), and on_spawn(p) (a handle to kill
-- it by, valid until run returns). Returns nil, err, code when the
-- process could not be started at all.
function M.run(cmd, opts)
  local spawn = normalize(cmd, opts)
  local on_out, on_err = spawn.on_stdout, spawn.on_stderr
  local p, err, code = core.spawn(spawn)
  -- out of descriptors (thousands of commands at once under ulimit -n):
  -- wait for a running one to end and free its own, rather than fail;
  -- with none running, waiting would be forever
  while not p and (code == "EMFILE" or code == "ENFILE") and running > 0 do
    freed:wait()
    p, err, code = core.spawn(spawn)
  end
  if not p and (code == "EMFILE" or code == "ENFILE") then
    err = err .. " (and no command of orch's is running to free one: raise `ulimit -n`)"
  end
  if not p then return nil, err, code end
  running = running + 1
  if M.on_spawn then M.on_spawn(p:pid()) end
  if spawn.on_spawn then spawn.on_spawn(p) end
  if on_out or on_err then
    local feeds, flushes = {}, {}
    for name, cb in pairs({ stdout = on_out, stderr = on_err }) do
      feeds[name], flushes[name] = line_splitter(cb)
    end
    while true do
      local stream, chunk = p:read()
      if not stream then break end
      if feeds[stream] then feeds[stream](chunk) end
    end
    for _, flush in pairs(flushes) do flush() end
  end
  local res = p:wait()
  p:close()
  running = running - 1
  freed:signal()   -- its descriptors are free: one waiting spawn goes
  res.shell = spawn.cmd ~= nil
  res.ok = M.failure(res) == nil
  return res
end

--- on_spawn(pid), when set, hears of every process run starts (a group
-- leader: state/orphans.lua journals them while a lock is held).
M.on_spawn = nil

--- Like run, but a failure is an error that names the command, why it
-- failed and the tail of its stderr.
function M.check(cmd, opts)
  local spawn = normalize(cmd, opts)
  local res, err = M.run(spawn)
  if not res then error(err, 2) end
  if not res.ok then error(M.failure_message(res, spawn), 2) end
  return res
end

M.spawn = core.spawn

return M

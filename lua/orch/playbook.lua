-- playbook.lua: `orch play`: load a playbook into its own environment,
-- run it under the state store's lock, record and report every step, and
-- end with a recap.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local state = require("orch.state")
local ui_mod = require("orch.ui")
local errors = require("orch.errors")
local traceback = errors.traceback

local M = {}

-- A run failure already reported (a failed step, a failed command): exit 1,
-- unlike a plain Lua error in the playbook itself, which is the author's
-- mistake: exit 2.
local Failure = { __tostring = function(f) return f.message end }

local function failure(message)
  return setmetatable({ message = message }, Failure)
end

local function is_failure(err) return getmetatable(err) == Failure end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- One run: stats per host, every event shown and stored.
local Run = {}
Run.__index = Run

function Run:emit(ev)
  ev.run_id = self.id
  self.ui:emit(ev)
  if ev.event ~= "run_start" and ev.event ~= "recap" then
    self.store:event(self.id, { host = ev.host, kind = ev.event, name = ev.name or ev.message,
      status = ev.status, data = { elapsed = ev.elapsed, error = ev.error } })
  end
end

function Run:count(host, status)
  local s = self.hosts[host]
  if not s then
    s = { ok = 0, changed = 0, failed = 0 }
    self.hosts[host] = s
    self.order[#self.order + 1] = host
  end
  s[status] = s[status] + 1
  if status == "failed" then self.failed = true end
end

--- The names a playbook sees: the DSL and the engine's libraries.
local function environment(run, path, vars, forks)
  local env = setmetatable({}, { __index = _G })

  -- step "name" (fn) or step("name", fn): fn returns true when it changed
  -- something; an error marks the step failed and stops the playbook (or
  -- the task it runs in).
  local function step(name, fn)
    if type(name) ~= "string" then error("step needs a name (a string), got " .. type(name), 2) end
    if fn == nil then return function(f) return step(name, f) end end
    if type(fn) ~= "function" then error(("step '%s': expected a function, got %s"):format(name, type(fn)), 2) end
    if loop.interrupted() then error(failure("interrupted"), 0) end
    local started = loop.now()
    local ok, result = xpcall(fn, traceback)
    local ev = { event = "step", host = "local", name = name, elapsed = loop.now() - started }
    if ok then
      ev.status = (result == true or result == "changed" or (type(result) == "table" and result.changed))
        and "changed" or "ok"
    else
      ev.status = "failed"
      ev.error = is_failure(result) and result.message or tostring(result)
    end
    run:count("local", ev.status)
    run:emit(ev)
    if not ok then error(failure(("step '%s' failed"):format(name)), 0) end
    return result
  end

  -- sh(cmd, opts): run a command on the local machine; a failure raises
  -- with the command, the reason and the tail of its stderr.
  local function sh(cmd, opts)
    local res, err = proc.run(cmd, opts)
    if not res then error(failure(err), 2) end
    if not res.ok then
      local tail = res.stderr:gsub("%s+$", ""):sub(-400)
      local where = debug.getinfo(2, "Sl")
      error(failure(("%s:%d: command failed (%s): %s%s"):format(where.short_src, where.currentline,
        proc.failure(res), type(cmd) == "string" and cmd or proc.display({ argv = cmd }),
        tail ~= "" and ("\n" .. tail) or "")), 2)
    end
    return res
  end

  local function log(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    run:emit({ event = "log", host = "local", message = table.concat(parts, "\t", 1, parts.n) })
  end

  env.step, env.sh, env.log, env.print = step, sh, log, log
  env.vars = vars
  env.playbook = { file = path, dir = dirname(path), run_id = run.id, forks = forks }
  env.fs, env.proc, env.task = fs, proc, task
  env.yaml, env.json = require("orch.core.yaml"), require("cjson")
  return env
end

local function parse_vars(list)
  local vars = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then return nil, ("-e expects KEY=VALUE, got '%s'"):format(kv) end
    vars[k] = v
  end
  return vars
end

local function command_line(path)
  return "orch play " .. path
end

--- Run the playbook at path; returns the exit code.
function M.run(path, opts)
  local ui = ui_mod.new({ json = opts.json, verbose = opts.verbose })
  local vars, verr = parse_vars(opts.extra_vars)
  if not vars then ui:error(verr); return 2 end
  local st = fs.stat(path)
  if not st then ui:error(("playbook not found: %s"):format(path)); return 2 end
  if st.type ~= "file" then ui:error(("playbook is not a file: %s"):format(path)); return 2 end
  local chunk, lerr = loadfile(path, "t")
  if not chunk then ui:error(lerr); return 2 end

  local db_path = opts.state or (dirname(path) .. "/.orch/state.db")
  local store, serr = state.open(db_path)
  if not store then ui:error(serr); return 1 end
  local lock, lock_err = store:lock({ timeout = opts.lock_timeout, command = command_line(path) })
  if not lock then store:close(); ui:error(lock_err); return 1 end

  local run = setmetatable({ ui = ui, store = store, hosts = {}, order = {}, failed = false }, Run)
  run.id = store:begin_run({ playbook = path, command = command_line(path) })
  local started = loop.now()
  run:emit({ event = "run_start", playbook = path })

  debug.setupvalue(chunk, 1, environment(run, path, vars, math.tointeger(opts.forks) or 50))
  local ok, err = xpcall(chunk, traceback)
  if ok then ok, err = xpcall(loop.run, traceback) end

  local code, status, final = 0, "ok", nil
  if loop.interrupted() then
    code, status, final = 130, "interrupted", "interrupted by " .. loop.interrupted()
  elseif not ok then
    status = "failed"
    if is_failure(err) then
      code = 1
      if not err.message:match("^step '.*' failed$") then final = err.message end
    else
      code = 2
      final = errors.message(err, opts.verbose)
    end
  elseif run.failed then
    code, status = 1, "failed"
  end
  store:finish_run(run.id, status)
  run:emit({ event = "recap", status = status, hosts = run.hosts, order = run.order,
    elapsed = loop.now() - started, state = db_path })
  if final then ui:error(final) end
  lock:unlock()
  store:close()
  return code
end

return M

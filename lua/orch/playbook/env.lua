-- playbook/env.lua: the names a playbook sees: the DSL (step, sh, handler,
-- config, inventory, host, play, ...), its resource types, and the engine's
-- libraries, each bound to the run it is evaluated in.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local errors = require("orch.errors")
local resource = require("orch.resource")
local providers = require("orch.resource.providers")
local secret = require("orch.secret")
local config_mod = require("orch.playbook.config")
local play_mod = require("orch.playbook.play")
local selector = require("orch.inventory.selector")

local M = {}

local failure, is_failure = errors.failure, errors.is_failure
local traceback, caller = errors.traceback, errors.where

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- file { ... }: the DSL function of a resource type, loaded on first use.
local function resource_function(run, tname)
  local typedef
  return function(attrs)
    if not typedef then
      local ok, t = pcall(providers.find, tname, run.playbook_dir)
      if not ok then error(t, 2) end
      typedef = t or error(("no resource type '%s'"):format(tname), 2)
    end
    local result = resource.call(run, tname, typedef, attrs, 2)  -- not a tail call: levels count this frame
    return result
  end
end

--- The names a playbook sees: the DSL, resource types and the engine's
-- libraries. Resource types take precedence over Lua's globals of the
-- same name (`package`): use _G.package for Lua's.
function M.new(run, path, vars, forks)
  local env = setmetatable({}, { __index = _G })
  -- os.getenv sees the task's environment too: in a pipeline stage's
  -- function, ORCH_STAGE is there as it is for the stage's commands
  env.os = setmetatable({ getenv = function(name)
    local inherited = task.env()
    local value = inherited and inherited[name]
    if value ~= nil then return value ~= false and tostring(secret.reveal(value)) or nil end
    return os.getenv(name)
  end }, { __index = os })

  -- step "name" (fn) or step("name", fn): fn returns true when it changed
  -- something; an error marks the step failed and stops the playbook (or
  -- the task it runs in). In check mode a step is skipped: its code could
  -- change anything.
  local function step(name, fn)
    if type(name) ~= "string" then error("step needs a name (a string), got " .. type(name), 2) end
    if fn == nil then return function(f) return step(name, f) end end
    if type(fn) ~= "function" then error(("step '%s': expected a function, got %s"):format(name, type(fn)), 2) end
    if loop.interrupted() then error(failure("interrupted"), 0) end
    local host = run:host().name
    local ev = { event = "step", host = host, name = name }
    if run.check then
      ev.status, ev.elapsed = "skipped", 0
      run:count(host, "skipped")
      run:emit(ev)
      return nil
    end
    local started = loop.now()
    local ok, result = xpcall(fn, traceback)
    ev.elapsed = loop.now() - started
    if ok then
      ev.status = (result == true or result == "changed" or (type(result) == "table" and result.changed))
        and "changed" or "ok"
    else
      ev.status = "failed"
      ev.error = is_failure(result) and result.message or tostring(result)
    end
    if not (ev.status == "failed" and is_failure(result) and result.reported) then
      run:count(host, ev.status)
      run:emit(ev)
    end
    if not ok then error(failure(("step '%s' failed"):format(name), true), 0) end
    return result
  end

  -- sh(cmd, opts): run a command on the local machine; a failure raises
  -- with the command, the reason and the tail of its stderr.
  local function sh(cmd, opts)
    local res, err = proc.run(cmd, opts)
    if not res then error(failure(err), 2) end
    if not res.ok then
      error(failure(("%s: %s"):format(caller(2), proc.failure_message(res, cmd))), 2)
    end
    return res
  end

  local function log(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    run:emit({ event = "log", host = run:host().name, message = table.concat(parts, "\t", 1, parts.n) })
  end

  -- handler "restart app" (function(h) ... end): runs once at the end of
  -- the playbook if a changed resource notified it.
  local function handler(name, fn)
    if type(name) ~= "string" then error("handler needs a name (a string), got " .. type(name), 2) end
    if fn == nil then return function(f) return handler(name, f) end end
    if type(fn) ~= "function" then error(("handler '%s': expected a function, got %s"):format(name, type(fn)), 2) end
    run:add_handler(name, fn, caller(2))
  end

  -- config "name" { function() ... end }: the resources inside form a
  -- configuration with its own version counter (orch config ...).
  local function config(name)
    if type(name) ~= "string" or not name:match("^[%w_.%-]+$") then
      error("config needs a name of letters, digits, '_', '.', '-'", 2)
    end
    return function(body)
      local fn = type(body) == "function" and body or (type(body) == "table" and body[1])
      if type(fn) ~= "function" then error(("config '%s': expected a function"):format(name), 2) end
      if run.config then error(("config '%s' inside config '%s'"):format(name, run.config.name), 2) end
      run.config = config_mod.begin(run, name)
      local ok, err = xpcall(fn, traceback)
      local cfg = run.config
      run.config = nil
      if not ok then error(err, 0) end
      local version = cfg:finish()
      if version then
        run:emit({ event = "config", host = run:host().name, name = name, version = version })
      end
      return version
    end
  end

  -- inventory "hosts.yaml" (beside the playbook) and host "web01" { ... }
  local function inventory(file)
    if type(file) ~= "string" then error("inventory needs a file name", 2) end
    if file:sub(1, 1) ~= "/" then file = run.playbook_dir .. "/" .. file end
    local ok, err = run.inventory:load(file)
    if not ok then error(err, 2) end
  end

  -- (or host(name, { ... }); play likewise)
  local function host(name, attrs)
    if type(name) ~= "string" then error("host needs a name (a string), got " .. type(name), 2) end
    local where = caller(2)
    local function add(a)
      local ok, err = pcall(run.inventory.add_host, run.inventory, name, a or {}, where)
      if not ok then error(("%s: %s"):format(where, err), 0) end
    end
    if attrs ~= nil then return add(attrs) end
    return add
  end

  -- play "name" { on = SELECTOR, serial =, max_fail =, function(h) ... end,
  -- handlers = {...}, rollback = function(h) ... end }
  local function play(name, spec)
    if type(name) ~= "string" then error("play needs a name (a string), got " .. type(name), 2) end
    local where = caller(2)
    local function start(s)
      local ok, err = pcall(play_mod.check, name, s)
      if not ok then error(("%s: %s"):format(where, err), 0) end
      ok, err = pcall(selector.select, run.inventory, s.on)
      if not ok then error(("%s: play '%s': %s"):format(where, name, err), 0) end
      return play_mod.run(run, name, s)
    end
    if spec ~= nil then return start(spec) end
    return start
  end

  env.inventory, env.host, env.play = inventory, host, play
  env.step, env.sh, env.log, env.print = step, sh, log, log
  env.handler, env.config, env.secret = handler, config, secret.new
  env.vars = vars
  env.playbook = { file = path, dir = dirname(path), run_id = run.id, forks = forks, check = run.check }
  env.fs, env.proc, env.task = fs, proc, task
  env.yaml, env.json = require("orch.core.yaml"), require("orch.json")
  for _, tname in ipairs(providers.names(run.playbook_dir)) do
    if rawget(env, tname) == nil then env[tname] = resource_function(run, tname) end
  end
  return env
end

return M

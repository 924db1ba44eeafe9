-- playbook/play.lua: `play "name" { on = SELECTOR, function(h) ... end }`: the same
-- work on many hosts, each in its own task, at most --forks at once; in
-- rolling batches with `serial`; stopped, and rolled back, when a batch
-- fails more than `max_fail` allows.
local loop = require("orch.core.loop")
local task = require("orch.task")
local selector = require("orch.inventory.selector")
local errors = require("orch.errors")

local M = {}

local KEYS = { on = true, serial = true, max_fail = true, handlers = true, rollback = true, forks = true }

-- N or "P%" of total, as a count (a percentage rounds up, at least 1).
local function amount(v, total, what, name)
  if math.type(v) == "integer" and v >= 0 then return v end
  local pct = type(v) == "string" and tonumber(v:match("^(%d+%.?%d*)%%$"))
  if pct then return math.max(1, math.ceil(total * pct / 100)) end
  error(("play '%s': %s must be a count or a percentage like \"25%%\", got %s"):format(name, what, tostring(v)), 0)
end

--- Check a play's table; raises a playbook error (the caller adds where).
function M.check(name, spec)
  if type(spec) ~= "table" then error(("play '%s': expected a table"):format(name), 0) end
  for k in pairs(spec) do
    if k ~= 1 and not KEYS[k] then error(("play '%s': unknown key '%s'"):format(name, tostring(k)), 0) end
  end
  if type(spec.on) ~= "string" then error(("play '%s': 'on' must be a selector string, like \"role:web\""):format(name), 0) end
  if type(spec[1]) ~= "function" then error(("play '%s': give the work as a function(h)"):format(name), 0) end
  if spec.handlers ~= nil and type(spec.handlers) ~= "table" then error(("play '%s': handlers must be a table"):format(name), 0) end
  if spec.rollback ~= nil and type(spec.rollback) ~= "function" then error(("play '%s': rollback must be a function(h)"):format(name), 0) end
end

-- fn(h) on each host of hosts, at most `forks` at once, each in a task
-- whose context is its host. Returns per host: "ok", "failed" or "unreachable".
local function on_hosts(run, hosts, forks, fn)
  local outcome = {}
  task.map(hosts, forks, function(entry)
    local h, err = run:connect(entry)
    if not h then
      run:count(entry.name, "unreachable")
      run:emit({ event = "host", host = entry.name, status = "unreachable", error = err })
      outcome[entry.name] = "unreachable"
      return
    end
    task.set_context(h)
    local ok, perr = xpcall(fn, errors.traceback, h)
    if not ok and not (errors.is_failure(perr) and perr.reported) then
      run:count(h.name, "failed")
      run:emit({ event = "host", host = h.name, status = "failed",
        error = errors.is_failure(perr) and perr.message or tostring(perr) })
    end
    outcome[entry.name] = ok and "ok" or "failed"
  end)
  return outcome
end

--- Run a play now; returns true when no batch exceeded max_fail, and how
-- many hosts failed or were unreachable.
function M.run(run, name, spec)
  if loop.interrupted() then error(errors.failure("interrupted"), 0) end
  local hosts = selector.select(run.inventory, spec.on)
  if run.limit then hosts = selector.limit(hosts, run.inventory, run.limit) end
  local forks = spec.forks or run.forks or 50
  local batch_size = spec.serial and amount(spec.serial, #hosts, "serial", name) or #hosts
  if batch_size < 1 then batch_size = math.max(1, #hosts) end
  run:emit({ event = "play", name = name, host = run:host().name, hosts = #hosts,
    serial = spec.serial and batch_size or nil })
  if #hosts == 0 then
    run:emit({ event = "log", host = run:host().name, message = ("play '%s': no host matches %s%s"):format(
      name, spec.on, run.limit and (" limited to " .. run.limit) or "") })
    return true, 0
  end
  local failed_total = 0
  for first = 1, #hosts, batch_size do
    local batch = table.move(hosts, first, math.min(first + batch_size - 1, #hosts), 1, {})
    local outcome = on_hosts(run, batch, forks, function(h)
      if not run.force_handlers then
        spec[1](h)
        return run:run_handlers(spec.handlers)
      end
      -- --force-handlers: a host that failed still runs what it notified
      local ok, err = xpcall(spec[1], errors.traceback, h)
      run:run_handlers(spec.handlers)
      if not ok then error(err, 0) end
    end)
    local failed = 0
    for _, o in pairs(outcome) do if o ~= "ok" then failed = failed + 1 end end
    failed_total = failed_total + failed
    if spec.max_fail ~= nil and failed > amount(spec.max_fail, #batch, "max_fail", name) then
      run:emit({ event = "log", host = run:host().name, message = ("play '%s' stopped: %d of %d hosts in the batch failed (max_fail %s)")
        :format(name, failed, #batch, tostring(spec.max_fail)) })
      if spec.rollback then
        local reachable = {}
        for _, h in ipairs(batch) do
          if outcome[h.name] ~= "unreachable" then reachable[#reachable + 1] = h end
        end
        on_hosts(run, reachable, forks, function(h)
          run:emit({ event = "rollback", host = h.name, name = name })
          spec.rollback(h)
        end)
      end
      return false, failed_total
    end
  end
  return true, failed_total
end

return M

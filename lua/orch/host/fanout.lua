-- host/fanout.lua: the same work on many hosts at once: each host connected,
-- the work run on it in its own task (at most `forks` at once), its status
-- counted and reported the moment it finishes. Used by `orch run`, `orch
-- status` and the REPL's on(SELECTOR).
local loop = require("orch.core.loop")
local task = require("orch.task")
local host_mod = require("orch.host")

local M = {}

--- fn(h, entry) -> status ("ok", "failed" or "unreachable"), value [, kept]
-- on every inventory entry. opts:
--   forks       at most this many hosts at once (default 50)
--   connect     entry -> h or nil, err (default: a new connection, closed
--               after fn; a caller that reuses connections passes its own)
--   is_stale    () -> true when the caller gave up on this work (Ctrl-C):
--               tasks stop at their next step without a word
--   report      (entry, status, value, elapsed) as each host finishes
-- Returns the counts by status and host name -> kept (default: value;
-- false: nothing; an unreachable host keeps { unreachable = true, error }).
function M.run(entries, opts, fn)
  local counts, results = { ok = 0, failed = 0, unreachable = 0 }, {}
  local connect, is_stale = opts.connect, opts.is_stale or function() return false end
  task.map(entries, opts.forks or 50, function(entry)
    if is_stale() then return end
    local started = loop.now()
    local h, err
    if connect then h, err = connect(entry) else h, err = host_mod.connect(entry) end
    if is_stale() then return end
    local status, value, kept
    if h then
      status, value, kept = fn(h, entry)
      if not connect then h:close() end
      if is_stale() or loop.interrupted() then return end  -- the caller reports the interrupt
    else
      status, value = "unreachable", err
    end
    if status == "unreachable" then
      kept = { ok = false, unreachable = true, error = value }
    elseif kept == nil then
      kept = value
    end
    counts[status] = counts[status] + 1
    results[entry.name] = kept or nil
    if opts.report then opts.report(entry, status, value, loop.now() - started) end
  end)
  return counts, results
end

return M

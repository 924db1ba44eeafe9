-- procs.lua: N short processes (`true`), LIMIT at a time, each from its own
-- coroutine: the scheduler's and proc's overhead against xargs -P.
--   orch lua bench/procs.lua [N] [LIMIT]
local task = require("orch.task")
local proc = require("orch.proc")

local n, limit = tonumber(arg[1]) or 2000, tonumber(arg[2]) or 50
local items = {}
for i = 1, n do items[i] = i end
local res = task.map(items, limit, function()
  local r = assert(proc.run({ "true" }))
  assert(r.code == 0, "true failed")
end)
for i = 1, n do assert(res[i].ok, res[i].err) end

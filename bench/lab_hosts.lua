-- lab_hosts.lua: N lab.host resources created by the lab provider's apply
-- from LIMIT concurrent tasks, as the infrastructure engine would; or
-- deleted again. lab_hosts.sh times it against a serial shell script.
--   orch lua bench/lab_hosts.lua create|delete DIR [N] [LIMIT]
local task = require("orch.task")
local host_t = assert(require("orch.providers").find("lab.host", nil))

local action, dir = arg[1], arg[2]
local n, limit = tonumber(arg[3]) or 20, tonumber(arg[4]) or 10
local ctx = { host = require("orch.host").localhost(), dir = dir, log = function() end }
local key = assert(io.open(dir .. "/id.pub")):read("a")

local items = {}
for i = 1, n do items[i] = ("bo%02d"):format(i) end
local res = task.map(items, limit, function(name)
  if action == "create" then
    return host_t.apply(ctx, { name = name, authorized_key = key }, nil, {})
  end
  host_t.delete(ctx, { name = name })
end)
for i = 1, n do assert(res[i].ok, res[i].err) end

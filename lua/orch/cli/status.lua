-- cli/status.lua: `orch status -i INV [SELECTOR]`: reachability, OS, kernel,
-- uptime and load of every selected host, gathered at once, in one table.
local json = require("cjson")
local facts = require("orch.host.facts")
local selector = require("orch.inventory.selector")
local fanout = require("orch.host.fanout")
local ui_mod = require("orch.cli.ui")

local M = {}

local function uptime(seconds)
  if not seconds then return "-" end
  local d, h, m = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
  if d > 0 then return ("%dd %dh"):format(d, h) end
  if h > 0 then return ("%dh %dm"):format(h, m) end
  return ("%dm"):format(m)
end

--- orch status -i INV [SELECTOR]: one row per host; exit 1 when any is down.
function M.run(opts, rest)
  local ui = ui_mod.new({ json = opts.json })
  local hosts, err = selector.from_files(opts.inventory, rest[1] or "all", opts.limit)
  if not hosts then ui:error(err); return 2 end
  local _, found = fanout.run(hosts, { forks = math.tointeger(opts.forks) or 50 }, function(h)
    local r, xerr = h:exec(facts.SCRIPT, { check = false })
    if not r then return "unreachable", xerr end
    if r.lost then return "unreachable", r.error end
    if not r.ok then return "failed", { error = r.stderr } end
    return "ok", facts.parse(r.stdout)
  end)
  local rows, down = {}, 0
  for i, entry in ipairs(hosts) do
    local f = found[entry.name] or { error = "interrupted" }
    local row = { host = entry.name, state = "unreachable", error = f.error }
    if not f.error then
      row.state = "up"
      row.os = f.os.pretty_name or f.os.name or "?"
      row.kernel, row.uptime, row.load = f.kernel, f.uptime, f.load
    else
      down = down + 1
    end
    rows[i] = row
  end
  if ui.json then
    io.stdout:write(json.encode(rows), "\n")
  else
    io.stdout:write(("%-16s %-12s %-28s %-20s %-8s %s\n"):format("HOST", "STATE", "OS", "KERNEL", "UPTIME", "LOAD"))
    for _, row in ipairs(rows) do
      io.stdout:write(("%-16s %-12s %-28s %-20s %-8s %s\n"):format(row.host,
        ui:paint(row.state == "up" and "ok" or "failed", ("%-12s"):format(row.state)):gsub("%s+$", ""),
        (row.os or "-"):sub(1, 28), (row.kernel or "-"):sub(1, 20), uptime(row.uptime),
        row.load or (row.error or "-"):gsub("\n.*", "")))
    end
  end
  return down > 0 and 1 or 0
end

return M

-- cli/run.lua: `orch run` (one command on many hosts, output grouped per
-- host) and `orch status` (reachability, OS, uptime, load, in one table).
local loop = require("orch.core.loop")
local json = require("cjson")
local task = require("orch.task")
local inventory = require("orch.inventory")
local selector = require("orch.inventory.selector")
local host_mod = require("orch.host")
local ui_mod = require("orch.cli.ui")

local M = {}

-- The selected inventory entries, or nil after reporting why (exit 2).
local function select_hosts(opts, sel, ui)
  local inv = inventory.new()
  if #(opts.inventory or {}) == 0 then ui:error("no inventory: give -i FILE"); return nil end
  local loaded, err = inv:load_all(opts.inventory)
  if not loaded then ui:error(err); return nil end
  local ok, hosts = pcall(selector.select, inv, sel)
  if ok and opts.limit then ok, hosts = pcall(selector.limit, hosts, inv, opts.limit) end
  if not ok then ui:error(tostring(hosts)); return nil end
  return hosts
end

local function indent(text)
  return "  " .. text:gsub("\n$", ""):gsub("\n", "\n  ") .. "\n"
end

--- orch run SELECTOR -i INV [--forks N] [--timeout S] [--json] -- CMD...
function M.run(opts, rest)
  local ui = ui_mod.new({ json = opts.json })
  local sel = table.remove(rest, 1)
  if not sel or #rest == 0 then
    io.stderr:write("orch run: give a selector and a command: orch run SELECTOR -i INV -- CMD...\ntry 'orch help run'\n")
    return 2
  end
  local cmd = #rest == 1 and rest[1] or rest   -- one word: a shell line; several: an argv
  local hosts = select_hosts(opts, sel, ui)
  if not hosts then return 2 end
  if #hosts == 0 then ui:error(("no host matches '%s'"):format(sel)); return 2 end
  local counts = { ok = 0, failed = 0, unreachable = 0 }
  task.map(hosts, math.tointeger(opts.forks) or 50, function(entry)
    local started = loop.now()
    local h, err = host_mod.connect(entry)
    local ev = { event = "result", host = entry.name }
    if not h then
      ev.status, ev.error = "unreachable", err
    else
      local res, xerr = h:exec(cmd, { check = false, timeout = opts.timeout })
      h:close()
      if not res then
        ev.status, ev.error = "unreachable", xerr
      else
        ev.status = res.ok and "ok" or "failed"
        ev.code, ev.signal, ev.stdout, ev.stderr = res.code, res.signal, res.stdout, res.stderr
        ev.why = require("orch.proc").failure(res)
      end
    end
    ev.elapsed = loop.now() - started
    counts[ev.status] = counts[ev.status] + 1
    if ui.json then
      io.stdout:write(json.encode(ev), "\n")
    else
      local head = ("%s | %s | %s"):format(ui:paint("bold", entry.name), ui:paint(ev.status == "ok" and "ok" or "failed",
        ev.status == "unreachable" and "UNREACHABLE" or (ev.why or "exit 0")), ("%.2fs"):format(ev.elapsed))
      io.stdout:write(head, "\n")
      if ev.error then io.stdout:write(indent(ev.error)) end
      if ev.stdout and ev.stdout ~= "" then io.stdout:write(indent(ev.stdout)) end
      if ev.stderr and ev.stderr ~= "" then io.stdout:write(ui:paint("dim", indent(ev.stderr))) end
    end
    io.stdout:flush()
  end)
  if ui.json then
    io.stdout:write(json.encode({ event = "summary", ok = counts.ok, failed = counts.failed,
      unreachable = counts.unreachable }), "\n")
  else
    io.stdout:write(("%d ok, %d failed, %d unreachable\n"):format(counts.ok, counts.failed, counts.unreachable))
  end
  return (counts.failed + counts.unreachable > 0) and 1 or 0
end

local function uptime(seconds)
  if not seconds then return "-" end
  local d, h, m = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
  if d > 0 then return ("%dd %dh"):format(d, h) end
  if h > 0 then return ("%dh %dm"):format(h, m) end
  return ("%dm"):format(m)
end

--- orch status -i INV [SELECTOR]: one row per host.
function M.status(opts, rest)
  local ui = ui_mod.new({ json = opts.json })
  local hosts = select_hosts(opts, rest[1] or "all", ui)
  if not hosts then return 2 end
  local rows = {}
  task.map(hosts, math.tointeger(opts.forks) or 50, function(entry, i)
    local h, err = host_mod.connect(entry)
    local row = { host = entry.name, state = "unreachable", error = err }
    if h then
      local r = h:exec(host_mod.FACTS_SCRIPT .. "; cat /proc/loadavg", { check = false })
      h:close()
      if r and r.ok then
        local f = host_mod.parse_facts(r.stdout)
        row.state, row.error = "up", nil
        row.os = f.os.pretty_name or f.os.name or "?"
        row.kernel, row.uptime = f.kernel, f.uptime
        row.load = r.stdout:match("\n([%d.]+ [%d.]+ [%d.]+) [^\n]*\n?$")
      else
        row.error = r and r.stderr or err
      end
    end
    rows[i] = row
  end)
  local down = 0
  for _, row in ipairs(rows) do if row.state ~= "up" then down = down + 1 end end
  if ui.json then
    io.stdout:write(json.encode(rows), "\n")
  else
    io.stdout:write(("%-16s %-12s %-28s %-20s %-8s %s\n"):format("HOST", "STATE", "OS", "KERNEL", "UPTIME", "LOAD"))
    for _, row in ipairs(rows) do
      io.stdout:write(("%-16s %-12s %-28s %-20s %-8s %s\n"):format(row.host,
        ui:paint(row.state == "up" and "ok" or "failed", ("%-12s"):format(row.state)):gsub("%s+$", ""),
        (row.os or "-"):sub(1, 28), (row.kernel or "-"):sub(1, 20), uptime(row.uptime), row.load or (row.error or "-"):gsub("\n.*", "")))
    end
  end
  return down > 0 and 1 or 0
end

return M

-- cli/run.lua: `orch run SELECTOR -i INV -- CMD...`: one command on every
-- selected host at once, output grouped per host as each one finishes.
local json = require("cjson")
local proc = require("orch.proc")
local selector = require("orch.inventory.selector")
local fanout = require("orch.host.fanout")
local ui_mod = require("orch.cli.ui")

local M = {}

--- orch run SELECTOR -i INV [--forks N] [--timeout S] [--json] -- CMD...
function M.run(opts, rest)
  local ui = ui_mod.new({ json = opts.json })
  local sel = table.remove(rest, 1)
  if not sel or #rest == 0 then
    io.stderr:write("orch run: give a selector and a command: orch run SELECTOR -i INV -- CMD...\ntry 'orch help run'\n")
    return 2
  end
  local cmd = #rest == 1 and rest[1] or rest   -- one word: a shell line; several: an argv
  local hosts, err = selector.from_files(opts.inventory, sel, opts.limit)
  if not hosts then ui:error(err); return 2 end
  if #hosts == 0 then ui:error(("no host matches '%s'"):format(sel)); return 2 end
  local counts = fanout.run(hosts, {
    forks = math.tointeger(opts.forks) or 50,
    report = function(entry, status, res, elapsed)
      if not ui.json then return ui:host_result(entry.name, status, res, elapsed) end
      local ev = { event = "result", host = entry.name, status = status, elapsed = elapsed }
      if status == "unreachable" then
        ev.error = res
      else
        ev.code, ev.signal, ev.stdout, ev.stderr, ev.why = res.code, res.signal, res.stdout, res.stderr,
          proc.failure(res)
      end
      io.stdout:write(json.encode(ev), "\n")
      io.stdout:flush()
    end,
  }, function(h)
    local res, xerr = h:exec(cmd, { check = false, timeout = opts.timeout })
    if not res then return "unreachable", xerr end
    if res.lost then return "unreachable", res.error end
    return res.ok and "ok" or "failed", res
  end)
  if ui.json then
    io.stdout:write(json.encode({ event = "summary", ok = counts.ok, failed = counts.failed,
      unreachable = counts.unreachable }), "\n")
  else
    io.stdout:write(("%d ok, %d failed, %d unreachable\n"):format(counts.ok, counts.failed, counts.unreachable))
  end
  return (counts.failed + counts.unreachable > 0) and 1 or 0
end

return M

-- cli/pipeline.lua: `orch pipeline run|list|history|show -f FILE`: run a
-- pipeline under its own lock and report it; show what ran before.
local json = require("cjson")
local loop = require("orch.core.loop")
local state = require("orch.state")
local ui_mod = require("orch.cli.ui")
local fail = ui_mod.fail
local playbook = require("orch.playbook")
local pipeline_file = require("orch.pipeline.load")
local execute = require("orch.pipeline.execute").execute
local records = require("orch.pipeline.records")

local M = {}

--- orch pipeline run NAME -f FILE [--jobs N] [--json] [--junit FILE]
local function run(opts, name)
  local vars, verr = playbook.parse_vars(opts.extra_vars)
  if not vars then return fail(verr, 2) end
  local store, serr = state.open(state.path(opts.state, opts.file))
  if not store then return fail(serr) end
  local ui = ui_mod.new({ json = opts.json, verbose = opts.verbose })
  local status, detail, code = execute(opts.file, name, { store = store, ui = ui, jobs = opts.jobs, trigger = "manual",
    inventory = opts.inventory, vars = vars, limit = opts.limit, lock_timeout = opts.lock_timeout,
    junit = opts.junit })
  store:close()
  if not status then ui:error(detail); return code == "EINVAL" and 2 or 1 end
  if status == "interrupted" and loop.interrupted() then return 130 end
  return status == "ok" and 0 or 1
end

local function when(t) return t and os.date("%Y-%m-%d %H:%M:%S", math.floor(t)) or "-" end
local function seconds(s) return s and ("%.2fs"):format(s) or "-" end

--- orch pipeline list -f FILE: name, triggers, last run, last success
local function list(opts)
  -- loaded in check mode: a file's top level changes nothing by listing it
  local loaded, err = pipeline_file.load(opts.file, { ui = ui_mod.quiet(),
    check = true, inventory = opts.inventory })
  if not loaded then return fail(err, 2) end
  local store = state.open_existing(state.path(opts.state, opts.file))
  local rows = {}
  for i, p in ipairs(loaded.list) do
    local last, ok
    if store then last, ok = records.latest(store, p.name) end
    rows[i] = { name = p.name, stages = #p.stages, triggers = table.concat(p.triggers.list, ","),
      status = last and last.status or "never run", last_run = last and last.started, last_success = ok and ok.started }
  end
  if store then store:close() end
  if opts.json then io.stdout:write(json.encode(rows), "\n"); return 0 end
  io.stdout:write(("%-20s %6s  %-24s %-11s %-20s %s\n"):format("PIPELINE", "STAGES", "TRIGGERS", "STATUS", "LAST RUN", "LAST SUCCESS"))
  for _, r in ipairs(rows) do
    io.stdout:write(("%-20s %6d  %-24s %-11s %-20s %s\n"):format(r.name, r.stages, r.triggers ~= "" and r.triggers or "-",
      r.status, when(r.last_run), when(r.last_success)))
  end
  return 0
end

--- orch pipeline history NAME [-f FILE]: its runs, newest first, with stages
local function history(opts, name)
  local store, err = state.open_existing(state.path(opts.state, opts.file))
  if not store then return fail(err) end
  local runs = records.runs(store, name, math.tointeger(opts.limit_runs) or 50)
  store:close()
  if #runs == 0 then return fail(("pipeline '%s' has no recorded runs"):format(name)) end
  if opts.json then io.stdout:write(json.encode(runs), "\n"); return 0 end
  for _, r in ipairs(runs) do
    io.stdout:write(("run %d  %s  %-11s %s%s  %s\n"):format(r.id, when(r.started), r.status, r.trigger,
      r.detail and (" " .. r.detail) or "", seconds(r.finished and (r.finished - r.started))))
    for _, s in ipairs(r.stages) do
      io.stdout:write(("    %-20s %-16s %d attempt%s%s\n"):format(s.stage, s.status, s.attempts,
        s.attempts == 1 and "" or "s", s.reason and ("  " .. s.reason) or ""))
    end
  end
  return 0
end

--- orch pipeline show RUN_ID [-f FILE]: one run: stages, logs, artifacts
local function show(opts, id)
  id = math.tointeger(tonumber(id))
  if not id then return fail("pipeline show: RUN_ID is a number (see orch pipeline history NAME)", 2) end
  local store, err = state.open_existing(state.path(opts.state, opts.file))
  if not store then return fail(err) end
  local r = records.run(store, id)
  store:close()
  if not r then return fail(("no pipeline run %d in %s"):format(id, store.path)) end
  if opts.json then io.stdout:write(json.encode(r), "\n"); return 0 end
  io.stdout:write(("pipeline %s  run %d  %s  %s  trigger %s%s\n"):format(r.pipeline, r.id, r.status, when(r.started),
    r.trigger, r.detail and (" " .. r.detail) or ""))
  io.stdout:write(("workspace %s%s\n"):format(r.workspace or "-", r.pruned == 1 and " (pruned)" or ""))
  for _, s in ipairs(r.stages) do
    io.stdout:write(("\n== %s: %s, %d attempt%s, %s%s\n"):format(s.stage, s.status, s.attempts,
      s.attempts == 1 and "" or "s", seconds(s.finished and s.started and (s.finished - s.started)),
      s.reason and ("  (" .. s.reason .. ")") or ""))
    if s.log and s.log ~= "" then io.stdout:write(s.log, "\n") end
  end
  if #r.artifacts > 0 then io.stdout:write("\nartifacts\n") end
  for _, a in ipairs(r.artifacts) do
    io.stdout:write(("  %s: %s (%d file%s, %d bytes, sha256 %s)%s\n"):format(a.stage, a.path, a.files,
      a.files == 1 and "" or "s", a.bytes, a.sha256:sub(1, 12), a.present and "" or " (pruned)"))
    for _, e in ipairs(a.entries or {}) do
      if e.type ~= "directory" then io.stdout:write(("    %s  %d\n"):format(e.path, e.size)) end
    end
  end
  return 0
end

--- orch pipeline list | run NAME | history NAME | show RUN_ID -f FILE
function M.main(opts, rest)
  local sub, arg = rest[1], rest[2]
  if sub == "history" and arg then return history(opts, arg) end
  if sub == "show" and arg then return show(opts, arg) end
  if (sub == "list" or sub == "run") and not opts.file then
    return fail(("pipeline %s: give the file with -f FILE\ntry 'orch help pipeline'"):format(sub), 2)
  end
  if sub == "list" then return list(opts) end
  if sub == "run" and arg then return run(opts, arg) end
  return fail("pipeline: expected 'list', 'run NAME', 'history NAME' or 'show RUN_ID'\ntry 'orch help pipeline'", 2)
end

return M

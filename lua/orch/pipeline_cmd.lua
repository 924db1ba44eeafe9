-- pipeline_cmd.lua: `orch pipeline run|list|history -f FILE`: load a file's
-- pipelines, run one under the state store's lock, report it, and show
-- what ran before.
local json = require("cjson")
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local state = require("orch.state")
local ui_mod = require("orch.ui")
local pipeline = require("orch.pipeline")

local M = {}

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function fail(msg, code)
  io.stderr:write("orch: ", msg, "\n")
  return code or 1
end

-- The pipelines a file defines, in order; nil, message on a bad file.
local function load_file(path)
  if not fs.stat(path) then return nil, ("pipeline file not found: %s"):format(path) end
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  local list, by_name = {}, {}
  local env = setmetatable({}, { __index = _G })
  env.stage = function(name)
    local info = debug.getinfo(2, "Sl")
    return pipeline.stage(name, info and ("%s:%d"):format(info.short_src, info.currentline) or "?")
  end
  env.pipeline = function(name)
    if type(name) ~= "string" then error("pipeline needs a name (a string)", 2) end
    return function(spec)
      if by_name[name] then error(("pipeline '%s' is defined twice"):format(name), 2) end
      local p = pipeline.define(name, spec, 2)
      by_name[name] = p
      list[#list + 1] = p
    end
  end
  env.fs, env.proc, env.task = fs, require("orch.proc"), require("orch.task")
  env.json, env.yaml = require("orch.json"), require("orch.core.yaml")
  debug.setupvalue(chunk, 1, env)
  local ok, perr = xpcall(chunk, require("orch.errors").traceback)
  if not ok then return nil, require("orch.errors").message(perr) end
  return list, by_name
end

local function seconds(s) return s and ("%.2fs"):format(s) or "-" end

--- orch pipeline run NAME -f FILE [--jobs N] [--json]
local function run(opts, name)
  local ui = ui_mod.new({ json = opts.json })
  local list, by_name = load_file(opts.file)
  if not list then return fail(by_name, 2) end
  local p = by_name[name]
  if not p then
    local names = {}
    for n in pairs(by_name) do names[#names + 1] = n end
    table.sort(names)
    return fail(("no pipeline '%s' in %s (it has: %s)"):format(name, opts.file, table.concat(names, ", ")), 2)
  end
  local dir = dirname(opts.file)
  local store, serr = state.open(opts.state or (dir .. "/.orch/state.db"))
  if not store then return fail(serr) end
  local command = ("orch pipeline run %s -f %s"):format(name, opts.file)
  local lock, lerr = store:lock({ timeout = opts.lock_timeout, command = command })
  if not lock then store:close(); return fail(lerr) end
  local run_id = store:begin_run({ playbook = opts.file, command = command })
  local started = loop.now()
  local function emit(ev)
    ev.pipeline = name
    if ui.json then io.stdout:write(json.encode(ev), "\n")
    elseif ev.event == "stage_start" then io.stdout:write(ui:paint("bold", "▶ " .. ev.name), "\n")
    elseif ev.event == "output" then io.stdout:write(ui:paint("dim", ("[%s] "):format(ev.name)), ev.line, "\n")
    elseif ev.event == "stage" then
      local style = ev.status == "ok" and "ok" or ev.status == "skipped" and "skipped" or "failed"
      io.stdout:write(("%s %s %s%s\n"):format(ui:paint(style, ("%-8s"):format(ev.status)), ev.name,
        seconds(ev.elapsed), ev.reason and (": " .. ev.reason) or ""))
    end
    io.stdout:flush()
  end
  local status, results, pr_id, workspace = pipeline.run(p, { store = store, run_id = run_id, dir = dir,
    jobs = opts.jobs, emit = emit, trigger = "manual" })
  store:finish_run(run_id, loop.interrupted() and "interrupted" or status)
  local summary = { event = "summary", status = status, pipeline_run = pr_id, workspace = workspace,
    elapsed = loop.now() - started, stages = {} }
  for i, s in ipairs(p.stages) do
    local r = results[s.name]
    summary.stages[i] = { name = s.name, status = r.status, attempts = r.attempts,
      elapsed = r.finished and r.started and (r.finished - r.started) or nil, reason = r.reason }
  end
  if opts.junit then
    local logs = {}
    for _, s in ipairs(p.stages) do logs[s.name] = results[s.name].log end
    local ok, werr = fs.write(opts.junit, require("orch.junit").render(name, summary, logs, loop.time()))
    if not ok then io.stderr:write("orch: ", werr, "\n") end
  end
  if ui.json then
    io.stdout:write(json.encode(summary), "\n")
  else
    io.stdout:write(ui:paint("bold", ("PIPELINE %s  run %d"):format(name, pr_id)), "\n")
    local failed = {}
    for _, s in ipairs(summary.stages) do
      io.stdout:write(("  %-20s %-16s %8s  %d attempt%s\n"):format(s.name, s.status, seconds(s.elapsed),
        s.attempts, s.attempts == 1 and "" or "s"))
      if s.status == "failed" then failed[#failed + 1] = s.name end
    end
    io.stdout:write(("  %s in %s%s; logs in %s\n"):format(status, seconds(summary.elapsed),
      #failed > 0 and (" (failed: " .. table.concat(failed, ", ") .. ")") or "", workspace))
  end
  lock:unlock()
  store:close()
  if loop.interrupted() then return 130 end
  return status == "ok" and 0 or 1
end

local function when(t) return t and os.date("%Y-%m-%d %H:%M:%S", math.floor(t)) or "-" end

--- orch pipeline list -f FILE: name, triggers, last run, last success
local function list(opts)
  local pipelines, err = load_file(opts.file)
  if not pipelines then return fail(err, 2) end
  local db_path = opts.state or (dirname(opts.file) .. "/.orch/state.db")
  local store = fs.stat(db_path) and state.open(db_path)
  local rows = {}
  for i, p in ipairs(pipelines) do
    local triggers = {}
    for k, v in pairs(p.triggers) do
      triggers[#triggers + 1] = math.type(k) == "integer" and tostring(v) or (k .. "=" .. (type(v) == "table" and "{...}" or tostring(v)))
    end
    table.sort(triggers)
    local last = store and store.db:row("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY id DESC LIMIT 1", p.name)
    local ok = store and store.db:row("SELECT * FROM pipeline_runs WHERE pipeline = ? AND status = 'ok' ORDER BY id DESC LIMIT 1", p.name)
    rows[i] = { name = p.name, stages = #p.stages, triggers = table.concat(triggers, ","),
      status = last and last.status or "never run", last_run = last and last.started, last_success = ok and ok.started }
  end
  if store then store:close() end
  if opts.json then io.stdout:write(json.encode(rows), "\n"); return 0 end
  io.stdout:write(("%-20s %6s  %-24s %-10s %-20s %s\n"):format("PIPELINE", "STAGES", "TRIGGERS", "STATUS", "LAST RUN", "LAST SUCCESS"))
  for _, r in ipairs(rows) do
    io.stdout:write(("%-20s %6d  %-24s %-10s %-20s %s\n"):format(r.name, r.stages, r.triggers, r.status,
      when(r.last_run), when(r.last_success)))
  end
  return 0
end

--- orch pipeline history NAME -f FILE: its runs, newest first, with stages
local function history(opts, name)
  local db_path = opts.state or (dirname(opts.file) .. "/.orch/state.db")
  if not fs.stat(db_path) then return fail(("no state store at %s"):format(db_path)) end
  local store = assert(state.open(db_path))
  local runs = store.db:rows("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY id DESC LIMIT 50", name)
  for _, r in ipairs(runs) do
    r.stages = store.db:rows("SELECT stage, status, attempts, started, finished, reason FROM stage_runs"
      .. " WHERE pipeline_run = ? ORDER BY started", r.id)
  end
  store:close()
  if #runs == 0 then return fail(("pipeline '%s' has no recorded runs"):format(name)) end
  if opts.json then io.stdout:write(json.encode(runs), "\n"); return 0 end
  for _, r in ipairs(runs) do
    io.stdout:write(("run %d  %s  %-7s %s  %s\n"):format(r.id, when(r.started), r.status, r.trigger,
      seconds(r.finished and (r.finished - r.started))))
    for _, s in ipairs(r.stages) do
      io.stdout:write(("    %-20s %-16s %d attempt%s%s\n"):format(s.stage, s.status, s.attempts,
        s.attempts == 1 and "" or "s", s.reason and ("  " .. s.reason) or ""))
    end
  end
  return 0
end

--- orch pipeline list|run NAME|history NAME -f FILE
function M.main(opts, rest)
  local sub, name = rest[1], rest[2]
  if not opts.file then return fail("pipeline: give the file with -f FILE\ntry 'orch help pipeline'", 2) end
  if sub == "list" then return list(opts) end
  if sub == "run" and name then return run(opts, name) end
  if sub == "history" and name then return history(opts, name) end
  return fail("pipeline: expected 'list', 'run NAME' or 'history NAME'\ntry 'orch help pipeline'", 2)
end

return M

-- pipeline/execute.lua: one run of a pipeline from its file, start to end:
-- the run's record, the file loaded into it, the pipeline's lock, the
-- stages, the summary (and its JUnit report). Shared by `orch pipeline run`
-- and `orch serve`; what it reports goes to the ui it is given.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local pipeline_file = require("orch.pipeline.load")
local pipeline_run = require("orch.pipeline.run")
local secret = require("orch.secret")

local M = {}

--- One run of pipeline `name` from file `path`, start to end: a new run
-- record, the file loaded into it, the pipeline's lock, the stages, the
-- summary. opts: store, ui, jobs, trigger, detail, env, payload,
-- inventory, vars, lock_timeout, junit, and on_start(execution) (to
-- cancel it). Returns status ("ok", "failed", "interrupted") and the
-- summary event; or nil, a message and a code: "EINVAL" for a file that
-- doesn't load or has no such pipeline, else the lock's ("LOCKED").
function M.execute(path, name, opts)
  local store, ui = opts.store, opts.ui
  local command = ("orch pipeline run %s -f %s"):format(name, path)
  local run_id = store:begin_run({ playbook = path, command = command })
  local loaded, lerr = pipeline_file.load(path, { id = run_id, ui = ui, store = store, inventory = opts.inventory,
    vars = opts.vars, limit = opts.limit })
  local p
  if loaded then p, lerr = pipeline_file.find(loaded, name, path) end
  if not p then
    store:finish_run(run_id, "failed")
    return nil, lerr, "EINVAL"
  end
  local lock, kerr, kcode = store:lock({ timeout = opts.lock_timeout, command = command, scope = "pipeline-" .. name,
    warn = function(msg) ui:warn(msg) end })
  if not lock then
    store:finish_run(run_id, "failed")
    return nil, kerr, kcode
  end
  local run = loaded.run
  local started = loop.now()
  local exec = pipeline_run.start(p, { run = run, dir = loaded.dir, jobs = opts.jobs, trigger = opts.trigger,
    detail = opts.detail, env = opts.env, payload = opts.payload })
  if opts.on_start then opts.on_start(exec) end
  local status, results = exec:wait()
  store:finish_run(run_id, status)
  lock:unlock()
  pcall(run.disconnect, run)  -- after an interrupt, closing SSH sessions can't wait
  run:flush()
  local summary = { event = "summary", pipeline = name, status = status, pipeline_run = exec.id,
    workspace = exec.workspace, elapsed = loop.now() - started, stages = {} }
  local logs = {}
  for i, s in ipairs(p.stages) do
    local r = results[s.name] or { status = "interrupted", attempts = 0 }
    summary.stages[i] = { name = s.name, status = r.status, attempts = r.attempts,
      elapsed = r.finished and r.started and (r.finished - r.started) or nil, reason = r.reason,
      artifacts = r.artifact and r.artifact.path or nil }
    logs[s.name] = r.log
  end
  ui:emit(secret.scrub(summary))
  if opts.junit then
    local ok, werr = fs.write(opts.junit, require("orch.pipeline.junit").render(name, summary, logs, loop.time()))
    if not ok then ui:error(werr) end
  end
  return status, summary
end

return M

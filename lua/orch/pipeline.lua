-- pipeline.lua: `pipeline "name" { stage "x" { ... }, ... }`: stages as a
-- DAG, independent ones in parallel (bounded by --jobs); a failure skips
-- what needs it while `always` and `on_failure` stages still run; every
-- run recorded in the state store with each stage's log.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local errors = require("orch.errors")

local M = {}

local STAGE_KEYS = { sh = true, run = true, needs = true, timeout = true, retry = true, env = true,
  allow_failure = true, when = true, artifacts = true, on = true, cwd = true }
local PIPELINE_KEYS = { triggers = true, env = true, keep = true }
local WHEN = { on_success = true, on_failure = true, always = true }

--- stage "name" { ... }: a stage definition for the pipeline's table.
function M.stage(name, where)
  if type(name) ~= "string" or not name:match("^[%w_.%-]+$") then
    error("stage needs a name of letters, digits, '_', '.', '-'", 3)
  end
  return function(spec)
    if type(spec) ~= "table" then error(("stage '%s': expected a table"):format(name), 2) end
    for k in pairs(spec) do
      if not STAGE_KEYS[k] then error(("stage '%s': unknown key '%s'"):format(name, tostring(k)), 2) end
    end
    if (spec.sh == nil) == (spec.run == nil) then
      error(("stage '%s': give sh (commands) or run (a function), one of them"):format(name), 2)
    end
    if spec.when ~= nil and not WHEN[spec.when] then
      error(("stage '%s': when must be on_success, on_failure or always; got %s"):format(name, tostring(spec.when)), 2)
    end
    local s = { name = name, where = where }
    for k, v in pairs(spec) do s[k] = v end
    s.needs = type(s.needs) == "string" and { s.needs } or (s.needs or {})
    s.sh = type(s.sh) == "string" and { s.sh } or s.sh
    s.when = s.when or "on_success"
    s.retry = math.tointeger(s.retry) or 0
    return setmetatable(s, { __name = "orch.stage" })
  end
end

local function is_stage(v)
  local mt = getmetatable(v)
  return mt and mt.__name == "orch.stage"
end

--- Check a pipeline's table: stages, their needs, no cycle. Raises at
-- `level` with what is wrong, naming stages and where they are defined.
function M.define(name, spec, level)
  level = (level or 1) + 1
  if type(spec) ~= "table" then error(("pipeline '%s': expected a table"):format(name), level) end
  local p = { name = name, stages = {}, by_name = {}, env = spec.env or {}, triggers = spec.triggers or {},
    keep = spec.keep }
  for k, v in pairs(spec) do
    if math.type(k) == "integer" then
      if not is_stage(v) then error(("pipeline '%s': entry %d is not a stage \"name\" { ... }"):format(name, k), level) end
      if p.by_name[v.name] then
        error(("pipeline '%s': stage '%s' is defined twice (%s and %s)"):format(name, v.name,
          p.by_name[v.name].where, v.where), level)
      end
      p.by_name[v.name] = v
    elseif not PIPELINE_KEYS[k] then
      error(("pipeline '%s': unknown key '%s'"):format(name, tostring(k)), level)
    end
  end
  for i = 1, #spec do p.stages[i] = spec[i] end
  for _, s in ipairs(p.stages) do
    for _, n in ipairs(s.needs) do
      if not p.by_name[n] then
        error(("pipeline '%s': stage '%s' (%s) needs '%s', which is not a stage of it"):format(name, s.name, s.where, n), level)
      end
    end
  end
  -- a cycle, named stage by stage
  local state, stack = {}, {}
  local function visit(s)
    if state[s.name] == "done" then return end
    if state[s.name] == "active" then
      local from
      for i, n in ipairs(stack) do if n == s.name then from = i end end
      local cycle = table.move(stack, from, #stack, 1, {})
      cycle[#cycle + 1] = s.name
      error(("pipeline '%s': stages form a cycle: %s"):format(name, table.concat(cycle, " -> ")), level + 1)
    end
    state[s.name] = "active"
    stack[#stack + 1] = s.name
    for _, n in ipairs(s.needs) do visit(p.by_name[n]) end
    stack[#stack] = nil
    state[s.name] = "done"
  end
  for _, s in ipairs(p.stages) do visit(s) end
  return p
end

-- Shell builtins and keywords (GNU make's list): these need a shell.
local SHELL_WORDS = {}
for w in ([[. : alias bg break case cd command continue eval exec exit export fc fg for getopts hash if
  jobs login logout read readonly return set shift test times trap type ulimit umask unalias unset wait
  while]]):gmatch("%S+") do SHELL_WORDS[w] = true end

-- Run one stage's commands (stopping at the first failure) or its
-- function, once; returns ok, why.
local function attempt(ctx, stage, env, log)
  if stage.run then
    local ok, err = xpcall(stage.run, errors.traceback, ctx)
    if not ok then log(errors.message(err, true)) end
    return ok, not ok and errors.message(err) or nil
  end
  for _, cmd in ipairs(stage.sh) do
    log("$ " .. cmd)
    -- as make does: a command with nothing for a shell to do runs without one
    local first = cmd:match("^%s*(%S+)")
    local simple = first and not cmd:find("[^%w%-_./=:,@+ ]") and not first:find("=") and not SHELL_WORDS[first]
    local argv
    if simple then
      argv = {}
      for word in cmd:gmatch("%S+") do argv[#argv + 1] = word end
    end
    local res, err = proc.run(argv or cmd, { env = env, cwd = stage.cwd or ctx.dir, timeout = stage.timeout,
      on_stdout = log, on_stderr = log })
    if not res then return false, err end
    if not res.ok then return false, ("%s: %s"):format(cmd, proc.failure(res)) end
  end
  return true
end

--- Run pipeline p: opts { store, run_id, dir (the playbook's), jobs,
-- emit(event), trigger }. Returns "ok" or "failed", and the stage results.
function M.run(p, opts)
  local store = opts.store
  local started = loop.time()
  local pr_id
  assert(store:transaction(function(st)
    assert(st.db:exec("INSERT INTO pipeline_runs (run_id, pipeline, trigger, started, status) VALUES (?, ?, ?, ?, 'running')",
      opts.run_id, p.name, opts.trigger or "manual", started))
    pr_id = st.db:last_id()
    return true
  end))
  local workspace = ("%s/.orch/runs/%s/%d"):format(opts.dir, p.name, pr_id)
  assert(fs.mkdir(workspace .. "/logs", "0755") ~= nil)
  store.db:exec("UPDATE pipeline_runs SET workspace = ? WHERE id = ?", workspace, pr_id)

  local sem = task.semaphore(math.tointeger(opts.jobs) or 4)
  local results, tasks, any_failed = {}, {}, false
  -- Stage records go in batches: a transaction each cost more than a
  -- short stage. A crash loses at most a second of them.
  local pending, flushed = {}, loop.now()
  local function flush()
    if #pending == 0 then return end
    local batch = pending
    pending, flushed = {}, loop.now()
    assert(store:transaction(function(st)
      for _, r in ipairs(batch) do
        assert(st.db:exec("INSERT OR REPLACE INTO stage_runs (pipeline_run, stage, status, attempts, started,"
          .. " finished, reason, log) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pr_id, r.name, r.status, r.attempts,
          r.started, r.finished, r.reason, r.log))
      end
      return true
    end))
  end
  local function record(_, r)
    pending[#pending + 1] = r
    if #pending >= 50 or loop.now() - flushed > 1 then flush() end
  end

  local function run_stage(stage)
    -- wait for what it needs; always/on_failure stages with no needs go last
    local needs_failed = false
    for _, n in ipairs(stage.needs) do
      tasks[n]:wait()
      local r = results[n]
      if r.status == "failed" or r.status == "skipped" then needs_failed = true end
    end
    if #stage.needs == 0 and stage.when ~= "on_success" then
      for _, other in ipairs(p.stages) do
        if other.when == "on_success" then tasks[other.name]:wait() end
      end
    end
    local r = { name = stage.name, attempts = 0 }
    local go
    if stage.when == "always" then go = true
    elseif stage.when == "on_failure" then go = needs_failed or (#stage.needs == 0 and any_failed)
    else go = not needs_failed end
    if not go then
      r.status = "skipped"
      r.reason = stage.when == "on_failure" and "nothing failed"
        or ("needs %s, which did not succeed"):format(table.concat(stage.needs, ", "))
      results[stage.name] = r
      record(stage, r)
      opts.emit({ event = "stage", name = stage.name, status = "skipped", reason = r.reason })
      return
    end
    sem:acquire()
    r.started = loop.time()
    opts.emit({ event = "stage_start", name = stage.name })
    local env = { ORCH_PIPELINE = p.name, ORCH_STAGE = stage.name, ORCH_RUN_ID = tostring(pr_id),
      ORCH_WORKSPACE = workspace }
    for k, v in pairs(p.env) do env[k] = v end
    for k, v in pairs(stage.env or {}) do env[k] = v end
    local log_path = ("%s/logs/%s.log"):format(workspace, stage.name)
    local lines = {}
    local function log(line)
      lines[#lines + 1] = line
      opts.emit({ event = "output", name = stage.name, line = line })
    end
    local ctx = { pipeline = p.name, stage = stage.name, run_id = pr_id, workspace = workspace, dir = opts.dir,
      env = env, log = log }
    local ok, why
    repeat
      r.attempts = r.attempts + 1
      if r.attempts > 1 then log(("retrying (attempt %d of %d)"):format(r.attempts, stage.retry + 1)) end
      ok, why = attempt(ctx, stage, env, log)
    until ok or r.attempts > stage.retry or loop.interrupted()
    sem:release()
    r.finished = loop.time()
    r.status = ok and "ok" or (stage.allow_failure and "allowed_failure" or "failed")
    r.reason = why
    r.log = table.concat(lines, "\n")
    -- a log, not state: written plainly (an atomic write's fsync per stage
    -- cost more than the stage)
    local f = io.open(log_path, "wb")
    if f then f:write(r.log, #lines > 0 and "\n" or ""); f:close() end
    if r.status == "failed" then any_failed = true end
    results[stage.name] = r
    record(stage, r)
    opts.emit({ event = "stage", name = stage.name, status = r.status, attempts = r.attempts,
      elapsed = r.finished - r.started, reason = why })
  end

  for _, stage in ipairs(p.stages) do
    tasks[stage.name] = task.spawn(function()
      local ok, err = xpcall(run_stage, errors.traceback, stage)
      if not ok then
        results[stage.name] = { name = stage.name, status = "failed", reason = errors.message(err), attempts = 0 }
        any_failed = true
      end
    end)
  end
  for _, stage in ipairs(p.stages) do tasks[stage.name]:wait() end
  flush()
  local status = (any_failed or loop.interrupted()) and "failed" or "ok"
  store.db:exec("UPDATE pipeline_runs SET finished = ?, status = ? WHERE id = ?", loop.time(), status, pr_id)
  return status, results, pr_id, workspace
end

return M

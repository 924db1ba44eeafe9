-- pipeline/run.lua: one run of a pipeline: stages as a DAG, independent
-- ones in parallel (bounded by --jobs); a failure skips what needs it while
-- `always` and `on_failure` stages still run; artifacts handed on; stages
-- with `on` run on hosts as a play; every stage recorded in the state store.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local errors = require("orch.errors")
local play = require("orch.playbook.play")
local artifacts = require("orch.pipeline.artifacts")
local secret = require("orch.secret")

local M = {}

-- Shell builtins and keywords (GNU make's list): these need a shell.
local SHELL_WORDS = {}
for w in ([[. : alias bg break case cd command continue eval exec exit export fc fg for getopts hash if
  jobs login logout read readonly return set shift test times trap type ulimit umask unalias unset wait
  while]]):gmatch("%S+") do SHELL_WORDS[w] = true end

-- As make does: a command with nothing for a shell to do runs without one.
local function argv_of(cmd)
  local first = cmd:match("^%s*(%S+)")
  if not first or cmd:find("[^%w%-_./=:,@+ ]") or first:find("=") or SHELL_WORDS[first] then return nil end
  local argv = {}
  for word in cmd:gmatch("%S+") do argv[#argv + 1] = word end
  return argv
end

local Execution = {}
Execution.__index = Execution

--- Stop the run: stages not started are skipped with `why`, running
-- commands get SIGTERM (their process groups), the run ends "interrupted".
function Execution:cancel(why)
  if self.cancelled then return end
  self.cancelled = why
  for p in pairs(self.procs) do p:kill("TERM") end
end

-- Why a stage's command failed. One cut short by the stage's timeout (not
-- one of its own) says the stage's, not the part of it that was left when
-- the command started.
local function failure(ctx, res, own_timeout)
  if res.timed_out and not own_timeout and ctx.timeout then
    return ("timed out after %g s"):format(ctx.timeout)
  end
  return proc.failure(res)
end

-- ctx.sh(cmd): a command in the stage's folder and environment, its output
-- in the stage's log, within what is left of the stage's timeout; a
-- failure raises, naming the command and why.
local function stage_sh(self, ctx)
  return function(cmd, opts)
    opts = opts or {}
    if self.cancelled then error(self.cancelled, 2) end
    ctx.echo("$ " .. proc.display(cmd))
    local spawned
    -- (a secret's text in it needs the shell: an argv would show it to ps)
    local direct = type(cmd) == "string" and not secret.contains(cmd) and argv_of(cmd)
    local res, err = proc.run(direct or cmd, {
      env = opts.env or ctx.env, cwd = opts.cwd or ctx.cwd, timeout = opts.timeout or ctx.time_left(),
      on_stdout = ctx.log, on_stderr = ctx.log,
      on_spawn = function(p) spawned = p; self.procs[p] = true end })
    if spawned then self.procs[spawned] = nil end
    if not res then error(err, 2) end
    if not res.ok then error(("%s: %s"):format(proc.display(cmd), failure(ctx, res, opts.timeout)), 2) end
    return res
  end
end

-- On every host the stage selects, as a play: its function gets (h, ctx);
-- its commands run on the host, their output logged per host.
local function on_hosts(self, ctx, stage)
  local work = stage.run and function(h) stage.run(h, ctx) end or function(h)
    for _, cmd in ipairs(stage.sh) do
      ctx.echo(("[%s] $ %s"):format(h.name, cmd))
      local res = h:exec(cmd, { check = false, env = ctx.env, timeout = ctx.time_left() })
      for line in ((res.stdout or "") .. (res.stderr or "")):gmatch("[^\n]+") do
        ctx.log(("[%s] %s"):format(h.name, line))
      end
      if not res.ok then error(("%s: %s: %s"):format(h.name, cmd, failure(ctx, res)), 0) end
    end
  end
  local ok, failed = play.run(self.run, stage.name, { on = stage.on, serial = stage.serial,
    max_fail = stage.max_fail, work })
  if not ok then error(("stopped: %d host%s failed, past max_fail %s"):format(failed, failed == 1 and "" or "s",
    tostring(stage.max_fail)), 0) end
  if failed > 0 and stage.max_fail == nil then
    error(("failed on %d host%s"):format(failed, failed == 1 and "" or "s"), 0)
  end
end

-- One attempt at a stage; returns ok, why.
local function attempt(self, ctx, stage)
  if stage.on or stage.run then
    task.set_env(ctx.env)  -- for the commands its code runs, here and on hosts
    local ok, err
    if stage.on then ok, err = xpcall(on_hosts, errors.traceback, self, ctx, stage)
    else ok, err = xpcall(stage.run, errors.traceback, ctx) end
    if not ok then ctx.log(errors.message(err, self.run.ui.verbose)) end
    return ok, not ok and errors.message(err) or nil
  end
  for _, cmd in ipairs(stage.sh) do
    if self.cancelled then return false, self.cancelled end
    local ok, err = pcall(ctx.sh, cmd)
    if not ok then return false, errors.message(err) end
  end
  return true
end

-- The stage's record, into the next batch for the state store.
function Execution:record(r)
  self.pending[#self.pending + 1] = r
  if #self.pending >= 50 or loop.now() - self.flushed > 1 then self:flush() end
end

-- Stage records go in batches: a transaction each cost more than a short
-- stage. A crash loses at most a second of them.
function Execution:flush()
  if #self.pending == 0 then return end
  local batch, id = self.pending, self.id
  self.pending, self.flushed = {}, loop.now()
  assert(self.store:transaction(function(st)
    for _, r in ipairs(batch) do
      assert(st.db:exec("INSERT OR REPLACE INTO stage_runs (pipeline_run, stage, status, attempts, started,"
        .. " finished, reason, log) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", id, r.name, r.status, r.attempts,
        r.started, r.finished, r.reason, r.log))
      local a = r.artifact
      if a then
        assert(st.db:exec("INSERT OR REPLACE INTO pipeline_artifacts (pipeline_run, stage, path, files, bytes,"
          .. " sha256) VALUES (?, ?, ?, ?, ?, ?)", id, a.stage, a.path, a.files, a.bytes, a.sha256))
      end
    end
    return true
  end))
end

-- Whether a stage runs, given how what it needs went; or why it doesn't.
local function should_run(self, stage)
  if self.cancelled then return false, self.cancelled end
  local needs_failed = false
  for _, n in ipairs(stage.needs) do
    local s = self.results[n].status
    if s ~= "ok" and s ~= "allowed_failure" then needs_failed = true end
  end
  if stage.when == "always" then return true end
  if stage.when == "on_failure" then
    if needs_failed or (#stage.needs == 0 and self.any_failed) then return true end
    return false, "nothing failed"
  end
  if needs_failed then return false, ("needs %s, which did not succeed"):format(table.concat(stage.needs, ", ")) end
  return true
end

-- What a stage's commands and function get: its folder, environment, log
-- (ctx.lines, and ctx.printed once it printed anything of its own), sh.
function Execution:context(stage)
  local env = { ORCH_PIPELINE = self.pipeline.name, ORCH_STAGE = stage.name, ORCH_RUN_ID = tostring(self.id),
    ORCH_WORKSPACE = self.workspace }
  for k, v in pairs(self.env) do env[k] = v end
  for k, v in pairs(stage.env or {}) do env[k] = v end
  local ctx = { pipeline = self.pipeline.name, stage = stage.name, run_id = self.id, workspace = self.workspace,
    dir = self.dir, cwd = self.dir, env = env, lines = {}, printed = false }
  if stage.cwd then ctx.cwd = stage.cwd:sub(1, 1) == "/" and stage.cwd or (self.dir .. "/" .. stage.cwd) end
  -- a command as it runs ("$ make"): in the log, but not output of its own.
  -- Every line is masked here, before anything keeps or shows it: the log
  -- file, the store, the console, --json, the JUnit report.
  function ctx.echo(text)
    text = secret.scrub(text)
    ctx.lines[#ctx.lines + 1] = text
    if ctx.file then ctx.file:write(text, "\n") end
    self.run:emit({ event = "output", name = stage.name, line = text })
  end
  -- Once a stage prints, its log goes to its file line by line as well, so
  -- a kill -9 keeps what it printed (a stage that prints nothing costs no
  -- file); 0600, as a secret in an encoding no mask knows may be in it.
  function ctx.log(text)
    if not ctx.printed then
      ctx.printed = true
      local path = ("%s/logs/%s.log"):format(self.workspace, stage.name)
      ctx.file = io.open(path, "wb")
      if ctx.file then
        fs.chmod(path, "0600")
        ctx.file:setvbuf("line")
        ctx.file:write(table.concat(ctx.lines, "\n"), #ctx.lines > 0 and "\n" or "")
      end
    end
    for line in tostring(text):gsub("\n$", ""):gmatch("[^\n]*") do ctx.echo(line) end
  end
  -- seconds left of the stage's timeout (nil: none), for each command
  function ctx.time_left() return ctx.deadline and math.max(ctx.deadline - loop.now(), 0.001) end
  ctx.sh = stage_sh(self, ctx)
  return ctx
end

function Execution:run_stage(stage)
  -- wait for what it needs; always/on_failure stages with no needs go last
  for _, n in ipairs(stage.needs) do self.tasks[n]:wait() end
  if #stage.needs == 0 and stage.when ~= "on_success" then
    for _, other in ipairs(self.pipeline.stages) do
      if other.when == "on_success" then self.tasks[other.name]:wait() end
    end
  end
  local r = { name = stage.name, attempts = 0 }
  self.results[stage.name] = r
  local go, why = should_run(self, stage)
  if not go then
    r.status, r.reason = "skipped", why
    self:record(r)
    self.done = self.done + 1
    self.run:emit({ event = "stage", name = stage.name, status = "skipped", reason = why })
    self:progress()
    return
  end
  self.sem:acquire()
  r.started, r.status = loop.time(), "running"
  -- on record at once: a run killed now leaves a stage the store can mark
  -- aborted (the next run does, state.begin_run), not one it never heard of
  self:record(r)
  self:flush()
  self.running[#self.running + 1] = stage.name
  self.run:emit({ event = "stage_start", name = stage.name, hosts = stage.on })
  self:progress()
  local ctx = self:context(stage)
  local ok, fail_why = true, nil
  local inputs = {}
  for _, n in ipairs(stage.needs) do inputs[#inputs + 1] = self.results[n].artifact end
  if #inputs > 0 then
    local dir, err = artifacts.unpack(inputs, ("%s/in/%s"):format(self.workspace, stage.name))
    if dir then ctx.env.ORCH_ARTIFACTS, ctx.artifacts = dir, dir else ok, fail_why = false, err end
  end
  if ok then
    repeat
      r.attempts = r.attempts + 1
      if r.attempts > 1 then ctx.log(("retrying (attempt %d of %d)"):format(r.attempts, stage.retry + 1)) end
      -- each attempt has the whole timeout
      ctx.timeout, ctx.deadline = stage.timeout, stage.timeout and loop.now() + stage.timeout
      ok, fail_why = attempt(self, ctx, stage)
    until ok or r.attempts > stage.retry or self.cancelled or loop.interrupted()
  end
  if ok and stage.artifacts then
    r.artifact, fail_why = artifacts.collect(self.workspace, stage, ctx.cwd)
    ok = r.artifact ~= nil
    if ok then ctx.log(("artifacts: %d file%s, %d bytes"):format(r.artifact.files, r.artifact.files == 1 and "" or "s",
      r.artifact.bytes)) else ctx.log(fail_why) end
  end
  self.sem:release()
  r.finished = loop.time()
  r.status = ok and "ok" or (self.cancelled and "interrupted") or (stage.allow_failure and "allowed_failure")
    or "failed"
  r.reason = secret.scrub(not ok and self.cancelled or fail_why)
  r.log = table.concat(ctx.lines, "\n")
  if ctx.file then ctx.file:close() end
  if r.status == "failed" then self.any_failed = true end
  self:record(r)
  for i, n in ipairs(self.running) do if n == stage.name then table.remove(self.running, i) break end end
  self.done = self.done + 1
  self.run:emit({ event = "stage", name = stage.name, status = r.status, attempts = r.attempts,
    elapsed = r.finished - r.started, reason = r.reason })
  self:progress()
end

-- The terminal's progress line: stages done, and which run now.
function Execution:progress()
  local total = #self.pipeline.stages
  self.run.ui:progress(self.done < total and ("%s: %d/%d stages done%s"):format(self.pipeline.name,
    self.done, total, #self.running > 0 and ("; running " .. table.concat(self.running, ", ")) or "") or nil)
end

-- Runs beyond the newest `keep` lose their workspace (logs and artifacts
-- on disk); their records stay, marked pruned.
local function prune(store, name, keep)
  local old = store.db:rows("SELECT id, workspace FROM pipeline_runs WHERE pipeline = ? AND pruned = 0"
    .. " AND status != 'running' ORDER BY id DESC LIMIT -1 OFFSET ?", name, keep)
  for _, r in ipairs(old) do
    if r.workspace then fs.remove(r.workspace, { recursive = true }) end
    store.db:exec("UPDATE pipeline_runs SET pruned = 1 WHERE id = ?", r.id)
  end
end

--- Start pipeline p in a task: opts { run (the orch.run it belongs to),
-- dir (the pipeline file's), jobs, trigger, detail (a commit, a delivery),
-- env (more variables), payload (a webhook's body: a file in the workspace,
-- ORCH_WEBHOOK_PAYLOAD) }. Returns the execution: :wait() gives status
-- ("ok", "failed" or "interrupted") and the stage results by name;
-- :cancel(why) stops it.
function M.start(p, opts)
  local run, store = opts.run, opts.run.store
  local self = setmetatable({ pipeline = p, run = run, store = store, dir = opts.dir, results = {}, tasks = {},
    procs = {}, pending = {}, flushed = loop.now(), any_failed = false, running = {}, done = 0,
    sem = task.semaphore(math.tointeger(opts.jobs) or 4), env = {} }, Execution)
  for k, v in pairs(p.env) do self.env[k] = v end
  for k, v in pairs(opts.env or {}) do self.env[k] = v end
  self.started = loop.time()
  assert(store:transaction(function(st)
    assert(st.db:exec("INSERT INTO pipeline_runs (run_id, pipeline, trigger, detail, started, status)"
      .. " VALUES (?, ?, ?, ?, ?, 'running')", run.id, p.name, opts.trigger or "manual", opts.detail, self.started))
    self.id = st.db:last_id()
    return true
  end))
  self.workspace = ("%s/.orch/runs/%s/%d"):format(opts.dir, p.name, self.id)
  -- left by a store since deleted, or by another store: not this run's
  fs.remove(self.workspace, { recursive = true })
  assert(fs.mkdir(self.workspace .. "/logs", "0700") ~= nil)
  store.db:exec("UPDATE pipeline_runs SET workspace = ? WHERE id = ?", self.workspace, self.id)
  if opts.payload then
    self.env.ORCH_WEBHOOK_PAYLOAD = self.workspace .. "/webhook.json"
    assert(fs.write(self.env.ORCH_WEBHOOK_PAYLOAD, opts.payload, { mode = "0600" }))
  end

  self.main = task.spawn(function()
    for _, stage in ipairs(p.stages) do
      self.tasks[stage.name] = task.spawn(function()
        local ok, err = xpcall(self.run_stage, errors.traceback, self, stage)
        if not ok then
          local r = self.results[stage.name] or { name = stage.name, attempts = 0 }
          r.status, r.reason = "failed", secret.scrub(errors.message(err))
          self.results[stage.name] = r
          self.any_failed = true
          self:record(r)
        end
      end)
    end
    for _, stage in ipairs(p.stages) do self.tasks[stage.name]:wait() end
    return self:finish()
  end)
  return self
end

--- Record how the run ended; stages still running (an interrupt cut the
-- waits short) are recorded as interrupted. Returns the status.
function Execution:finish()
  if self.status then return self.status end
  self.run.ui:progress(nil)
  local interrupted = self.cancelled or loop.interrupted()
  for _, stage in ipairs(self.pipeline.stages) do
    local r = self.results[stage.name]
    if interrupted and (not r or not r.status or r.status == "running") then
      r = r or { name = stage.name, attempts = 0 }
      r.status, r.reason, r.finished = "interrupted", tostring(interrupted), r.started and loop.time()
      self.results[stage.name] = r
      self:record(r)
    end
  end
  self:flush()
  self.status = interrupted and "interrupted" or (self.any_failed and "failed" or "ok")
  self.store.db:exec("UPDATE pipeline_runs SET finished = ?, status = ? WHERE id = ?", loop.time(), self.status,
    self.id)
  if self.pipeline.keep then prune(self.store, self.pipeline.name, self.pipeline.keep) end
  return self.status
end

--- Wait for the run to end: its status and the stage results by name. An
-- interrupt (Ctrl-C) ends the wait at once, with the run recorded.
function Execution:wait()
  local ok, tok, status = pcall(self.main.wait, self.main)
  if not (ok and tok) then return self:finish(), self.results end
  return status, self.results
end

return M

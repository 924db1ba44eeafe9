-- cli/serve.lua: `orch serve -f FILE`: one process that runs a file's pipelines
-- on their triggers (cron schedules, new commits on a branch, signed
-- webhooks), never the same pipeline twice at once, and stops gracefully.
local loop = require("orch.core.loop")
local json = require("cjson")
local state = require("orch.state")
local ui_mod = require("orch.cli.ui")
local proc = require("orch.proc")
local task = require("orch.task")
local secret = require("orch.secret")
local playbook = require("orch.playbook")
local pipeline_file = require("orch.pipeline.load")
local execute = require("orch.pipeline.execute").execute

local M = {}

-- How long a sleeping trigger takes to notice the server is stopping.
local TICK = 0.2

local Server = {}
Server.__index = Server
M.Server = Server  -- for the specs: a trigger's loop driven by a schedule they make

function Server:emit(ev)
  ev.event = ev.event or "trigger"
  ev.time = loop.time()
  self.ui:emit(secret.scrub(ev))
end

-- One triggered run of pipeline `name`, then the one queued meanwhile.
function Server:run_pipeline(name, trigger)
  local slot = self.slots[name]
  while trigger and not self.stopping do
    slot.running = true
    local store, err = state.open(self.store_path)
    if not store then
      self.ui:error(("pipeline %s: %s"):format(name, err))
    else
      local status, detail = execute(self.file, name, { store = store, ui = self.ui, jobs = self.opts.jobs,
        trigger = trigger.kind, detail = trigger.detail, env = trigger.env, payload = trigger.payload,
        inventory = self.opts.inventory,
        vars = self.vars, lock_timeout = 300, on_start = function(exec) slot.exec = exec end })
      if not status then self.ui:error(("pipeline %s: %s"):format(name, detail)) end
      store:close()
    end
    slot.exec = nil
    trigger, slot.queued = slot.queued, nil
  end
  slot.running = false
end

--- A trigger fired for pipeline `name`: { kind, detail, env }. Returns
-- what became of it: "started", "queued", "skipped" or "stopping".
function Server:fire(name, trigger)
  local slot = self.slots[name]
  local action
  if self.stopping then action = "stopping"
  elseif not slot.running then
    action = "started"
    slot.running = true  -- now: a second trigger this tick must see it
    task.spawn(self.run_pipeline, self, name, trigger)
  elseif slot.pipeline.on_busy == "skip" then action = "skipped"
  else
    action = slot.queued and "queued (replacing one already queued)" or "queued"
    slot.queued = trigger
  end
  self:emit({ pipeline = name, trigger = trigger.kind, detail = trigger.detail, action = action })
  return action
end

-- Sleep until wall-clock time t, or until the server stops; true if t came.
function Server:sleep_until(t)
  while not self.stopping do
    local left = t - loop.time()
    if left <= 0 then return true end
    loop.sleep(math.min(left, TICK))
  end
  return false
end

-- schedule = "CRON": fire at each next time (local time); a machine that
-- slept through several fires once, as cron does.
function Server:watch_schedule(p, sched)
  while not self.stopping do
    local at = sched:next(math.floor(loop.time()))
    if not at then return end
    self:emit({ event = "scheduled", pipeline = p.name, cron = sched.text, next = at })
    if self:sleep_until(at) then self:fire(p.name, { kind = "schedule", detail = sched.text }) end
  end
end

-- The head of branch in repo (a path or URL): { sha, branch }, by git
-- ls-remote, no checkout; { missing = why } when the branch has no commit
-- yet. No branch: the one the repository's HEAD names (main, master, ...),
-- found again on every poll.
local function head_of(repo, branch, dir)
  local argv = branch and { "git", "ls-remote", "--", repo, "refs/heads/" .. branch }
    or { "git", "ls-remote", "--symref", "--", repo, "HEAD" }
  local res, err = proc.run(argv, { cwd = dir, timeout = 60, env = { GIT_TERMINAL_PROMPT = "0" } })  -- never wait for a password
  if not res then return nil, err end
  if not res.ok then return nil, ("git ls-remote %s: %s"):format(repo, (res.stderr:gsub("%s+$", ""))) end
  local sha = res.stdout:match("^(%x+)%s") or res.stdout:match("\n(%x+)%s")
  if not sha then
    return { missing = branch and ("%s has no branch '%s' yet"):format(repo, branch) or ("%s has no commits yet"):format(repo) }
  end
  return { sha = sha, branch = branch or res.stdout:match("ref: refs/heads/(%S+)%s+HEAD") or "HEAD" }
end

-- commit = { repo, branch, every }: poll the branch's head; a head not seen
-- before runs the pipeline once with ORCH_COMMIT. The first head ever seen
-- is recorded, not run: a commit is new when it lands while orch watches
-- (or since it last did: what it saw is kept in the state store), so the
-- first commit of a branch that had none while orch watched is new too.
function Server:watch_commits(p)
  local c = p.triggers.commit
  local store = assert(state.open(self.store_path))
  local seen = store.db:value("SELECT seen FROM pipeline_triggers WHERE pipeline = ? AND trigger = 'commit'", p.name)
  local last_err
  while not self.stopping do
    local head, err = head_of(c.repo, c.branch, self.dir)
    local sha = head and head.sha
    err = err or (head and head.missing)
    if err and err ~= last_err then self.ui:error(("pipeline %s: commit trigger: %s"):format(p.name, err)) end
    last_err = err
    if head and head.missing then seen = seen or "" end
    if sha and sha ~= seen then
      store.db:exec("INSERT OR REPLACE INTO pipeline_triggers (pipeline, trigger, seen, updated)"
        .. " VALUES (?, 'commit', ?, ?)", p.name, sha, loop.time())
      if seen then
        self:fire(p.name, { kind = "commit", detail = sha, env = { ORCH_COMMIT = sha, ORCH_BRANCH = head.branch } })
      else
        self:emit({ pipeline = p.name, trigger = "commit", detail = sha, action = "watching " .. head.branch })
      end
      seen = sha
    end
    self:sleep_until(loop.time() + c.every)
  end
  store:close()
end

-- How long an accepted body is remembered: longer than GitHub lets a
-- delivery be redelivered (3 days), and short enough to stay small.
M.REPLAY_WINDOW = 30 * 86400

-- Was this delivery, or this very body, accepted before? A signed body
-- replayed by someone who saw it must not run the pipeline again, whatever
-- X-GitHub-Delivery (unsigned) says. When it was ("delivery X at T"), or
-- nil; then a delivery with an id is remembered, in the store, so a
-- restart forgets nothing.
function Server:delivered(name, delivery, body)
  local digest = require("orch.core.digest").sha256_data(body)
  local store = assert(state.open(self.store_path))
  local now = loop.time()
  local seen
  assert(store:transaction(function(st)
    st.db:exec("DELETE FROM webhook_deliveries WHERE received < ?", now - M.REPLAY_WINDOW)
    local row = st.db:row("SELECT delivery, received FROM webhook_deliveries WHERE pipeline = ?"
      .. " AND (digest = ? OR delivery = ?) LIMIT 1", name, digest, delivery or "")
    if row then
      seen = ("delivery %s at %s"):format(row.delivery, os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(row.received)))
    elseif delivery then
      assert(st.db:exec("INSERT INTO webhook_deliveries (pipeline, digest, delivery, received) VALUES (?, ?, ?, ?)",
        name, digest, delivery, now))
    end
    return true
  end))
  store:close()
  return seen
end

-- POST /hooks/NAME, signed as GitHub signs: X-Hub-Signature-256 is
-- "sha256=" and the HMAC-SHA256 of the body keyed with the secret.
function Server:answer(req)
  local digest = require("orch.core.digest")
  local function reply(status, body)
    req:respond(status, json.encode(body) .. "\n", { ["Content-Type"] = "application/json" })
  end
  local name = req.path:match("^/hooks/([%w_.%-]+)$")
  local slot = name and self.slots[name]
  if not (slot and slot.secret) then return reply(404, { error = "no webhook here" }) end
  if req.method ~= "POST" then return reply(405, { error = "use POST" }) end
  local given = req.headers["x-hub-signature-256"] or ""
  local want = "sha256=" .. digest.hmac_sha256(slot.secret, req.body)
  if not digest.equal(given, want) then
    self:emit({ pipeline = name, trigger = "webhook", action = "refused",
      detail = ("%s signature from %s"):format(given == "" and "missing" or "bad", req.remote) })
    return reply(401, { error = "missing or bad X-Hub-Signature-256" })
  end
  if self.stopping then return reply(503, { error = "orch serve is stopping" }) end
  local delivery = req.headers["x-github-delivery"]
  if delivery == "" then delivery = nil end
  local before = self:delivered(name, delivery, req.body)
  if before then
    self:emit({ pipeline = name, trigger = "webhook", action = "refused",
      detail = "replayed delivery " .. (delivery or "(no id)") })
    return reply(409, { error = ("this delivery was received already (%s)"):format(before) })
  end
  if not delivery then
    self:emit({ pipeline = name, trigger = "webhook", action = "refused", detail = "no X-GitHub-Delivery" })
    return reply(400, { error = "missing X-GitHub-Delivery: each delivery needs its own id" })
  end
  local action = self:fire(name, { kind = "webhook", detail = delivery, payload = req.body,
    env = { ORCH_WEBHOOK_EVENT = req.headers["x-github-event"], ORCH_WEBHOOK_DELIVERY = delivery } })
  reply(202, { pipeline = name, action = action })
end

function Server:listen()
  local http = require("orch.core.http")
  local host, port = require("orch.cli.args").parse_listen(self.opts.listen)   -- checked as it was parsed
  local srv, err = http.listen({ host = host, port = port, max_body = math.tointeger(self.opts.max_body),
    request_timeout = math.tointeger(self.opts.request_timeout), max_per_address = math.tointeger(self.opts.max_per_client) })
  if not srv then return nil, err end
  self.http = srv
  self:emit({ event = "listening", address = srv:address() })
  task.spawn(function()
    while true do
      local req = srv:accept()
      if not req then return end
      local ok, err = pcall(self.answer, self, req)
      if not ok then
        self.ui:error("webhook: " .. tostring(err))
        pcall(req.respond, req, 500, "internal error\n")
      end
    end
  end)
  return true
end

-- The webhook secret of pipeline p: the file's, else ORCH_WEBHOOK_SECRET_NAME
-- (NAME upper-cased, non-alphanumerics as _), else ORCH_WEBHOOK_SECRET.
local function webhook_secret(p)
  local given = p.triggers.webhook.secret
  if given ~= nil then return secret.reveal(secret.new(given)) end  -- registered: output never shows it
  local var = "ORCH_WEBHOOK_SECRET_" .. p.name:upper():gsub("[^%w]", "_")
  local v = os.getenv(var) or os.getenv("ORCH_WEBHOOK_SECRET")
  if v and v ~= "" then secret.new(v); return v end  -- registered, so output never shows it
  return nil
end

function Server:busy()
  for _, slot in pairs(self.slots) do if slot.running then return true end end
  return false
end

-- Wait up to `seconds` for every pipeline run to end; false if they did
-- not, or an interrupt (a second signal) cut the wait short.
function Server:wait_idle(seconds)
  local deadline = loop.now() + seconds
  while self:busy() do
    if loop.now() >= deadline or loop.interrupted() or not pcall(loop.sleep, TICK) then return false end
  end
  return true
end

--- Stop taking triggers; give running stages `grace` seconds, then stop
-- them. Every run ends recorded: finished, or interrupted.
function Server:stop(why)
  self.stopping = why
  self:emit({ event = "stopping", reason = why, grace = self.opts.grace })
  if self.http then self.http:close() end
  for _, slot in pairs(self.slots) do slot.queued = nil end
  if self:wait_idle(self.opts.grace or 30) then return end
  for name, slot in pairs(self.slots) do
    if slot.exec then
      self:emit({ event = "log", message = ("stopping pipeline %s (run %d)"):format(name, slot.exec.id) })
      slot.exec:cancel(("orch serve stopped (%s) and the grace period of %g s ran out"):format(why, self.opts.grace))
    end
  end
  -- cancelled runs record themselves and end; a stage stuck in Lua code
  -- gets a few seconds more, then the interrupt, which no wait outlasts
  if self:wait_idle(5) then return end
  loop.interrupt()
  for _, slot in pairs(self.slots) do
    local exec = slot.exec
    if exec then
      exec:finish()
      local store = state.open(self.store_path)
      if store then store:finish_run(exec.run.id, "interrupted"); store:close() end
    end
  end
end

--- orch serve -f FILE: returns the exit code.
function M.main(opts)
  local ui = ui_mod.new({ json = opts.json, verbose = opts.verbose })
  ui.tty = false  -- a log of triggers and runs, several at once: no progress line
  local vars, verr = playbook.parse_vars(opts.extra_vars)
  if not vars then ui:error(verr); return 2 end
  local loaded, err = pipeline_file.load(opts.file, { ui = ui_mod.quiet(ui),
    check = true, inventory = opts.inventory, vars = vars })
  if not loaded then ui:error(err); return 2 end
  local self = setmetatable({ ui = ui, opts = opts, file = opts.file, dir = loaded.dir, vars = vars, slots = {},
    store_path = state.path(opts.state, opts.file) }, Server)
  local store, serr = state.open(self.store_path)  -- made and migrated once, before tasks share it
  if not store then ui:error(serr); return 1 end
  store:close()
  local watching, webhooks = {}, false
  for _, p in ipairs(loaded.list) do
    local slot = { pipeline = p }
    self.slots[p.name] = slot
    if p.triggers.webhook then
      slot.secret = webhook_secret(p)
      if not slot.secret then
        ui:error(("pipeline '%s' has a webhook trigger but no secret: set webhook = { secret = ... } or"
          .. " ORCH_WEBHOOK_SECRET (webhooks are never served unauthenticated)"):format(p.name))
        return 2
      end
      webhooks = true
    end
    for _, sched in ipairs(p.triggers.schedules or {}) do
      watching[#watching + 1] = function() self:watch_schedule(p, sched) end
    end
    if p.triggers.commit then watching[#watching + 1] = function() self:watch_commits(p) end end
  end
  if #watching == 0 and not webhooks then
    ui:error(("%s has no pipeline with a schedule, commit or webhook trigger: nothing to serve"):format(opts.file))
    return 2
  end
  loop.graceful()
  if webhooks then
    local ok, lerr = self:listen()
    if not ok then ui:error(lerr); return 1 end
  end
  local watchers = {}
  for i, fn in ipairs(watching) do watchers[i] = task.spawn(fn) end
  self:emit({ event = "serving", file = opts.file, pipelines = #loaded.list })
  while not loop.stop_requested() and not loop.interrupted() and pcall(loop.sleep, TICK) do end
  self:stop(loop.stop_requested() or loop.interrupted())
  if not loop.interrupted() then
    for _, t in ipairs(watchers) do t:wait() end
  end
  self:emit({ event = "stopped" })
  return loop.interrupted() and 130 or 0
end

return M

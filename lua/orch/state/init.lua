-- state/init.lua: the state store's policy: where it is, its migrations
-- applied, transactions, the run lock, runs and their events, on top of
-- orch.core.state (SQLite).
local core = require("orch.core.state")
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local info = require("orch.core.info")
local cjson = require("cjson")
local orphans = require("orch.state.orphans")

local M = {}

--- The schema, one migration per version (state/migrations.lua).
M.migrations = require("orch.state.migrations")

local FINISHED = { ok = true, failed = true, interrupted = true, aborted = true }

local now = loop.time  -- wall-clock epoch seconds, fractional

-- How this process was started, as a user would type it.
local function cmdline()
  local f = io.open("/proc/self/cmdline", "rb")
  local raw = f and f:read("a") or ""
  if f then f:close() end
  local words = {}
  for w in raw:gmatch("[^%z]+") do words[#words + 1] = w end
  return #words > 0 and table.concat(words, " ") or "orch"
end

-- $USER, else the account name of our uid.
local function username()
  local user = os.getenv("USER")
  return user and user ~= "" and user or info.user
end

-- A failure raised inside a transaction, returned as nil, msg, code by it.
local Failure = { __tostring = function(f) return f[1] end }

local function must(ok, err, code)
  if ok == nil then error(setmetatable({ err, code }, Failure), 0) end
  return ok
end

local Store = {}
Store.__index = Store

--- Run fn(store, ...) in a transaction: BEGIN IMMEDIATE (the write lock up
-- front, so a busy db fails here, not halfway), COMMIT if fn returns, ROLLBACK
-- and re-raise if it raises. Nested calls become savepoints. Returns fn's
-- results, or nil, err, code (after the rollback) if the transaction could
-- not be had or a store method inside it failed that way. One connection
-- has one transaction: don't interleave them from concurrent tasks.
function Store:transaction(fn, ...)
  if type(fn) ~= "function" then
    error("transaction expects a function, got " .. type(fn), 2)
  end
  local db = self.db
  local depth = self._depth
  local sp = "orch_sp" .. depth
  local ok, err, code = db:exec(depth == 0 and "BEGIN IMMEDIATE"
                                or "SAVEPOINT " .. sp)
  if not ok then return nil, err, code end
  self._depth = depth + 1
  local res = table.pack(pcall(fn, self, ...))
  self._depth = depth
  if not res[1] then
    if depth == 0 then
      db:exec("ROLLBACK")
    else
      db:exec("ROLLBACK TO " .. sp)
      db:exec("RELEASE " .. sp)
    end
    local e = res[2]
    if getmetatable(e) == Failure then return nil, e[1], e[2] end
    error(e, 0)
  end
  ok, err, code = db:exec(depth == 0 and "COMMIT" or "RELEASE " .. sp)
  if not ok then
    if depth == 0 then db:exec("ROLLBACK") end
    return nil, err, code
  end
  return table.unpack(res, 2, res.n)
end

-- Bring the schema up to date, one migration per transaction.
local function migrate(store)
  local db = store.db
  local known = #M.migrations
  local version = must(db:value("PRAGMA user_version"))
  if version > known then
    return nil, string.format("state store %s has schema version %d; this orch"
      .. " knows up to %d — upgrade orch", store.path, version, known), "SCHEMA"
  end
  for i = version + 1, known do
    local ok, err, code = store:transaction(function()
      -- another process may have migrated while we waited for the lock
      if must(db:value("PRAGMA user_version")) >= i then return true end
      local step = M.migrations[i]
      if type(step) == "function" then
        must(step(db))
      else
        must(db:exec(step))
      end
      must(db:exec("PRAGMA user_version = " .. i))
      return true
    end)
    if not ok then
      -- err is "path: reason"; say the path once
      local reason = err:sub(1, #store.path + 2) == store.path .. ": "
                     and err:sub(#store.path + 3) or err
      return nil, string.format("state store %s: migration %d failed: %s",
                                store.path, i, reason), code
    end
  end
  return true
end

--- Where a command's store is: `given` (--state), else .orch/state.db in
-- the folder of `file` (the playbook or pipeline file), else in this one.
function M.path(given, file)
  if given then return given end
  return (file and file:match("^(.*)/[^/]*$") or ".") .. "/.orch/state.db"
end

--- The store at path when it exists; reading commands never make one.
function M.open_existing(path)
  if not fs.stat(path) then
    return nil, ("no state store at %s: nothing has run there yet (give --state PATH, or -f FILE for the store beside FILE)"):format(path), "ENOENT"
  end
  return M.open(path)
end

--- Open (creating it and its directory if need be) the store at `path`
-- and migrate it. Returns the store, or nil, err, code.
function M.open(path)
  if type(path) ~= "string" or path == "" then
    error("state store path must be a non-empty string, got " .. type(path), 2)
  end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and path ~= ":memory:" then
    local ok, err, code = fs.mkdir(dir, "0700")
    if ok == nil then return nil, err, code end
  end
  local db, err, code = core.open(path)
  if not db then return nil, err, code end
  local store = setmetatable({ path = path, db = db, _depth = 0 }, Store)
  local ok, done, merr, mcode = pcall(migrate, store)
  if not ok then
    db:close()
    if getmetatable(done) == Failure then return nil, done[1], done[2] end
    error(done, 0)
  end
  if not done then
    db:close()
    return nil, merr, mcode
  end
  pcall(store.abort_dead_runs, store)   -- housekeeping: a store busy now is tidied next time
  return store
end

function Store:close()
  self.db:close()
end
Store.__close = Store.close

-- ---- the lock ---------------------------------------------------------

local function describe_holder(what, data, waited)
  local ok, h = pcall(cjson.decode, data or "")
  local who
  if ok and type(h) == "table" and h.pid then
    who = string.format("pid %s on host %s (user %s, `%s`)",
      tostring(math.tointeger(h.pid) or h.pid), tostring(h.hostname or "?"), tostring(h.user or "?"),
      tostring(h.command or "?"))
    if tonumber(h.since) then
      who = who .. " since " .. os.date("%Y-%m-%d %H:%M:%S",
                                        math.floor(tonumber(h.since)))
    end
  else
    who = "another process"
  end
  return string.format("%s is locked by %s; gave up after %g s", what, who, waited)
end

-- Whether the process that recorded run r is gone: it ran here, and its
-- pid is free or a zombie. (A pid reused since is taken for the run's: the
-- run then stays 'running' until that process ends too.)
local function is_dead(r)
  if r.hostname ~= info.hostname or math.type(r.pid) ~= "integer" or r.pid == info.pid then return false end
  local stat = fs.read("/proc/" .. r.pid .. "/stat")
  return stat == nil or stat:match("^%d+ %(.*%) (%a)") == "Z"
end

--- Take the store's exclusive lock, so two runs that change state never
-- interleave: a flock on PATH.lock, held by the returned userdata until
-- :unlock(), <close> or exit (the kernel drops it if we die, so a crash
-- never leaves a stale lock). While another process holds it, waits up to
-- opts.timeout seconds (default 30), then returns nil, msg, "LOCKED" with
-- the holder's pid, host, user, command and since when. opts.scope names
-- a lock of its own beside the store's (a pipeline's: PATH.pipeline-NAME.lock),
-- for work that may run beside other runs but never beside itself.
function Store:lock(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("lock options must be a table, got " .. type(opts), 2)
  end
  local timeout = opts.timeout or 30
  if type(timeout) ~= "number" or timeout < 0 then
    error("lock timeout must be a non-negative number", 2)
  end
  local lockpath = self.path .. (opts.scope and ("." .. opts.scope) or "") .. ".lock"
  local what = opts.scope and ("%s (%s)"):format(opts.scope, self.path) or ("state store " .. self.path)
  local waited, start = 0, loop.now()  -- monotonic
  while true do
    local lk, err, code = fs.lock(lockpath)
    if lk then
      -- a holder that died (its flock went with it) may have left commands
      -- running: they end before this run starts its own
      local ok_, before = pcall(cjson.decode, fs.read(lockpath) or "")
      if ok_ and type(before) == "table" then before.pid = math.tointeger(before.pid) end
      if ok_ and type(before) == "table" and is_dead(before) then
        local ended = orphans.end_left_by(self.path, before.pid)
        if #ended > 0 and opts.warn then
          opts.warn(("ended what pid %d (which died holding %s) left running: %s"):format(
            before.pid, what, table.concat(ended, "; ")))
        end
      end
      orphans.journal(self.path)
      local ok, werr, wcode = lk:write(cjson.encode({
        pid = info.pid, hostname = info.hostname, user = username(),
        since = now(), command = opts.command or cmdline(),
      }))
      if ok == nil then
        lk:unlock()
        return nil, werr, wcode
      end
      return lk
    end
    if code ~= "LOCKED" then return nil, err, code end
    waited = loop.now() - start
    if waited >= timeout then
      return nil, describe_holder(what, fs.read(lockpath), timeout), "LOCKED"
    end
    loop.sleep(math.min(0.1, timeout - waited))
  end
end

-- ---- runs and events --------------------------------------------------

-- The pipeline runs of dead run `run_id`, and their stages that were
-- running, become 'aborted'; a stage keeps the log it had written.
local function abort_pipeline_runs(db, run_id, t)
  for _, p in ipairs(must(db:rows("SELECT id, workspace FROM pipeline_runs WHERE run_id = ? AND status = 'running'",
      run_id))) do
    must(db:exec("UPDATE pipeline_runs SET status = 'aborted', finished = ? WHERE id = ?", t, p.id))
    for _, st in ipairs(must(db:rows("SELECT stage FROM stage_runs WHERE pipeline_run = ? AND status = 'running'",
        p.id))) do
      local log = p.workspace and fs.read(("%s/logs/%s.log"):format(p.workspace, st.stage))
      must(db:exec("UPDATE stage_runs SET status = 'aborted', finished = ?, reason = ?, log = COALESCE(?, log)"
        .. " WHERE pipeline_run = ? AND stage = ?", t, "orch stopped without finishing it (killed?)",
        log and log:gsub("\n$", ""), p.id, st.stage))
    end
  end
end

--- Runs still 'running' whose process has died become 'aborted', with
-- their pipeline runs and running stages; done whenever a store is opened,
-- so history never shows a dead run as running. (Several runs may be live
-- at once: pipelines take their own locks.)
function Store:abort_dead_runs()
  local db = self.db
  local dead = {}
  for _, r in ipairs(must(db:rows("SELECT id, hostname, pid FROM runs WHERE status = 'running'"))) do
    if is_dead(r) then dead[#dead + 1] = r.id end
  end
  if #dead == 0 then return end
  must(self:transaction(function()
    local t = now()
    for _, id in ipairs(dead) do
      must(db:exec("UPDATE runs SET status = 'aborted', finished = ? WHERE id = ? AND status = 'running'", t, id))
      abort_pipeline_runs(db, id, t)
    end
    return true
  end))
end

--- Record the start of a run; returns its id.
function Store:begin_run(r)
  if type(r) ~= "table" or type(r.playbook) ~= "string" then
    error("begin_run expects { playbook = string, ... }", 2)
  end
  local db = self.db
  return self:transaction(function()
    local t = now()
    must(db:exec("INSERT INTO runs (playbook, command, started, status, who,"
                 .. " hostname, pid) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                 r.playbook, r.command, t, r.who or username(), info.hostname,
                 info.pid))
    return db:last_id()
  end)
end

--- Append an event to a run; returns its seq (1, 2, ... per run).
-- ev = { kind = string, host =, name =, status =, data = table or nil }.
function Store:event(run_id, ev)
  if math.type(run_id) ~= "integer" then
    error("event expects an integer run id, got " .. type(run_id), 2)
  end
  if type(ev) ~= "table" or type(ev.kind) ~= "string" then
    error("event expects { kind = string, ... }", 2)
  end
  local data = ev.data
  if data ~= nil then
    local ok, json = pcall(cjson.encode, data)
    if not ok then error("event data: " .. json, 2) end
    data = json
  end
  -- one statement: the seq can't race another writer
  return self.db:value("INSERT INTO events (run_id, seq, time, host, kind,"
    .. " name, status, data) SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3,"
    .. " ?4, ?5, ?6, ?7 FROM events WHERE run_id = ?1 RETURNING seq",
    run_id, now(), ev.host, ev.kind, ev.name, ev.status, data)
end

--- Mark a run finished with `status` (ok, failed, interrupted, aborted).
function Store:finish_run(run_id, status)
  if math.type(run_id) ~= "integer" then
    error("finish_run expects an integer run id, got " .. type(run_id), 2)
  end
  if not FINISHED[status] then
    error("finish_run: bad status " .. tostring(status), 2)
  end
  local n, err, code = self.db:exec("UPDATE runs SET status = ?, finished = ?"
                                    .. " WHERE id = ?", status, now(), run_id)
  if n == nil then return nil, err, code end
  if n == 0 then
    return nil, string.format("state store %s: no run %d", self.path, run_id),
           "ENOENT"
  end
  return true
end

--- The latest `limit` runs (all if nil), newest first.
function Store:runs(limit)
  if limit ~= nil and math.type(limit) ~= "integer" then
    error("runs expects an integer limit, got " .. type(limit), 2)
  end
  return self.db:rows("SELECT * FROM runs ORDER BY id DESC LIMIT ?",
                      limit or -1)
end

--- One run, or nil.
function Store:run(id)
  return self.db:row("SELECT * FROM runs WHERE id = ?", id)
end

--- A run's events in order, data decoded.
function Store:events(run_id)
  local rows, err, code = self.db:rows("SELECT * FROM events WHERE run_id = ?"
                                       .. " ORDER BY seq", run_id)
  if rows == nil then return nil, err, code end
  for _, ev in ipairs(rows) do
    if ev.data then ev.data = cjson.decode(ev.data) end
  end
  return rows
end

return M

-- playbook/run.lua: one run of a playbook: its flags (check, diff), the counts per
-- host for the recap, every event shown (scrubbed of secrets) and stored,
-- the handlers notified, and the host work is aimed at.
local loop = require("orch.core.loop")
local task = require("orch.task")
local host_mod = require("orch.host")
local reads = require("orch.state.reads")
local deep_equal = require("orch.tables").deep_equal
local secret = require("orch.secret")
local errors = require("orch.errors")

local M = {}

local Run = {}
Run.__index = Run

--- opts: id, ui, store, check, diff, playbook_dir, inventory, limit, forks.
function M.new(opts)
  local run = setmetatable(opts, Run)
  run.hosts, run.order, run.failed = {}, {}, false
  run.handlers, run.handler_order, run.notified, run.restored = {}, {}, {}, {}
  run.pending, run.flushed = {}, loop.now()
  run.localhost = host_mod.localhost()
  run.connections = {}   -- host name -> host object, or false, error
  return run
end

-- Not stored as events: the run's own record, and pipeline stages (which
-- have their tables, and whose output lines would swamp the events).
local STORED = { run_start = false, recap = false, stage_start = false, stage = false, output = false,
  summary = false }

--- Store the events not stored yet, in one transaction.
function Run:flush()
  if #self.pending == 0 then return end
  local pending = self.pending
  self.pending, self.flushed = {}, loop.now()
  assert(self.store:transaction(function(store)
    for _, e in ipairs(pending) do store:event(self.id, e) end
    return true
  end))
end

-- Events are stored in batches: a transaction each cost ten syscalls, more
-- than the resource it described. A crash loses at most a second of them.
function Run:emit(ev)
  ev.run_id = self.id
  ev = secret.scrub(ev)
  self.ui:emit(ev)
  if STORED[ev.event] == nil and self.id then  -- no id: only loading a file
    self.pending[#self.pending + 1] = { host = ev.host, kind = ev.event, name = ev.name or ev.message,
      status = ev.status, data = { elapsed = ev.elapsed, error = ev.error, type = ev.type, diff = ev.diff } }
    if #self.pending >= 500 or loop.now() - self.flushed > 1 then self:flush() end
  end
end

function Run:count(host, status)
  local s = self.hosts[host]
  if not s then
    s = { ok = 0, changed = 0, failed = 0, skipped = 0, unreachable = 0 }
    self.hosts[host] = s
    self.order[#self.order + 1] = host
  end
  s[status] = s[status] + 1
  if status == "failed" or status == "unreachable" then self.failed = true end
end

--- The host that work at this point targets: the play's host of this task
-- (inherited by the tasks it spawns), else the local machine.
function Run:host()
  return task.context() or self.localhost
end

--- The host object for inventory entry h, connected once per run: an SSH
-- session stays open for every play and resource that follows. nil, err
-- when it can't be reached (remembered: one try per run).
function Run:connect(h)
  local known = self.connections[h.name]
  if known ~= nil then
    if known then return known end
    return nil, self.connections[h.name .. "\0err"]
  end
  local host, err = host_mod.connect(h)
  self.connections[h.name] = host or false
  self.connections[h.name .. "\0err"] = err
  -- what the last run read there comes in one batch (host/prefetch.lua)
  if host and host.expect and self.store then host:expect(reads.of(self.store, h.name)) end
  -- a host with nothing to read in one batch (a first run) will use files
  if host and host.prepare_files and not next(host.expected or {}) then host:prepare_files() end
  return host, err
end

--- What each SSH host cost, into its recap counts: round trips (times
-- the host's bytes came in after orch's went out, from the TCP connect
-- on), exec channels opened and SFTP operations (a read is an open, reads
-- and a close).
function Run:count_round_trips()
  for name, host in pairs(self.connections) do
    if type(host) == "table" and host.session and self.hosts[name] then
      local st, counts = host.session:stats(), self.hosts[name]
      counts.round_trips, counts.channels, counts.sftp_ops = st.round_trips, st.channels, st.sftp_ops
    end
  end
end

--- Close every connection the run opened, keeping what was read on each
-- SSH host for the next run's batch.
function Run:disconnect()
  for name, host in pairs(self.connections) do
    if type(host) == "table" then
      -- (a run that read what the last one did writes nothing)
      if host.reads and self.store and not deep_equal(host.reads, host.expected or {}) then
        reads.save(self.store, name, host.reads)
      end
      host:close()
    end
    self.connections[name] = nil
  end
end

function Run:add_handler(name, fn, where)
  if self.handlers[name] then
    error(("handler '%s' is defined twice (first at %s)"):format(name, self.handlers[name].where), 3)
  end
  self.handlers[name] = { fn = fn, where = where }
  self.handler_order[#self.handler_order + 1] = name
end

--- Queue handlers by name for the current host (each runs once, at the
-- end of its play or of the playbook); `by` names who asked. Kept in the
-- store too (run.pending_key: the playbook), until the handler has run: a
-- run that fails first leaves them to the next run of the playbook.
function Run:notify(names, by)
  local host = self:host().name
  local queue = self.notified[host]
  if not queue then queue = {}; self.notified[host] = queue end
  for _, name in ipairs(names) do
    if not queue[name] then
      queue[name] = by
      if self.pending_key and not self.check then
        self.store.db:exec("INSERT OR IGNORE INTO pending_handlers (playbook, host, name, notified_by, run_id, time)"
          .. " VALUES (?, ?, ?, ?, ?, ?)", self.pending_key, host, name, by, self.id, loop.time())
      end
    end
  end
end

--- Queue the handlers an earlier run of the playbook notified but never
-- ran (it failed or was killed first); returns how many.
function Run:restore_pending()
  local rows = self.store.db:rows("SELECT * FROM pending_handlers WHERE playbook = ?", self.pending_key) or {}
  for _, r in ipairs(rows) do
    local queue = self.notified[r.host] or {}
    self.notified[r.host] = queue
    queue[r.name] = ("%s (run %s, which ended before its handlers ran)"):format(r.notified_by or "?", r.run_id or "?")
    self.restored[r.host .. "\0" .. r.name] = true
  end
  return #rows
end

--- Run the handlers notified for the current host: a play's own
-- (`handlers`, in name order) first, then the playbook's, in the order
-- they were defined. An unknown name is an error naming who asked for it.
function Run:run_handlers(play_handlers)
  local h = self:host()
  local queue = self.notified[h.name]
  if not queue then return end
  for name, by in pairs(queue) do
    -- one an earlier run left may belong to another play: it waits for it
    if not self.handlers[name] and not (play_handlers and play_handlers[name])
        and not self.restored[h.name .. "\0" .. name] then
      error(errors.failure(("%s notified handler '%s', but no handler has that name"):format(by, name)), 0)
    end
  end
  local order = {}
  if play_handlers then
    for name in pairs(play_handlers) do order[#order + 1] = name end
    table.sort(order)
  end
  for _, name in ipairs(self.handler_order) do order[#order + 1] = name end
  for _, name in ipairs(order) do
    if queue[name] then
      queue[name] = nil
      self:emit({ event = "handler", host = h.name, name = name })
      local fn = play_handlers and play_handlers[name] or self.handlers[name].fn
      fn(h)
      if self.pending_key and not self.check then
        self.store.db:exec("DELETE FROM pending_handlers WHERE playbook = ? AND host = ? AND name = ?",
          self.pending_key, h.name, name)
      end
    end
  end
  self.notified[h.name] = nil
end

return M

-- run.lua: one run of a playbook: its flags (check, diff), the counts per
-- host for the recap, every event shown (scrubbed of secrets) and stored,
-- the handlers notified, and the host work is aimed at.
local loop = require("orch.core.loop")
local host_mod = require("orch.host")
local secret = require("orch.secret")

local M = {}

-- A run failure already reported (a failed step or resource, a failed
-- command): exit 1, unlike a plain Lua error in the playbook, which is
-- the author's mistake: exit 2.
local Failure = { __tostring = function(f) return f.message end }

function M.failure(message, reported)
  return setmetatable({ message = message, reported = reported }, Failure)
end

function M.is_failure(err) return getmetatable(err) == Failure end

local Run = {}
Run.__index = Run

--- opts: id, ui, store, check, diff, playbook_dir.
function M.new(opts)
  local run = setmetatable(opts, Run)
  run.hosts, run.order, run.failed = {}, {}, false
  run.handlers, run.handler_order, run.notified = {}, {}, {}
  run.pending, run.flushed = {}, loop.now()
  run.localhost = host_mod.localhost()
  return run
end

local STORED = { run_start = false, recap = false }

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
  if STORED[ev.event] == nil then
    self.pending[#self.pending + 1] = { host = ev.host, kind = ev.event, name = ev.name or ev.message,
      status = ev.status, data = { elapsed = ev.elapsed, error = ev.error, type = ev.type, diff = ev.diff } }
    if #self.pending >= 500 or loop.now() - self.flushed > 1 then self:flush() end
  end
end

function Run:count(host, status)
  local s = self.hosts[host]
  if not s then
    s = { ok = 0, changed = 0, failed = 0, skipped = 0 }
    self.hosts[host] = s
    self.order[#self.order + 1] = host
  end
  s[status] = s[status] + 1
  if status == "failed" then self.failed = true end
end

--- The host that work at this point targets: the local machine unless a
-- play's task has chosen another.
function Run:host()
  return self.localhost
end

function Run:add_handler(name, fn, where)
  if self.handlers[name] then
    error(("handler '%s' is defined twice (first at %s)"):format(name, self.handlers[name].where), 3)
  end
  self.handlers[name] = { fn = fn, where = where }
  self.handler_order[#self.handler_order + 1] = name
end

--- Queue handlers by name (each runs once, at the end); `by` names who.
function Run:notify(names, by)
  for _, name in ipairs(names) do
    if not self.notified[name] then self.notified[name] = by end
  end
end

--- Run the notified handlers in the order they were defined; an unknown
-- name is an error naming the resource that asked for it.
function Run:run_handlers()
  for name, by in pairs(self.notified) do
    if not self.handlers[name] then
      error(M.failure(("%s notified handler '%s', but no handler has that name"):format(by, name)), 0)
    end
  end
  for _, name in ipairs(self.handler_order) do
    if self.notified[name] then
      self.notified[name] = nil
      self:emit({ event = "handler", host = self:host().name, name = name })
      self.handlers[name].fn(self:host())
    end
  end
end

return M

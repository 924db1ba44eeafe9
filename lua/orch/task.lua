-- task.lua: concurrency for Lua code: spawn coroutines on the event loop,
-- wait for them, and bound how many run at once.
local loop = require("orch.core.loop")
local errors = require("orch.errors")

local M = {}

M.sleep = loop.sleep
M.current = loop.current

-- Values each task inherits from the one that spawned it: get and set
-- act on the running task (or the top level, outside any).
local inherited = {}
local function task_local()
  local by_task, top = setmetatable({}, { __mode = "k" }), nil
  local slot = {}
  function slot.get()
    local t = loop.current()
    if t then return by_task[t] end
    return top
  end
  function slot.set(value)
    local t = loop.current()
    if t then by_task[t] = value else top = value end
  end
  function slot.pass_to(t) by_task[t] = slot.get() end
  inherited[#inherited + 1] = slot
  return slot
end

-- The context: a play puts its host there, so work a play's function fans
-- out still targets that host.
local context = task_local()
M.context, M.set_context = context.get, context.set

-- Environment variables every command a task starts gets: a pipeline
-- stage's ORCH_* reach the commands its Lua code runs, on the hosts its
-- plays reach too.
local environment = task_local()
M.env, M.set_env = environment.get, environment.set

--- A command's options (as orch.proc's) with the task's environment
-- under the command's own env; opts itself when the task has none.
function M.command_opts(opts)
  local task_env = M.env()
  if not task_env then return opts end
  local env, copy = {}, {}
  for k, v in pairs(task_env) do env[k] = v end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  for k, v in pairs(opts) do copy[k] = v end
  copy.env = env
  return copy
end

--- Start fn(...) in a new task that inherits this one's context and environment.
function M.spawn(fn, ...)
  local t = loop.spawn(fn, ...)
  for _, slot in ipairs(inherited) do slot.pass_to(t) end
  return t
end

--- Wait for every task in a list: an array of { ok, value | err }.
function M.wait_all(tasks)
  local results = {}
  for i, t in ipairs(tasks) do
    local ok, value = t:wait()
    results[i] = { ok = ok, value = value, err = not ok and value or nil }
  end
  return results
end

local semaphore = {}
semaphore.__index = semaphore

--- A counting semaphore: at most n holders at once, served in order.
function M.semaphore(n)
  if math.type(n) ~= "integer" or n < 1 then
    error("semaphore size must be a positive integer, got " .. tostring(n), 2)
  end
  return setmetatable({ free = n, size = n, queue = loop.cond(), waiting = 0 }, semaphore)
end

function semaphore:acquire()
  -- A waker hands its slot over directly, so no newcomer can jump the queue.
  if self.free > 0 and self.waiting == 0 then
    self.free = self.free - 1
    return
  end
  self.waiting = self.waiting + 1
  self.queue:wait()
end

function semaphore:release()
  if self.waiting > 0 then
    self.waiting = self.waiting - 1
    self.queue:signal()
  else
    self.free = self.free + 1
  end
end

--- Run fn while holding a slot; the slot is released even if fn raises.
function semaphore:with(fn, ...)
  self:acquire()
  local res = table.pack(pcall(fn, ...))
  self:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end


--- fn(item, i) for every item, at most `limit` at once, started in item
-- order. Returns the results in item order: { ok, value | err } each, the
-- error with its traceback; one item's failure does not stop the others.
-- `limit` workers take the items in turn (a task per item cost more than
-- the work of a plan's 1,000 local reads); each item starts with the
-- caller's context and environment, whatever the one before it set.
function M.map(items, limit, fn)
  if math.type(limit) ~= "integer" or limit < 1 then
    error("task.map: limit must be a positive integer, got " .. tostring(limit), 2)
  end
  local results, taken, n = {}, 0, #items
  local context, env = M.context(), M.env()
  local function worker()
    while taken < n do
      taken = taken + 1
      local i = taken
      M.set_context(context)
      M.set_env(env)
      local ok, value = xpcall(fn, errors.traceback, items[i], i)
      results[i] = { ok = ok, value = ok and value or nil, err = not ok and value or nil }
    end
  end
  local workers = {}
  for w = 1, math.min(limit, n) do workers[w] = M.spawn(worker) end
  for _, t in ipairs(workers) do t:wait() end
  return results
end

return M

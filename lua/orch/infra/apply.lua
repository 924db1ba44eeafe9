-- infra/apply.lua: carry a plan out: creates and updates in dependency
-- order, destroys in reverse, at most --parallelism at once; each result
-- committed to state the moment it is done, so a failure or a kill loses
-- nothing done; what depends on a failure is skipped, the rest goes on.
local loop = require("orch.core.loop")
local task = require("orch.task")
local secret = require("orch.secret")
local errors = require("orch.errors")
local resource = require("orch.resource")
local infra = require("orch.infra")
local infra_plan = require("orch.infra.plan")

local M = {}

-- Does v hold a secret's text (a command's stdout that echoed one)?
local function holds_secret_text(v)
  if type(v) == "string" then return secret.contains(v) end
  if type(v) ~= "table" then return false end
  for _, x in pairs(v) do if holds_secret_text(x) then return true end end
  return false
end

-- The attributes of after to keep sealed: the schema's sensitive ones,
-- those made with a secret (want holds them still wrapped), and those
-- the provider returned with a secret's text in them.
function M.sensitive_attrs(typedef, want, after)
  local list = {}
  for k, v in pairs(after) do
    if (typedef.schema[k] and typedef.schema[k].sensitive) or secret.find(want[k]) or holds_secret_text(v) then
      list[#list + 1] = k
    end
  end
  table.sort(list)
  return list
end

-- after as references see it: its sensitive attributes secret again.
local function as_seen(address, after, sensitive)
  local seen = {}
  for k, v in pairs(after) do seen[k] = v end
  for _, k in ipairs(sensitive) do seen[k] = secret.wrap_deep(after[k], address .. "." .. k) end
  return seen
end

-- Create or update a's object from want (checked) or raw (as written,
-- references resolved); the attributes to record.
local function converge(a, want, raw, ctx, run)
  local typedef = a.typedef
  if typedef.file then
    -- the resource engine writes it (validate, atomic write, history)
    resource.call(run, a.type, typedef, raw)
    return infra_plan.read(ctx, typedef, (secret.reveal_deep(want)))
  end
  local plain = secret.reveal_deep(want)
  local out = typedef.apply(ctx, plain, a.action == "update" and a.have or nil, a.changes or {})
  local after = {}
  for k, v in pairs(plain) do after[k] = v end
  for k, v in pairs(type(out) == "table" and out or {}) do after[k] = v end
  return after
end

local function delete(a, ctx)
  local typedef = a.typedef
  if typedef.file then
    local ok, err = ctx.host:remove(a.have.path)
    if not ok then error(err, 0) end
    return
  end
  if not typedef.delete then
    -- nothing to undo (a command): it stops being managed
    ctx.log(("%s: type %s has no delete; it is forgotten, not undone"):format(a.address, a.type))
    return
  end
  typedef.delete(ctx, a.have)
end

-- A reference's value: address.path from what this apply made (applied,
-- by address), else from state.
local function lookup_in(ws, applied)
  return function(address, path)
    local v = applied[address]
    if v == nil then
      local s = ws:get(address)
      v = s and s.attrs
    end
    for _, k in ipairs(path) do
      if type(v) ~= "table" then return nil end
      v = v[k]
    end
    return v
  end
end

--- Apply plan (infra_plan.make's) with config's declarations to ws.
-- opts { parallelism, context (fn(type, typedef) -> ctx), run, emit }.
-- Returns the number of failures and each action's outcome.
function M.run(plan, config, ws, opts)
  local sem = task.semaphore(opts.parallelism or 10)
  local done, tasks, failures = {}, {}, 0
  local emit = opts.emit

  local applied = {}
  local lookup = lookup_in(ws, applied)

  -- the deletes a delete must wait for: those of what depends on it
  local dependants = {}
  for _, a in ipairs(plan.actions) do
    if a.action == "delete" or a.action == "forget" or a.action == "replace" then
      for _, d in ipairs(a.deps or {}) do
        dependants[d] = dependants[d] or {}
        table.insert(dependants[d], a.address)
      end
    end
  end

  local function step(a)
    local r = config.resources[a.address]
    a.typedef = r and r.typedef or require("orch.resource.providers").find(a.type, config.playbook_dir)
    local waits = {}
    if a.action == "delete" or a.action == "forget" then
      for _, d in ipairs(dependants[a.address] or {}) do waits[#waits + 1] = d end
    else
      for _, d in ipairs(a.deps) do waits[#waits + 1] = d end
    end
    for _, d in ipairs(waits) do
      if tasks[d] and tasks[d] ~= tasks[a.address] then tasks[d]:wait() end
      local o = done[d]
      if o and (o.status == "failed" or o.status == "skipped") then
        done[a.address] = { status = "skipped", reason = ("%s did not apply"):format(d) }
        emit({ event = "infra", address = a.address, action = a.action, status = "skipped",
          reason = done[a.address].reason })
        return
      end
    end
    if a.action == "noop" then
      applied[a.address] = a.recorded and a.recorded.attrs
      done[a.address] = { status = "ok" }
      return
    end
    if a.action == "forget" then
      ws:remove(a.address)
      done[a.address] = { status = "ok" }
      emit({ event = "infra", address = a.address, action = "forget", status = "ok" })
      return
    end
    sem:acquire()
    local started = loop.now()
    emit({ event = "infra_start", address = a.address, action = a.action })
    local ctx = opts.context(a.type, a.typedef)
    local ok, err = xpcall(function()
      if a.action == "delete" then
        delete(a, ctx)
        ws:remove(a.address)
        return
      end
      local raw = infra.resolve(r.attrs, lookup)
      local want = infra.check_attrs(r, raw)
      local cbd = r.lifecycle.create_before_destroy
      if a.action == "replace" and not cbd and a.have then
        delete(a, ctx)
        ws:remove(a.address)
      end
      local after = converge(a, want, raw, ctx, opts.run)
      if a.action == "replace" and cbd and a.have then delete(a, ctx) end
      local sensitive = M.sensitive_attrs(a.typedef, want, after)
      ws:put({ address = a.address, type = a.type, attrs = after, deps = a.deps, sensitive = sensitive })
      applied[a.address] = as_seen(a.address, after, sensitive)
    end, errors.traceback)
    sem:release()
    local o = { status = ok and "ok" or "failed", elapsed = loop.now() - started,
      error = not ok and errors.message(err) or nil }
    done[a.address] = o
    if not ok then failures = failures + 1 end
    emit({ event = "infra", address = a.address, action = a.action, status = o.status, elapsed = o.elapsed,
      error = o.error })
  end

  for _, a in ipairs(plan.actions) do tasks[a.address] = task.spawn(step, a) end
  for _, a in ipairs(plan.actions) do tasks[a.address]:wait() end

  if failures == 0 then M.write_outputs(plan, ws, applied) end
  return failures, done
end

--- The plan's outputs, from state as it now is (and what was just
-- applied), into the workspace; an apply that changed nothing still
-- records them: a variable they use may have changed.
function M.write_outputs(plan, ws, applied)
  local lookup = lookup_in(ws, applied or {})
  local outputs = {}
  for _, o in ipairs(plan.destroy and {} or plan.outputs) do
    outputs[o.name] = { value = infra.resolve(o.value, lookup), sensitive = o.sensitive }
  end
  ws:set_outputs(outputs)
end

--- After a successful apply: the hosts the file declares (references
-- resolved from state), then its plays, in the order written.
function M.run_after(config, ws, run)
  local lookup = lookup_in(ws, {})
  local ok = true
  for _, item in ipairs(config.after) do
    if item.kind == "host" then
      local name, attrs = infra.resolve(item.name, lookup), infra.resolve(item.attrs, lookup)
      if type(name) ~= "string" then error(("%s: host's name is %s, not a string"):format(item.where, type(name)), 0) end
      local added, err = pcall(run.inventory.add_host, run.inventory, name, attrs, item.where)
      if not added then error(("%s: %s"):format(item.where, err), 0) end
    else
      ok = require("orch.playbook.play").run(run, item.name, item.spec) and ok
    end
  end
  run:run_handlers()
  return ok and not run.failed
end

return M

-- resource/init.lua: the resource engine. A call validates attributes, reads
-- the current state through its type, computes the difference, applies
-- only that (nothing in check mode), reports it, queues handlers and
-- records every version of a file it changes.
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local schema = require("orch.resource.schema")
local secret = require("orch.secret")
local history = require("orch.state.history")
local errors = require("orch.errors")
local ctx_mod = require("orch.resource.ctx")
local fileattrs = require("orch.fileattrs")

local M = {}

local deep_equal = require("orch.tables").deep_equal

local function shown(spec, v)
  if v == nil then return nil end
  if spec and spec.type == "mode" then return fileattrs.octal(v) end
  return v
end

--- The attributes want sets that have differs on: { attr, from, to }.
-- The positional key, `state` (the engine's: present or absent) and
-- attributes marked `diff = false` don't count.
function M.default_diff(typedef, want, have)
  local changes = {}
  local key = schema.positional(typedef.schema)
  for attr, spec in pairs(typedef.schema) do
    local v = want[attr]
    if attr ~= key and attr ~= "state" and spec.diff ~= false and v ~= nil
        and not deep_equal(v, have and have[attr]) then
      changes[#changes + 1] = { attr = attr, from = shown(spec, have and have[attr]), to = shown(spec, v) }
    end
  end
  table.sort(changes, function(a, b) return a.attr < b.attr end)
  return changes
end

-- A file's current state; its content, owner and group are read only if
-- someone asks (over SSH, names cost reading /etc/passwd and /etc/group).
local function file_have(h, path, st)
  local have = { path = path, mode = st.mode, uid = st.uid, gid = st.gid, sha256 = st.sha256,
    size = st.size, content = st.content }
  return setmetatable(have, { __index = function(t, k)
    if k == "owner" then return st.user end
    if k == "group" then return st.group end
    if k ~= "content" then return nil end
    local content, err = h:read(path)
    if not content then error(err, 0) end
    rawset(t, "content", content)
    return content
  end })
end

-- Larger contents are not diffed (Ansible's max_diff_size): a diff of
-- megabytes helps nobody and costs time and memory.
local DIFF_MAX = 104448

local function short(sha) return sha and sha:sub(1, 12) end

-- File types: the engine reads the file, asks the type for the content it
-- wants, and does the rest (compare, validate, back up, write atomically,
-- record the version). The file is want.path, or what the type's
-- path(want) says (systemd_unit: dir .. "/" .. name).
-- The file a path names: a symbolic link (a chain of them) is followed to
-- its target, so a file type edits what the link points at instead of
-- replacing the link with a file (as Ansible's modules follow it).
local function follow_links(h, path)
  for _ = 1, 40 do
    local st = h:stat(path, { link = true })
    if not st or st.type ~= "link" then return path end
    local target = assert(h:readlink(path))
    path = h:absolute(target:sub(1, 1) == "/" and target or (path:match("^(.*)/[^/]*$") .. "/" .. target))
  end
  error(("%s: too many levels of symbolic links"):format(path), 0)
end

local function converge_file(ctx, typedef, want, label)
  local h, run = ctx.host, ctx.run
  -- recorded absolute: a rollback from any folder finds and restores it.
  -- One look: what is not a link, lstat sees as stat does.
  local path = h:absolute(typedef.path and typedef.path(want) or want.path)
  local st, err = h:stat(path, { link = true, sha256 = true })
  if st and st.type == "link" then
    path = follow_links(h, path)
    st, err = h:stat(path, { sha256 = true })
  end
  if err then error(err, 0) end
  if st and st.type ~= "file" then error(("%s is a %s, not a file"):format(path, st.type), 0) end
  local have = st and file_have(h, path, st)
  local content = typedef.content(ctx, want, have)
  if content == nil and not st then return { changed = false } end

  local changes = {}
  local sha = content ~= nil and fs.sha256_data(content)
  local new_content = sha and (not st or sha ~= st.sha256)
  if new_content then
    changes[#changes + 1] = { attr = "content", from = st and short(st.sha256), to = short(sha) }
  end
  fileattrs.diff(st, want, changes)
  if #changes == 0 then return { changed = false, file = path } end

  local diff
  if new_content and run.diff then
    -- a single-line secret is scrubbed from the diff like from any event;
    -- a multi-line one can't be found once each line has its +/- prefix
    local size = math.max(#content, st and st.size or 0)
    if size > DIFF_MAX then
      diff = ("(diff skipped: %d bytes is over the %d a diff shows)\n"):format(size, DIFF_MAX)
    elseif secret.contains(content, true) or (have and secret.contains(have.content, true)) then
      diff = "(diff hidden: the content holds a secret)\n"
    else
      diff = require("orch.textdiff").unified(have and have.content, content,
        { from = st and path or "/dev/null", to = path })
    end
  end
  if new_content and want.validate then
    local ok, why = require("orch.resource.validate").check(want.validate, content, {
      name = path,
      run = function(cmd) return h:exec(cmd, { check = false }) end,
      write_temp = function(data) return h:temp_file(data) end,
    })
    if not ok then error(why .. "; the file was not changed", 0) end
  end
  if ctx.check then return { changed = true, changes = changes, diff = diff } end

  if want.backup and st and new_content then
    local stamp = path .. "." .. os.date("%Y%m%dT%H%M%S")
    local backup, n = stamp .. "~", 1
    while h:stat(backup, { link = true }) do  -- two changes within a second
      n = n + 1
      backup = ("%s.%d~"):format(stamp, n)
    end
    local ok, berr = h:write(backup, have.content, { mode = st.mode })
    if not ok then error(berr, 0) end
    ctx.log(("backed up %s to %s"):format(path, backup))
  end
  -- what is there is kept first: the original, or a hand edit since orch's
  -- last write (or a write a killed run never recorded)
  local drift = history.keep_current(run.store, h, path, run.id, label,
    st and { sha256 = st.sha256, mode = st.mode, uid = st.uid, gid = st.gid },
    function() return st and { content = have.content, mode = st.mode, uid = st.uid, gid = st.gid,
      owner = st.user, group = st.group } end)
  if drift then ctx.log(("%s was changed outside orch: kept as version %d"):format(path, drift)) end
  -- what an interrupted write of this path left (a kill -9 mid-write): gone
  -- now, and said (under the store's lock, no other orch is writing it)
  for _, tmp in ipairs(h:leftover_temps(path)) do
    local st = h:stat(tmp, { link = true })
    if st and st.type == "file" and h:remove(tmp) then
      ctx.log(("removed %s (%d bytes), left by an interrupted write"):format(tmp, st.size or 0))
    end
  end
  if new_content then
    -- a new file that holds a secret is for its owner only, unless told
    local mode = want.mode
    if mode == nil and not st and secret.contains(content) then mode = "0600" end
    local ok, werr = h:write(path, content, { mode = mode, owner = want.owner, group = want.group })
    if not ok then error(werr, 0) end
  else
    fileattrs.apply(h, path, want)
  end
  -- The change is made: from here on a failure is a warning, never a
  -- failed resource (a run that says "failed" about a change it made sends
  -- the operator after the wrong thing). What was written is recorded
  -- from the string that was written, not read back: no second copy.
  local recorded, rerr = pcall(function()
    history.record(run.store, { host = h.name, path = path, run_id = run.id, action = "apply",
      resource = label, snapshot = history.written(h, path, content or have.content, content and sha or st.sha256) })
  end)
  if not recorded then
    ctx.log(("warning: %s was changed, but its version could not be recorded: %s"):format(path,
      errors.message(rerr)))
  end
  if typedef.after_apply then typedef.after_apply(ctx, want, changes) end
  return { changed = true, changes = changes, diff = diff, file = path }
end

local function converge(ctx, typedef, want, label)
  if typedef.file then return converge_file(ctx, typedef, want, label) end
  local have = typedef.read(ctx, want)
  if want.state == "absent" and typedef.schema.state then
    if have == nil then return { changed = false } end
    if not typedef.delete then error(ctx.type .. " cannot delete (its type has no delete)", 0) end
    if not ctx.check then typedef.delete(ctx, have, want) end
    return { changed = true, changes = { { attr = "state", from = "present", to = "absent" } } }
  end
  local changes
  if typedef.diff then changes = typedef.diff(ctx, want, have) or {}
  else changes = M.default_diff(typedef, want, have) end
  if have == nil and #changes == 0 then
    changes = { { attr = "state", from = "absent", to = "present" } }
  end
  if #changes == 0 then return { changed = false } end
  local output
  if not ctx.check then output = typedef.apply(ctx, want, have, changes) end
  return { changed = true, changes = changes, output = output }
end

-- Secrets never leave as values: an attribute that was one shows as such.
local function hide_secrets(changes, wrapped, typedef)
  for _, c in ipairs(changes or {}) do
    local spec = typedef.schema[c.attr]
    if secret.find(wrapped[c.attr]) or (spec and spec.sensitive) then
      c.from = c.from ~= nil and "(sensitive)" or nil
      c.to = "(sensitive)"
    end
  end
  return changes
end

--- Converge one resource of type `tname` on the run's current host.
-- Returns { changed, skipped, changes, diff }; a failure is reported,
-- then raised as a run failure (it stops the playbook, or the task).
function M.call(run, tname, typedef, attrs, level)
  local want, meta, label = schema.check(tname, typedef.schema, attrs, (level or 1) + 1)
  local where = errors.where((level or 1) + 1)
  local key = schema.positional(typedef.schema)
  local h = run:host()
  local ev = { event = "resource", host = h.name, type = tname,
    name = key and tostring(want[key]) or tname }
  if meta.when == false then
    ev.status, ev.elapsed = "skipped", 0
    run:count(h.name, "skipped")
    run:emit(ev)
    return { changed = false, skipped = true }
  end
  if loop.interrupted() then error(errors.failure("interrupted"), 0) end

  local plain = secret.reveal_deep(want)
  local logs = {}  -- shown after the resource's own line
  local ctx = ctx_mod.new(run, tname, h, function(msg) logs[#logs + 1] = msg end)
  local started = loop.now()
  local ok, res = xpcall(converge, errors.traceback, ctx, typedef, plain, label)
  ev.elapsed = loop.now() - started
  if ok then
    ev.status = res.changed and "changed" or "ok"
    if res.changed then
      ev.changes = hide_secrets(res.changes, want, typedef)
      ev.diff = res.diff
    end
  else
    ev.status = "failed"
    ev.error = errors.is_failure(res) and res.message or tostring(res)
  end
  run:count(h.name, ev.status)
  run:emit(ev)
  for _, msg in ipairs(logs) do run:emit({ event = "log", host = h.name, message = msg }) end
  -- the reason travels with the failure: infrastructure's quiet run shows
  -- no events, only what the failure says
  if not ok then error(errors.failure(("%s failed: %s"):format(label, errors.message(ev.error)), true), 0) end
  if res.changed and meta.notify then run:notify(meta.notify, ("%s (%s)"):format(label, where)) end
  if res.file and run.config then run.config:touch(h, res.file, res.changed, label) end
  local result = { changed = res.changed, changes = ev.changes, diff = ev.diff }
  for k, v in pairs(type(res.output) == "table" and res.output or {}) do
    if result[k] == nil then result[k] = v end
  end
  return result
end

return M

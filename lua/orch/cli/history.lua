-- cli/history.lua: the commands over versioned files and configurations:
-- orch history, orch rollback, orch config list|history|rollback.
local paths = require("orch.paths")
local json = require("cjson")
local state = require("orch.state")
local history = require("orch.state.history")
local host_mod = require("orch.host")
local inventory = require("orch.inventory")

local fail = require("orch.cli.ui").fail

local M = {}

-- The store named by --state, or beside -f PLAYBOOK, or ./.orch/state.db;
-- it must exist already (these commands never create one).
local function open_store(opts)
  return state.open_existing(state.path(opts.state, opts.file))
end

-- "[HOST:]PATH" -> host, absolute path
local function target(spec)
  local host, path = spec:match("^([%w_.%-]+):(/.*)$")
  if not host then host, path = "local", spec end
  return host, paths.absolute(path)
end

-- The host to restore on: the local machine, or an inventory host (-i),
-- connected once per command.
local connections = {}
local function connect(name, opts)
  if name == "local" then return host_mod.localhost() end
  if connections[name] then return connections[name] end
  local inv, err = inventory.new():load_all(opts.inventory)
  if not inv then return nil, err end
  local entry = inv:get(name)
  if not entry then
    return nil, ("host '%s' is not in the inventory%s"):format(name, #(opts.inventory or {}) == 0
      and " (give -i FILE)" or "")
  end
  local h, cerr = host_mod.connect(entry)
  connections[name] = h
  return h, cerr
end

local function when(t) return os.date("%Y-%m-%d %H:%M:%S", math.floor(t)) end

local function row_line(v)
  local who = v.state == "absent" and "-" or ("%s:%s"):format(v.owner or v.uid, v.grp or v.gid)
  return ("  %-7d  %s  %5s  %-8s  %-4s  %-16s  %7s  %s"):format(v.version, when(v.time), v.run_id or "-",
    v.action, v.mode and ("%04o"):format(v.mode) or "-", who, v.size or "-",
    v.state == "absent" and "(absent)" or (v.sha256:sub(1, 12) .. (v.stored == 0 and " (secret: not stored)" or "")))
end

local HEADER = "  VERSION  TIME                   RUN  ACTION    MODE  OWNER:GROUP          SIZE  SHA256"

--- orch history [[HOST:]PATH]
function M.history(opts, rest)
  local store, err = open_store(opts)
  if not store then return fail(err) end
  if #rest == 0 then
    local files = store.db:rows("SELECT host, path, MAX(version) AS version, MAX(time) AS time"
      .. " FROM file_versions GROUP BY host, path ORDER BY host, path")
    store:close()
    if opts.json then io.stdout:write(json.encode(files), "\n"); return 0 end
    for _, f in ipairs(files) do
      io.stdout:write(("%s:%s  version %d  (%s)\n"):format(f.host, f.path, f.version, when(f.time)))
    end
    return 0
  end
  local host, path = target(rest[1])
  local versions = history.list(store, host, path)
  store:close()
  if #versions == 0 then return fail(("%s:%s has no recorded versions"):format(host, path)) end
  if opts.json then io.stdout:write(json.encode(versions), "\n"); return 0 end
  io.stdout:write(("%s:%s\n%s\n"):format(host, path, HEADER))
  for _, v in ipairs(versions) do io.stdout:write(row_line(v), "\n") end
  return 0
end

-- Run fn(store, run_id) under the store's lock as a recorded run.
local function as_run(opts, command, fn)
  local store, err = open_store(opts)
  if not store then return fail(err) end
  local lock, lerr = store:lock({ timeout = opts.lock_timeout, command = command,
    warn = function(msg) io.stderr:write("orch: warning: ", msg, "\n") end })
  if not lock then store:close(); return fail(lerr) end
  local run_id = store:begin_run({ playbook = "-", command = command })
  local ok, code = pcall(fn, store, run_id)
  store:finish_run(run_id, ok and code == 0 and "ok" or "failed")
  lock:unlock()
  store:close()
  if not ok then return fail(tostring(code)) end
  return code
end

-- Restore one file; prints what happened. Returns true, or false on failure.
local function restore(store, run_id, host, path, version, opts)
  local h, err = connect(host, opts)
  if not h then io.stderr:write("orch: ", err, "\n"); return false end
  local new, rerr = history.restore(store, h, path, version, run_id)
  if new == nil then io.stderr:write("orch: ", rerr, "\n"); return false end
  if rerr then   -- the drift version
    io.stdout:write(("%s:%s was changed outside orch: kept that as version %d first\n"):format(host, path, rerr))
  end
  if new then
    io.stdout:write(("restored %s:%s to version %d (recorded as version %d)\n"):format(host, path, version, new))
  else
    io.stdout:write(("%s:%s already is version %d\n"):format(host, path, version))
  end
  return true
end

--- orch rollback [HOST:]PATH [--to N] | --run RUN_ID
function M.rollback(opts, rest)
  if opts.run then
    if #rest > 0 then return fail("rollback: give a PATH or --run, not both", 2) end
    local run = math.tointeger(opts.run)
    return as_run(opts, "orch rollback --run " .. tostring(opts.run), function(store, run_id)
      local changes = history.run_changes(store, run)
      if #changes == 0 then error(("run %s changed no file"):format(tostring(opts.run)), 0) end
      local ok = true
      for _, c in ipairs(changes) do
        ok = restore(store, run_id, c.host, c.path, c.first - 1, opts) and ok
      end
      return ok and 0 or 1
    end)
  end
  if #rest ~= 1 then return fail("rollback: give one [HOST:]PATH (or --run RUN_ID)\ntry 'orch help rollback'", 2) end
  local host, path = target(rest[1])
  return as_run(opts, "orch rollback " .. rest[1], function(store, run_id)
    local latest = history.latest(store, host, path)
    if not latest then error(("%s:%s has no recorded versions"):format(host, path), 0) end
    local to = opts.to and math.tointeger(opts.to) or latest.version - 1
    if not to or to < 0 then error(("%s:%s has no version before %d"):format(host, path, latest.version), 0) end
    return restore(store, run_id, host, path, to, opts) and 0 or 1
  end)
end

--- orch config list | history NAME | rollback NAME [--to N]
function M.config(opts, rest)
  local sub, name = rest[1], rest[2]
  if sub == "list" then
    local store, err = open_store(opts)
    if not store then return fail(err) end
    local rows = history.config_list(store)
    store:close()
    if opts.json then io.stdout:write(json.encode(rows), "\n"); return 0 end
    io.stdout:write("  NAME                 VERSION  FILES  LAST CHANGE          ACTION\n")
    for _, c in ipairs(rows) do
      io.stdout:write(("  %-20s %7d  %5d  %s  %s\n"):format(c.name, c.version, c.files, when(c.time), c.action))
    end
    return 0
  elseif sub == "history" and name then
    local store, err = open_store(opts)
    if not store then return fail(err) end
    local versions = history.config_history(store, name)
    store:close()
    if #versions == 0 then return fail(("no configuration named '%s'"):format(name)) end
    if opts.json then io.stdout:write(json.encode(versions), "\n"); return 0 end
    io.stdout:write(("config %s\n"):format(name))
    for _, v in ipairs(versions) do
      io.stdout:write(("  version %d  %s  run %s  %s\n"):format(v.version, when(v.time), v.run_id or "-", v.action))
      for _, f in ipairs(v.files) do
        io.stdout:write(("      %s:%s @ %d\n"):format(f.host, f.path, f.version))
      end
    end
    return 0
  elseif sub == "rollback" and name then
    return as_run(opts, "orch config rollback " .. name, function(store, run_id)
      local versions = history.config_history(store, name)
      if #versions == 0 then error(("no configuration named '%s'"):format(name), 0) end
      local to = opts.to and math.tointeger(opts.to) or versions[#versions].version - 1
      local target_v
      for _, v in ipairs(versions) do if v.version == to then target_v = v end end
      if not target_v then error(("config %s has no version %s"):format(name, tostring(to)), 0) end
      -- Files of the target version go back to their version then; files
      -- added since go back to what was there before orch (version 0).
      local wanted, order = {}, {}
      for _, f in ipairs(target_v.files) do
        local key = f.host .. ":" .. f.path
        wanted[key] = f; order[#order + 1] = key
      end
      for _, f in ipairs(versions[#versions].files) do
        local key = f.host .. ":" .. f.path
        if not wanted[key] then wanted[key] = { host = f.host, path = f.path, version = 0 }; order[#order + 1] = key end
      end
      local ok = true
      for _, key in ipairs(order) do
        local f = wanted[key]
        ok = restore(store, run_id, f.host, f.path, f.version, opts) and ok
      end
      local files = {}
      for i, f in ipairs(target_v.files) do
        files[i] = { host = f.host, path = f.path, version = history.latest(store, f.host, f.path).version }
      end
      if not ok then return 1 end
      local v = history.config_record(store, name, files, run_id, "rollback")
      io.stdout:write(("config %s rolled back to version %d (recorded as version %d)\n"):format(name, to, v))
      return 0
    end)
  end
  return fail("config: expected 'list', 'history NAME' or 'rollback NAME [--to N]'\ntry 'orch help config'", 2)
end

return M

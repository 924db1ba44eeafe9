-- playbook/init.lua: a playbook file loaded into its environment and run:
-- under the state store's lock, every step and resource recorded and
-- reported, the notified handlers run, and a recap at the end.
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local state = require("orch.state")
local errors = require("orch.errors")
local run_mod = require("orch.playbook.run")
local env_mod = require("orch.playbook.env")
local secret = require("orch.secret")
local inventory_mod = require("orch.inventory")

local M = {}

local is_failure, traceback = errors.is_failure, errors.traceback

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- KEY=VALUE strings (from -e, or `flag`) as a table.
local function parse_vars(list, flag)
  local vars = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then return nil, ("%s expects KEY=VALUE, got '%s'"):format(flag or "-e", kv) end
    vars[k] = v
  end
  return vars
end

--- The folder of path, absolute: what a file's providers/, .orch/ and
-- stages' workspaces hang off, whatever folder commands later cd to.
function M.folder(path)
  local dir = dirname(path)
  return fs.realpath(dir) or dir
end

--- The playbook at path as a chunk, or nil and what is wrong with it.
function M.loadfile(path)
  local st = fs.stat(path)
  if not st then return nil, ("playbook not found: %s"):format(path) end
  if st.type ~= "file" then return nil, ("playbook is not a file: %s"):format(path) end
  return loadfile(path, "t")
end

--- Run chunk (the file at path) in a playbook environment for run: opts
-- vars, forks, and extra (more names, such as the pipeline DSL). Returns
-- xpcall's ok, err.
function M.evaluate(run, chunk, path, opts)
  local env = env_mod.new(run, path, opts.vars or {}, opts.forks or 50)
  for k, v in pairs(opts.extra or {}) do env[k] = v end
  debug.setupvalue(chunk, 1, env)
  return xpcall(chunk, traceback)
end

M.parse_vars = parse_vars

--- Run the playbook at path under the store's lock, reporting to opts.ui
-- (opts as `orch play` takes them). Returns how it ended: "ok", "failed"
-- (a step, resource or host failed), "error" (the playbook is wrong) or
-- "interrupted", and the message to show last, scrubbed of secrets. When
-- it can't start: nil, message, code ("EINVAL": the playbook or an input
-- is wrong; else the store's, such as "LOCKED").
function M.execute(path, opts)
  local ui = opts.ui
  local vars, verr = parse_vars(opts.extra_vars)
  if not vars then return nil, verr, "EINVAL" end
  local chunk, lerr = M.loadfile(path)
  if not chunk then return nil, lerr, "EINVAL" end

  local db_path = state.path(opts.state, path)
  local store, serr, scode = state.open(db_path)
  if not store then return nil, serr, scode end
  local command = "orch play " .. path .. (opts.check and " --check" or "")
  local lock, lock_err, lock_code = store:lock({ timeout = opts.lock_timeout, command = command,
    warn = function(msg) ui:warn(msg) end })
  if not lock then store:close(); return nil, lock_err, lock_code end

  local forks = math.tointeger(opts.forks) or 50
  local run = run_mod.new({ ui = ui, store = store, check = opts.check, diff = opts.diff,
    pending_key = require("orch.paths").absolute(path), force_handlers = opts.force_handlers,
    playbook_dir = dirname(path), inventory = inventory_mod.new(), limit = opts.limit, forks = forks })
  local loaded, ierr = run.inventory:load_all(opts.inventory)
  if not loaded then lock:unlock(); store:close(); return nil, ierr, "EINVAL" end
  run.id = store:begin_run({ playbook = path, command = command })
  local started = loop.now()
  run:emit({ event = "run_start", playbook = path, check = opts.check or nil })
  local pending = not opts.check and run:restore_pending() or 0
  if pending > 0 then
    run:emit({ event = "log", host = run:host().name, message = ("%d handler%s an earlier run notified but never ran"
      .. " will run now"):format(pending, pending == 1 and "" or "s") })
  end

  local ok, err = M.evaluate(run, chunk, path, { vars = vars, forks = forks })
  if ok then ok, err = xpcall(loop.run, traceback) end
  if ok or (opts.force_handlers and not loop.interrupted()) then
    -- --force-handlers: what was notified runs even after a failure
    local hok, herr = xpcall(run.run_handlers, traceback, run)
    if ok then ok, err = hok, herr end
  end

  local outcome, final = "ok", nil
  if loop.interrupted() then
    outcome, final = "interrupted", "interrupted by " .. loop.interrupted()
  elseif not ok then
    if is_failure(err) then
      outcome = "failed"
      if not err.reported then final = err.message end
    else
      outcome, final = "error", errors.message(err, opts.verbose)
    end
  elseif run.failed then
    outcome = "failed"
  end
  local status = outcome == "error" and "failed" or outcome
  run:count_round_trips()
  run:disconnect()
  run:flush()
  store:finish_run(run.id, status)
  run:emit({ event = "recap", status = status, hosts = run.hosts, order = run.order, check = opts.check or nil,
    elapsed = loop.now() - started, state = db_path })
  lock:unlock()
  store:close()
  return outcome, final and secret.scrub(final)
end

return M

-- cli/infra.lua: `orch plan | apply | destroy FILE`, `orch state ...`,
-- `orch output`, `orch import`: load a file's resource blocks, plan them
-- against the workspace's state, show the plan, ask, apply under the lock.
local json = require("cjson")
local fs = require("orch.core.fs")
local term = require("orch.core.term")
local state = require("orch.state")
local ui_mod = require("orch.cli.ui")
local fail = ui_mod.fail
local playbook = require("orch.playbook")
local run_mod = require("orch.playbook.run")
local inventory_mod = require("orch.inventory")
local ctx_mod = require("orch.resource.ctx")
local secret = require("orch.secret")
local errors = require("orch.errors")
local infra = require("orch.infra")
local infra_state = require("orch.infra.state")
local infra_plan = require("orch.infra.plan")
local infra_apply = require("orch.infra.apply")
local render = require("orch.infra.render")

local M = {}

-- -var k=v and -var-file FILE (YAML, JSON or .tfvars) as a table of values.
local function variables(opts)
  local vars = {}
  for _, file in ipairs(opts.var_file or {}) do
    local ok, data = pcall(require("orch.infra.var_file").load, file)
    if not ok then return nil, "-var-file " .. tostring(data) end
    for k, v in pairs(data) do vars[k] = v end
  end
  local given, err = playbook.parse_vars(opts.var, "-var")
  if not given then return nil, err end
  for k, v in pairs(given) do vars[k] = v end
  return vars
end

-- The provider ctx for a type: the local machine, a log, a data folder.
local function context_maker(run, emit, workspace)
  return function(tname)
    return ctx_mod.new(run, tname, run.localhost,
      function(msg) emit({ event = "log", host = "local", message = tostring(msg) }) end, workspace)
  end
end

-- Load the file's declarations into a new run: { run, config } or nil, msg.
local function load(path, opts, store, ui)
  local chunk, err = playbook.loadfile(path)
  if not chunk then return nil, err end
  local vars, verr = variables(opts)
  if not vars then return nil, verr end
  -- the resource engine's own lines would repeat ours: its run shows nothing
  local run = run_mod.new({ ui = ui_mod.quiet(ui), store = store, playbook_dir = playbook.folder(path),
    inventory = inventory_mod.new(), forks = 50 })
  local dsl, config = infra.new({ playbook_dir = run.playbook_dir, vars = vars })
  local ok, perr = playbook.evaluate(run, chunk, path, { extra = dsl })
  if not ok then return nil, errors.message(perr) end
  ok, perr = pcall(infra.check, config)
  if not ok then return nil, tostring(perr) end
  return { run = run, config = config }
end

-- The state store: --state, or beside FILE (or -f FILE), or ./.orch/.
local function store_of(opts, file)
  return state.open(state.path(opts.state, file or opts.file))
end

-- The store a reading command (state, output) looks at: one that exists,
-- or why not; such a command makes none.
local function existing_store(opts)
  return state.open_existing(state.path(opts.state, opts.file))
end

-- ---- showing a plan ------------------------------------------------------

local SYMBOL, DOING = render.SYMBOL, render.DOING

-- The plan as text, painted as the terminal allows.
local function show_plan(ui, plan)
  return render.text(plan, function(style, text) return ui:paint(style, text) end)
end

-- ---- the commands --------------------------------------------------------

local function emitter(ui)
  return function(ev)
    if ui.json then ui:emit(secret.scrub(ev)); return end
    if ev.event == "infra_start" then
      io.stdout:write(("  %s %s: %s...\n"):format(SYMBOL[ev.action] or "", ev.address, DOING[ev.action] or ev.action))
    elseif ev.event == "infra" then
      local line = ("  %s %s: %s"):format(ui:paint(ev.status == "ok" and "ok" or "failed", ev.status), ev.address,
        ev.status == "ok" and (ev.action .. (ev.elapsed and (" in %.2fs"):format(ev.elapsed) or ""))
        or (ev.reason or ev.error or ""))
      io.stdout:write(secret.scrub(line), "\n")
    elseif ev.event == "log" then
      io.stdout:write("    ", secret.scrub(ev.message), "\n")
    else
      ui:emit(ev)
    end
    io.stdout:flush()
  end
end

local function show_outputs(ui, ws)
  local outs = ws:outputs()
  if #outs == 0 or ui.json then return end
  io.stdout:write("\nOutputs:\n")
  for _, o in ipairs(outs) do
    io.stdout:write(("  %s = %s\n"):format(o.name, infra_plan.show(o.value, o.sensitive)))
  end
end

-- Ask for "yes" on the terminal; nil and why when there is none.
local function confirm(what)
  if not term.isatty("stdin") then
    return nil, ("%s needs confirmation and there is no terminal to ask on: pass --auto-approve"):format(what)
  end
  io.stdout:write(("\nDo you want to %s? Only 'yes' will be accepted: "):format(what))
  io.stdout:flush()
  return io.stdin:read("l") == "yes"
end

--- plan / apply / destroy FILE: returns the exit code.
local function converge(cmd, opts, file)
  local ui = ui_mod.new({ json = opts.json, verbose = opts.verbose })
  local saved, plan_file = nil, file
  if cmd == "apply" and file:match("%.plan$") then
    local text, err = fs.read(file)
    if not text then return fail(err) end
    local ok, data = pcall(json.decode, text)
    if not ok or type(data) ~= "table" or data.orch_plan ~= 1 then return fail(file .. ": not a plan saved by orch plan -out", 2) end
    saved, file = data, data.file
  end
  local store, serr = store_of(opts, file)
  if not store then return fail(serr) end
  local loaded, lerr = load(file, opts, store, ui)
  if not loaded then store:close(); return fail(lerr, 2) end
  local run, config = loaded.run, loaded.config
  local ws = infra_state.open(store, saved and saved.workspace or opts.workspace or "default")
  local writes = cmd ~= "plan"
  if writes then
    local id, kerr = ws:lock(("orch %s %s"):format(cmd, file), opts.lock_timeout or 30,
      function(msg) io.stderr:write("orch: warning: ", msg, "\n") end)
    if not id then store:close(); return fail(kerr) end
  end
  if writes then run.id = store:begin_run({ playbook = file, command = ("orch %s %s"):format(cmd, file) }) end
  local function finish(code)
    if run.id then store:finish_run(run.id, code == 0 and "ok" or "failed") end
    pcall(run.disconnect, run)
    ws:unlock(); run:flush(); store:close()
    return code
  end
  -- a bug past this point still lets the lock go
  local ok, code = xpcall(M.converge_locked, errors.traceback, cmd, opts, file, plan_file, saved,
    { ui = ui, run = run, config = config, ws = ws, finish = finish })
  if ok then return code end
  ws:unlock()
  store:close()
  error(code, 0)
end

-- The part of converge that runs under the workspace's lock.
function M.converge_locked(cmd, opts, file, plan_file, saved, env)
  local ui, run, config, ws, finish = env.ui, env.run, env.config, env.ws, env.finish
  if saved and (saved.lineage ~= ws.lineage or saved.serial ~= ws.serial) then
    return finish(fail(("%s is stale: it was made against state serial %d (lineage %s), and the state is now"
      .. " serial %d (lineage %s); make a new plan"):format(plan_file, saved.serial, saved.lineage, ws.serial, ws.lineage)))
  end
  if saved then
    local ok, err = pcall(infra.use_planned, config, saved.actions, ws.sealer)
    if not ok then return finish(fail(plan_file .. ": " .. tostring(err), 2)) end
  end
  local emit = emitter(ui)
  local context = context_maker(run, emit, ws.name)
  local ok, plan = pcall(infra_plan.make, config, ws, { parallelism = opts.parallelism, context = context,
    destroy = cmd == "destroy" or opts.destroy or (saved and saved.destroy) })
  if not ok then return finish(fail(errors.message(plan))) end
  plan.after = not plan.destroy and config.after or nil
  if saved then
    -- exactly what was planned: the same actions, or nothing
    local same = #plan.actions == #saved.actions
    for i, a in ipairs(plan.actions) do
      local s = saved.actions[i]
      if not s or s.address ~= a.address or s.action ~= a.action then same = false end
    end
    if not same then return finish(fail(plan_file .. ": the infrastructure changed since the plan was made; make a new plan")) end
  end
  if opts.out and cmd == "plan" then
    local data = render.json(plan, fs.realpath(file) or file, ws.sealer)
    data.destroy = opts.destroy or nil
    local wok, werr = fs.write(opts.out, json.encode(data), { mode = "0600" })
    if not wok then return finish(fail(werr)) end
  end
  if ui.json then io.stdout:write(json.encode(render.json(plan, file)), "\n")
  else io.stdout:write(show_plan(ui, plan), "\n") end
  local changes = infra_plan.has_changes(plan)
  if cmd == "plan" then
    if opts.out and not ui.json then io.stdout:write(("\nSaved the plan to %s: orch apply %s runs exactly it.\n"):format(opts.out, opts.out)) end
    return finish((opts.detailed_exitcode and changes) and 2 or 0)
  end
  if not changes then
    infra_apply.write_outputs(plan, ws)
    show_outputs(ui, ws)
    return finish(M.after_apply(cmd, ui, run, config, ws))
  end
  if not saved and not opts.auto_approve then
    local yes, why = confirm(cmd == "destroy" and "destroy all of it" or "perform these actions")
    if yes == nil then return finish(fail(why)) end
    if not yes then io.stdout:write("Cancelled: nothing was changed.\n"); return finish(1) end
  end
  io.stdout:write("\n")
  local failures = infra_apply.run(plan, config, ws, { parallelism = opts.parallelism, context = context,
    run = run, emit = emit })
  local c = plan.counts
  if failures > 0 then
    io.stdout:write(("\n%s: %d resource%s failed; what was done is in state, and the next apply converges the rest.\n")
      :format(ui:paint("failed", "Apply incomplete"), failures, failures == 1 and "" or "s"))
    return finish(1)
  end
  if cmd == "destroy" then
    io.stdout:write(("\n%s: %d destroyed.\n"):format(ui:paint("ok", "Destroy complete"), c.destroy))
  else
    io.stdout:write(("\n%s: %d added, %d changed, %d destroyed.\n"):format(ui:paint("ok", "Apply complete"),
      c.add, c.change, c.destroy))
  end
  show_outputs(ui, ws)
  return finish(M.after_apply(cmd, ui, run, config, ws))
end

-- The file's hosts and plays, once its resources are applied; the exit code.
function M.after_apply(cmd, ui, run, config, ws)
  if cmd ~= "apply" or #config.after == 0 then return 0 end
  io.stdout:write("\n")
  run.ui = ui   -- plays show their resources as orch play does
  local started = require("orch.core.loop").now()
  local ok, err = xpcall(infra_apply.run_after, errors.traceback, config, ws, run)
  if not ok then ui:error(errors.message(err)) end
  run:count_round_trips()
  run:emit({ event = "recap", status = (ok and err) and "ok" or "failed", hosts = run.hosts, order = run.order,
    elapsed = require("orch.core.loop").now() - started, state = run.store.path })
  return (ok and err) and 0 or 1
end

--- orch state list | show ADDR | rm ADDR | mv FROM TO | unlock ID
local function state_cmd(opts, rest)
  local sub = rest[1]
  local store, serr = existing_store(opts)
  if not store then return fail(serr) end
  local ws = infra_state.open(store, opts.workspace or "default")
  local function done(code) ws:unlock(); store:close(); return code end
  if sub == "list" then
    local _, order = ws:resources()
    for _, a in ipairs(order) do io.stdout:write(a, "\n") end
    return done(0)
  elseif sub == "show" and rest[2] then
    local r = ws:get(rest[2])
    if not r then return done(fail(("no %s in state (workspace %s)"):format(rest[2], ws.name))) end
    local hidden = {}
    for _, k in ipairs(r.sensitive) do hidden[k] = true end
    if opts.json then
      local attrs = {}
      for k, v in pairs(r.attrs) do attrs[k] = hidden[k] and "(sensitive)" or v end
      io.stdout:write(json.encode({ address = r.address, type = r.type, attrs = attrs, deps = r.deps }), "\n")
      return done(0)
    end
    io.stdout:write(("# %s (%s)\n"):format(r.address, r.type))
    local keys = {}
    for k in pairs(r.attrs) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do io.stdout:write(("  %-16s = %s\n"):format(k, infra_plan.show(r.attrs[k], hidden[k]))) end
    if #r.deps > 0 then io.stdout:write(("  depends on: %s\n"):format(table.concat(r.deps, ", "))) end
    return done(0)
  elseif (sub == "rm" and rest[2]) or (sub == "mv" and rest[3]) then
    local id, kerr = ws:lock("orch state " .. sub, opts.lock_timeout or 30,
      function(msg) io.stderr:write("orch: warning: ", msg, "\n") end)
    if not id then return done(fail(kerr)) end
    if sub == "rm" then
      if not ws:get(rest[2]) then return done(fail(("no %s in state (workspace %s)"):format(rest[2], ws.name))) end
      ws:remove(rest[2])
      io.stdout:write(("Removed %s from state (the object itself is left as it is).\n"):format(rest[2]))
    else
      local ok, err = ws:move(rest[2], rest[3])
      if not ok then return done(fail(err)) end
      io.stdout:write(("Moved %s to %s.\n"):format(rest[2], rest[3]))
    end
    return done(0)
  elseif sub == "unlock" and rest[2] then
    local ok, err = ws:force_unlock(rest[2])
    if not ok then return done(fail(err)) end
    io.stdout:write(("Unlocked workspace %s.\n"):format(ws.name))
    return done(0)
  end
  return done(fail("state: expected list, show ADDR, rm ADDR, mv FROM TO or unlock LOCK_ID\ntry 'orch help state'", 2))
end

--- orch output [NAME] [--json]
local function output_cmd(opts, rest)
  local store, serr = existing_store(opts)
  if not store then return fail(serr) end
  local ws = infra_state.open(store, opts.workspace or "default")
  local outs = ws:outputs()
  store:close()
  if rest[1] then
    for _, o in ipairs(outs) do
      if o.name == rest[1] then
        -- a sensitive value is printed only when asked for by name and --reveal
        if o.sensitive and not opts.reveal then
          io.stdout:write(opts.json and '"(sensitive)"' or "(sensitive)", "\n")
          io.stderr:write(("orch: output '%s' is sensitive: add --reveal to print its value\n"):format(o.name))
          return 0
        end
        local value = secret.reveal_deep(o.value)
        if opts.json then io.stdout:write(json.encode({ value }):sub(2, -2), "\n")
        else io.stdout:write(type(value) == "table" and json.encode(value) or tostring(value), "\n") end
        return 0
      end
    end
    return fail(("no output '%s' (apply first, or check the name)"):format(rest[1]))
  end
  if opts.json then
    local all = {}
    for _, o in ipairs(outs) do all[o.name] = { value = o.sensitive and "(sensitive)" or o.value, sensitive = o.sensitive } end
    io.stdout:write(json.encode(all), "\n")
    return 0
  end
  for _, o in ipairs(outs) do io.stdout:write(("%s = %s\n"):format(o.name, infra_plan.show(o.value, o.sensitive))) end
  return 0
end

--- orch import ADDR ID -f FILE: read an existing object into state.
local function import_cmd(opts, rest)
  local addr, id = rest[1], rest[2]
  if not (addr and id and opts.file) then return fail("import: expected ADDR ID -f FILE", 2) end
  local ui = ui_mod.new({ json = opts.json })
  local store, serr = store_of(opts, opts.file)
  if not store then return fail(serr) end
  local loaded, lerr = load(opts.file, opts, store, ui)
  if not loaded then store:close(); return fail(lerr, 2) end
  local r = loaded.config.resources[addr]
  if not r then store:close(); return fail(("%s is not declared in %s: declare it first"):format(addr, opts.file), 2) end
  local ws = infra_state.open(store, opts.workspace or "default")
  local lid, kerr = ws:lock("orch import " .. addr, opts.lock_timeout or 30, function() end)
  if not lid then store:close(); return fail(kerr) end
  local key = require("orch.resource.schema").positional(r.typedef.schema) or "id"
  local ctx = context_maker(loaded.run, emitter(ui), ws.name)(r.type)
  local ok, have = pcall(infra_plan.read, ctx, r.typedef, { [key] = id })
  if not ok or not have then
    ws:unlock(); store:close()
    return fail(("%s: no %s with %s %q to import%s"):format(addr, r.type, key, id, ok and "" or (": " .. tostring(have))))
  end
  ws:put({ address = addr, type = r.type, attrs = have, deps = {},
    sensitive = require("orch.infra.apply").sensitive_attrs(r.typedef, {}, have) })
  ws:unlock()
  store:close()
  io.stdout:write(("Imported %s (%s %q) into state.\n"):format(addr, key, id))
  return 0
end

function M.main(cmd, opts, rest)
  if cmd == "state" then return state_cmd(opts, rest) end
  if cmd == "output" then return output_cmd(opts, rest) end
  if cmd == "import" then return import_cmd(opts, rest) end
  if #rest ~= 1 then return fail(("%s: expected FILE\ntry 'orch help %s'"):format(cmd, cmd), 2) end
  return converge(cmd, opts, rest[1])
end

return M

-- cli/repl.lua: `orch repl`: Lua with the engine and the inventory in scope, read
-- a line at a time (line editing and history on a terminal), results
-- pretty-printed, and on(SELECTOR) to fan commands out to hosts. Ctrl-C
-- stops what runs, on every host, and comes back to the prompt.
local loop = require("orch.core.loop")
local term = require("orch.core.term")
local info = require("orch.core.info")
local task = require("orch.task")
local proc = require("orch.proc")
local inventory_mod = require("orch.inventory")
local selector = require("orch.inventory.selector")
local host_mod = require("orch.host")
local facts = require("orch.host.facts")
local fanout = require("orch.host.fanout")
local ui_mod = require("orch.cli.ui")
local errors = require("orch.errors")

local M = {}

local pretty = require("orch.cli.pretty")
M.pretty = pretty.format

local PROMPT, MORE = "orch> ", ">> "

-- Results of a fan-out: host name -> value. At the prompt they show as the
-- summary line (each host's block was printed as it finished); pp(r) or
-- r.HOST shows the data.
local RESULTS = "orch.results"

local function results(counts)
  return setmetatable({}, { __name = RESULTS, counts = counts, __tostring = function()
    return ("%d ok, %d failed, %d unreachable"):format(counts.ok, counts.failed, counts.unreachable)
  end })
end

local function is_results(v)
  local mt = type(v) == "table" and getmetatable(v)
  return mt and mt.__name == RESULTS or false
end

-- An SSH host's process survives the session: sshd only closes its pipes
-- (no pty, no SIGHUP). So the command runs beside a watcher holding the
-- channel's stdin: when the channel or the session goes (Ctrl-C closes it)
-- the watcher reads EOF, and if the shell is still running, signals its
-- process group (TERM, then KILL after 2 s). The command itself reads
-- /dev/null. Not for a sudo password, which comes on stdin.
local function guard(cmd)
  if type(cmd) == "table" then
    local q = {}
    for i, a in ipairs(cmd) do q[i] = proc.quote(a) end
    cmd = table.concat(q, " ")
  end
  return "{ exec 3<&0 </dev/null; { trap '' TERM; cat <&3 >/dev/null 2>&1; kill -0 $$ 2>/dev/null"
    .. " && { kill -TERM 0; sleep 2; kill -KILL 0; }; } >/dev/null 2>&1 & exec 3<&-\n"
    .. cmd .. "\n}"
end

local function guarded(h, opts)
  return h.connection ~= "local" and not h.become_password and not (opts and opts.stdin)
end

--- The REPL's state: inventory, cached connections, work in flight.
local function new_session(opts)
  local s = {
    inventory = inventory_mod.new(),
    forks = math.tointeger(opts.forks) or 50,
    conns = {},        -- host name -> connected host object, reused
    inflight = {},     -- host object -> true while a command runs on it
    generation = 0,    -- bumped by Ctrl-C: tasks of an older one stop quietly
    ui = ui_mod.new({}),
  }
  s.localhost = { name = "local", connection = "local", roles = {}, vars = {} }
  return s
end

-- The host object for entry, connected once per REPL session; nil, err.
local function connect(s, entry)
  local h = s.conns[entry.name]
  if h then return h end
  local gen = s.generation
  local err
  h, err = host_mod.connect(entry)
  if not h then return nil, err end
  if gen ~= s.generation then h:close(); return nil, "interrupted" end
  if s.conns[entry.name] then h:close(); return s.conns[entry.name] end
  s.conns[entry.name] = h
  return h
end

-- A connection that broke is dropped, so the next command reconnects.
local BROKEN = { EDISCONNECTED = true, ESOCKET = true, ECHANNEL = true, ETIMEDOUT = true,
  EHOSTDOWN = true, EBROKEN = true }

-- h:exec with check = false, a lost host as nil, err, code: the host is
-- unreachable, not a command that failed.
local function exec_unless_lost(h, cmd, opts)
  local res, err, code = h:exec(cmd, opts)
  if res and res.lost then return nil, res.error, res.code_name end
  return res, err, code
end

local function forget(s, h)
  if s.conns[h.name] == h then s.conns[h.name] = nil end
  h:close()
end

--- Ctrl-C: whatever ran is abandoned. Sessions with a command in flight
-- are closed (their channels go with them, and the guard stops the
-- remote commands); local commands were killed with their process groups.
local function abandon_work(s)
  s.generation = s.generation + 1
  for h in pairs(s.inflight) do
    if h.connection ~= "local" then forget(s, h) end
  end
  s.inflight = {}
end

local indent = ui_mod.indent

--- fn(h, entry) -> status, value [, kept] on every host of the set, at
-- most s.forks at once (orch.host.fanout.run), over the session's
-- connections; the results show as a summary line at the prompt. A stale
-- task (from before a Ctrl-C) stops at its next step without a word.
local function fan_out(s, set, fn, report)
  local gen = s.generation
  local counts, kept = fanout.run(set.entries, {
    forks = s.forks,
    connect = function(entry) return connect(s, entry) end,
    is_stale = function() return gen ~= s.generation end,
    report = report,
  }, function(h, entry)
    s.inflight[h] = true
    local status, value, keep = fn(h, entry)
    s.inflight[h] = nil
    return status, value, keep
  end)
  local out = results(counts)
  for name, v in pairs(kept) do out[name] = v end
  return out
end

-- h:exec, guarded on SSH hosts; a broken connection is forgotten.
local function exec_on(s, h, cmd, opts)
  local xopts = { check = false, timeout = opts.timeout, env = opts.env, cwd = opts.cwd, stdin = opts.stdin,
    keep_stdin = guarded(h, opts) }   -- the guard's watcher waits on it
  local res, err, code = exec_unless_lost(h, guarded(h, opts) and guard(cmd) or cmd, xopts)
  if not res and BROKEN[code] then forget(s, h) end
  return res, err, code
end

-- The host a user's function gets in :each: the same object, except that
-- its exec is guarded like :exec's, so Ctrl-C stops those commands too. A
-- failure raises as h:exec's does, naming the command as it was given.
local function guarded_host(s, h)
  if h.connection == "local" then return h end
  return setmetatable({
    exec = function(_, cmd, opts)
      opts = opts or {}
      if not guarded(h, opts) then return h:exec(cmd, opts) end
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.check, o.keep_stdin = false, true
      local res, err, code = h:exec(guard(cmd), o)
      if res and res.lost and BROKEN[res.code_name] then forget(s, h) end
      if opts.check == false then return res, err, code end
      if res and res.lost then error(res.error, 2) end
      if not res then error(err, 2) end
      if not res.ok then
        local tail = res.stderr:gsub("%s+$", ""):sub(-400)
        error(("%s: command failed (%s): %s%s"):format(h.name, proc.failure(res),
          type(cmd) == "string" and cmd or proc.display({ argv = cmd }), tail ~= "" and ("\n" .. tail) or ""), 2)
      end
      return res
    end,
  }, { __index = h, __tostring = function() return tostring(h) end })
end

---------------------------------------------------------------------------
-- Host sets: on(SELECTOR)

local HostSet = {}
HostSet.__index = HostSet

function HostSet:__len() return #self.entries end

function HostSet:__tostring()
  return ("hosts (%d): %s"):format(#self.entries, table.concat(self:hosts(), ", "))
end

--- The names of the hosts in the set, in inventory order.
function HostSet:hosts()
  local names = {}
  for i, e in ipairs(self.entries) do names[i] = e.name end
  return names
end

--- Run cmd (a shell line, or an argv list) on every host at once; print a
-- block per host as it finishes; host -> { code | signal, stdout, stderr,
-- ok, elapsed }. opts: timeout, env, cwd, quiet.
function HostSet:exec(cmd, opts)
  if type(cmd) ~= "string" and type(cmd) ~= "table" then
    error("exec needs a command (a string or an argv list), got " .. type(cmd), 2)
  end
  opts = opts or {}
  local s = self.session
  return fan_out(s, self, function(h)
    local started = loop.now()
    local res, err = exec_on(s, h, cmd, opts)
    if not res then return "unreachable", err end
    res.elapsed = loop.now() - started
    return res.ok and "ok" or "failed", res
  end, not opts.quiet and function(entry, status, value, elapsed)
    s.ui:host_result(entry.name, status, value, elapsed)
  end or nil)
end

local function memory(mb)
  if not mb then return "-" end
  if mb >= 1024 then return ("%.1f GiB"):format(mb / 1024) end
  return ("%d MiB"):format(mb)
end

--- Facts of every host (os, hostname, kernel, arch, cpus, memory_mb,
-- uptime), gathered at once and printed as one table.
function HostSet:facts(opts)
  opts = opts or {}
  local s = self.session
  local r = fan_out(s, self, function(h)
    local res, err = exec_on(s, h, facts.SCRIPT, {})
    if not res then return "unreachable", err end
    if not res.ok then return "failed", { error = (res.stderr:gsub("%s+$", "")) } end
    return "ok", facts.parse(res.stdout)
  end)
  if not opts.quiet then
    local rows = { { "HOST", "OS", "KERNEL", "CPUS", "MEMORY" } }
    for _, e in ipairs(self.entries) do
      local f = r[e.name]
      if f == nil then
        rows[#rows + 1] = { e.name, "(interrupted)" }
      elseif f.error then
        rows[#rows + 1] = { e.name, (f.unreachable and "UNREACHABLE: " or "FAILED: ") .. tostring(f.error):gsub("\n.*", "") }
      else
        rows[#rows + 1] = { e.name, f.os.pretty_name or f.os.name or "?", f.kernel or "-",
          tostring(f.cpus or "-"), memory(f.memory_mb) }
      end
    end
    local widths = {}
    for _, row in ipairs(rows) do
      for i = 1, #row - 1 do widths[i] = math.max(widths[i] or 0, #row[i]) end
    end
    for _, row in ipairs(rows) do
      local cells = {}
      for i, c in ipairs(row) do cells[i] = i < #row and ("%-" .. widths[i] .. "s"):format(c) or c end
      io.stdout:write((table.concat(cells, "  "):gsub("%s+$", "")), "\n")
    end
  end
  return r
end

--- fn(h) on every host at once (h: the connected host, with exec, read,
-- stat, facts...); host -> what fn returned. An error is reported for its
-- host and does not stop the others.
function HostSet:each(fn, opts)
  if type(fn) ~= "function" then error("each needs a function(h), got " .. type(fn), 2) end
  opts = opts or {}
  local s = self.session
  return fan_out(s, self, function(h)
    local ok, value = xpcall(fn, errors.traceback, guarded_host(s, h))
    if not ok then return "failed", value, false end   -- printed, not kept
    return "ok", value
  end, not opts.quiet and function(entry, status, value, elapsed)
    if status == "ok" then
      io.stdout:write(s.ui:host_head(entry.name, status, "ok", elapsed))
      if value ~= nil then io.stdout:write(indent(pretty.format(value))) end
    else
      io.stdout:write(s.ui:host_head(entry.name, status, status == "unreachable" and "UNREACHABLE" or "error", elapsed),
        indent(errors.message(value)))
    end
    io.stdout:flush()
  end or nil)
end

---------------------------------------------------------------------------
-- The environment: what a line of the REPL sees

local HELP = [[
Helpers (everything else is Lua 5.4 with orch's libraries: fs, proc, task,
yaml, json, secret):
  on(SEL)                the hosts SEL selects: "all", "web01,db01", "web*",
                         "role:web", "role:web&role:eu", "!db01"; "local"
                         is this machine when the inventory has no such host
  on(SEL):exec(CMD [, { timeout =, env =, cwd =, quiet = }])
                         run CMD on every host at once (at most --forks);
                         prints a block per host; returns host -> result
                         ({ code, stdout, stderr, ok, elapsed })
  on(SEL):facts()        OS, kernel, CPUs and memory of every host
  on(SEL):each(fn)       fn(h) on every host at once; returns host -> value
                         (h:exec, h:read, h:stat, h:facts, ...)
  on(SEL):hosts()        the names; #on(SEL) counts them
  hosts([SEL])           host names; inventory: the loaded inventory
  pp(value)              pretty-print a value in full
  help()                 this text;  exit([code]) (or os.exit) leaves
Lines:
  an expression prints its value; incomplete input continues at ">> ";
  a local lasts one line (as in lua): keep values in globals (x = 1).
  Ctrl-C stops a command on every host (or drops the line); Ctrl-D exits.
  .help  .trace (traceback of the last error)  .exit
]]

local Exit = {}   -- raised by exit()/os.exit() in the REPL: leave cleanly

local function environment(s)
  local env = setmetatable({}, { __index = _G })
  local inv = s.inventory

  local function on(sel)
    if type(sel) ~= "string" then error("on needs a selector (a string), got " .. type(sel), 2) end
    local ok, entries = pcall(selector.select, inv, sel)
    if not ok then
      if (sel == "local" or sel == "localhost") and not inv:get(sel) then
        entries = { s.localhost }
      else
        error(entries, 2)
      end
    end
    if #entries == 0 then error(("no host matches '%s'"):format(sel), 2) end
    return setmetatable({ entries = entries, selector = sel, session = s }, HostSet)
  end

  local function hosts(sel)
    local list = sel and on(sel).entries or inv:hosts()
    local names = {}
    for i, e in ipairs(list) do names[i] = e.name end
    return names
  end

  local function pp(...)
    local n = select("#", ...)
    for i = 1, n do io.stdout:write(pretty.format((select(i, ...))), "\n") end
  end

  local function exit(code)
    error(setmetatable({ code = code == nil and 0 or code == true and 0 or code == false and 1 or code }, Exit), 0)
  end

  env.on, env.hosts, env.inventory, env.pp = on, hosts, inv, pp
  env.help = function() io.stdout:write(HELP) end
  env.fs, env.proc, env.task = require("orch.core.fs"), proc, task
  env.yaml, env.json = require("orch.core.yaml"), require("orch.json")
  env.secret = require("orch.secret").new
  env.exit = exit
  env.os = setmetatable({ exit = exit }, { __index = os })
  return env
end

---------------------------------------------------------------------------
-- Reading and evaluating

local function history_path()
  local p = os.getenv("ORCH_HISTORY")
  if p and p ~= "" then return p end
  return (os.getenv("HOME") or ".") .. "/.orch_history"
end

local function is_incomplete(err)
  return err and err:sub(-5) == "<eof>"
end

-- A chunk for the lines so far: as an expression if it is one (its value
-- is printed), else as statements; "more" when it is not finished yet.
local function compile(code, env)
  local chunk = load("return " .. code, "=repl", "t", env)
  if chunk then return chunk end
  local err
  chunk, err = load(code, "=repl", "t", env)
  if chunk then return chunk end
  local _, rerr = load("return " .. code, "=repl", "t", env)
  if is_incomplete(err) or is_incomplete(rerr) then return nil, "more" end
  return nil, err
end

local function print_values(res)
  if res.n == 0 then return end
  local parts = {}
  for i = 1, res.n do
    local v = res[i]
    parts[i] = is_results(v) and tostring(v) or pretty.format(v)
  end
  io.stdout:write(table.concat(parts, "\t"), "\n")
end

local function banner(s, files)
  local hosts, roles = #s.inventory:hosts(), s.inventory:roles()
  local role_text = #roles == 0 and "no roles"
    or ("%d role%s (%s)"):format(#roles, #roles == 1 and "" or "s",
      #roles <= 8 and table.concat(roles, ", ") or (table.concat(roles, ", ", 1, 8) .. ", ..."))
  io.stdout:write(("orch %s repl (%s): %d host%s, %s%s\n"):format(info.version, _VERSION, hosts,
    hosts == 1 and "" or "s", role_text, #files > 0 and (" from " .. table.concat(files, ", ")) or ""))
  io.stdout:write("help() lists the helpers; on(\"all\"):exec(\"uptime\") runs a command; Ctrl-D exits\n")
end

--- orch repl [-i INV]...: returns the exit code.
function M.run(opts)
  local s = new_session(opts)
  local loaded, err = s.inventory:load_all(opts.inventory)
  if not loaded then
    io.stderr:write("orch repl: ", err, "\n")
    return 2
  end
  local interactive = term.isatty("stdin")
  local env = environment(s)
  local hist = history_path()
  if interactive then
    term.read_history(hist)
    banner(s, opts.inventory or {})
  end
  local last_trace, failures, exit_code = nil, 0, nil

  local function report(msg)
    io.stderr:write(s.ui:paint("failed", msg), "\n")
    io.stderr:flush()
  end

  -- The terminal echoed ^C where the cursor was: the message goes below.
  local function on_interrupt()
    loop.reset_interrupt()
    abandon_work(s)
    if term.isatty("stdout") then io.stdout:write("\n"); io.stdout:flush() end
    report("interrupted")
  end

  -- Was there a Ctrl-C (or SIGTERM) since the last look? It may have been
  -- caught on its way (a task's xpcall), so the flag is what tells.
  local function was_interrupted()
    local why = loop.interrupted()
    if why == "SIGTERM" then exit_code = 143 elseif why then on_interrupt() end
    return why ~= nil
  end

  -- Error handler of an evaluation: keeps the traceback for .trace.
  local function handler(err)
    if getmetatable(err) == Exit then return err end
    last_trace = type(err) == "string" and errors.traceback(err) or nil
    return err
  end

  local dots = {
    help = function() io.stdout:write(HELP) end,
    trace = function() io.stdout:write((last_trace or "no error yet"), "\n") end,
    exit = function() exit_code = 0 end,
    quit = function() exit_code = 0 end,
  }

  local function read(prompt)
    local line, why = term.readline(prompt)
    if line == nil and why == "SIGTERM" then exit_code = 143 end
    if line and interactive and line:match("%S") then term.add_history(line) end
    return line
  end

  -- One prompt: read a chunk, run it, show what it returned.
  local function once()
    if was_interrupted() then return end
    local line = read(PROMPT)
    if line == nil then
      if interactive and exit_code == nil then io.stdout:write("\n") end
      exit_code = exit_code or (failures > 0 and not interactive and 1 or 0)
      return
    end
    if line == false then return end
    local dot = line:match("^%s*%.(%a+)%s*$")
    if dot then
      if dots[dot] then dots[dot]() else report(("unknown command .%s (try .help)"):format(dot)) end
      return
    end
    if not line:match("%S") then return end
    local code, chunk, err = line, nil, nil
    while true do
      chunk, err = compile(code, env)
      if chunk or err ~= "more" then break end
      local more = read(MORE)
      if more == false then return end
      if more == nil then   -- end of input inside a chunk: say what is missing
        chunk, err = load(code, "=repl", "t", env)
        break
      end
      code = code .. "\n" .. more
    end
    if not chunk then
      failures = failures + 1
      report(err)
      return
    end
    local res = table.pack(xpcall(chunk, handler))
    if getmetatable(res[2]) == Exit and not res[1] then
      exit_code = math.tointeger(res[2].code) or 0
      return
    end
    if was_interrupted() then return end   -- what it returned is partial
    if res[1] then
      print_values(table.pack(table.unpack(res, 2, res.n)))   -- nils kept: # can't be trusted
      return
    end
    local e = res[2]
    failures = failures + 1
    report(errors.message(type(e) == "string" and e or
      (getmetatable(e) and getmetatable(e).__tostring and tostring(e))
      or ("(error object is a %s value)"):format(type(e))))
  end

  while exit_code == nil do
    -- Ctrl-C can land anywhere Lua runs, this loop's own code included.
    local ok, err = xpcall(once, debug.traceback)
    if not ok and not was_interrupted() then
      if tostring(err):match("interrupted") then on_interrupt()   -- a hook left over
      else report("orch repl: internal error: " .. tostring(err)) end
    end
    io.stdout:flush()
  end

  if interactive then
    local ok, err = term.write_history(hist)
    if not ok then report("orch repl: cannot save the history: " .. tostring(err)) end
  end
  for _, h in pairs(s.conns) do h:close() end
  return exit_code
end

return M

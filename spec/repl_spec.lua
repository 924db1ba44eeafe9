local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local proc = require("orch.proc")

-- A terminal of its own: `orch repl` in a tmux session on a private tmux
-- server (socket in dir), driven with send-keys and read with capture-pane.
local Term = {}
Term.__index = Term

local function tmux_path()
  for _, p in ipairs({ "/usr/bin/tmux", "/usr/local/bin/tmux" }) do
    if fs.stat(p) then return p end
  end
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- orch repl ARGS in a 200x50 terminal; env: variables for orch (false unsets).
-- A shell around it writes its exit status to a file: tmux 3.3 now and then
-- misses the exit of a pane's own process (left a zombie, the pane "alive").
-- The shell traps SIGINT (which orch then gets with the default action) so
-- that Ctrl-C, sent to both, leaves the shell waiting.
local function open_term(dir, args, env)
  local self = setmetatable({ dir = dir, sock = dir .. "/tmux.sock", conf = dir .. "/tmux.conf",
    status = dir .. "/repl.status" }, Term)
  -- a dead pane stays, so the screen can still be read
  support.write(self.conf, "set -g remain-on-exit on\nset -g history-limit 10000\n")
  local words, sets = { "trap : INT;", "env" }, {}
  for k, v in pairs(env or {}) do   -- env's options (-u) come before any NAME=VALUE
    if v == false then words[#words + 1] = "-u " .. k
    else sets[#sets + 1] = shell_quote(k .. "=" .. v) end
  end
  table.move(sets, 1, #sets, #words + 1, words)
  words[#words + 1] = "NO_COLOR=1"
  words[#words + 1] = shell_quote(support.bin)
  words[#words + 1] = "repl"
  for _, a in ipairs(args or {}) do words[#words + 1] = shell_quote(a) end
  words[#words + 1] = "; echo $? >" .. shell_quote(self.status .. ".tmp")
  words[#words + 1] = "&& mv " .. shell_quote(self.status .. ".tmp") .. " " .. shell_quote(self.status)
  self:tmux("new-session", "-d", "-s", "repl", "-x", "200", "-y", "50", table.concat(words, " "))
  return self
end

function Term:tmux(...)
  local res = assert(proc.run({ argv = { tmux_path(), "-S", self.sock, "-f", self.conf, ... } }))
  assert(res.ok, "tmux " .. table.concat({ ... }, " ") .. ": " .. res.stderr)
  return res.stdout
end

-- pid's children, from /proc/*/stat
local function children(pid)
  local out = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    local f = name:match("^%d+$") and io.open("/proc/" .. name .. "/stat", "rb")
    if f then
      local ppid = tonumber((f:read("a") or ""):match("^%d+ %b() %S+ (%d+)"))
      f:close()
      if ppid == pid then out[#out + 1] = tonumber(name) end
    end
  end
  return out
end

--- orch's pid: the child of the pane's shell.
function Term:orch_pid()
  local shell = tonumber(self:tmux("display", "-p", "-t", "repl", "#{pane_pid}"):match("%d+"))
  return children(shell)[1]
end

--- Is orch computing rather than waiting (running now and 0.1 s later)?
function Term:is_busy()
  local function running()
    local f = io.open("/proc/" .. self:orch_pid() .. "/stat", "rb")
    local st = f and f:read("a"):match("^%d+ %b() (%S)")
    if f then f:close() end
    return st == "R"
  end
  if not running() then return false end
  loop.sleep(0.1)
  return running()
end

--- Stop the tmux server and wait until it, the shell and orch are gone
-- (they write in dir as they go: the socket, the status, the history).
function Term:close()
  local pids = {}
  pcall(function()   -- whatever happens here, the server is killed below
    local res = proc.run({ argv = { tmux_path(), "-S", self.sock, "display", "-p", "-t", "repl", "#{pid} #{pane_pid}" } })
    if not (res and res.ok) then return end
    for pid in res.stdout:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
    for _, pid in ipairs(pids[2] and children(pids[2]) or {}) do pids[#pids + 1] = pid end
  end)
  proc.run({ argv = { tmux_path(), "-S", self.sock, "kill-server" } })
  support.eventually(function()
    for _, pid in ipairs(pids) do if support.alive(pid) then return false end end
    return true
  end, "the terminal closed")
end

--- What the terminal shows, scrollback included, wrapped lines joined.
function Term:screen()
  return self:tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "repl")
end

--- Type a line and press Enter.
function Term:type(line)
  self:tmux("send-keys", "-t", "repl", "-l", line)
  self:tmux("send-keys", "-t", "repl", "Enter")
end

function Term:keys(...)
  self:tmux("send-keys", "-t", "repl", ...)
end

local function count(text, what)
  local n, at = 0, 1
  while true do
    local i = text:find(what, at, true)
    if not i then return n end
    n, at = n + 1, i + #what
  end
end

--- support.eventually, failing with what the terminal shows then.
function Term:eventually(check, what)
  local ok, v = pcall(support.eventually, check, what)
  if not ok then error(v .. "; the screen:\n" .. self:screen(), 2) end
  return v
end

--- Wait until `what` shows at least n times (default once); the screen.
function Term:wait(what, n)
  n = n or 1
  return self:eventually(function()
    local screen = self:screen()
    return count(screen, what) >= n and screen
  end, ("showing %q %d times"):format(what, n))
end

function Term:prompts()
  return count(self:screen(), "orch> ")
end

--- Type a line, wait for the next prompt; the screen from that line on.
function Term:eval(line)
  local before = self:prompts()
  self:type(line)
  local screen = self:wait("orch> ", before + 1)
  local from = 1
  for _ = 1, before do from = screen:find("orch> ", from, true) + 1 end
  return screen:sub(from - 1)
end

--- Wait for orch to exit; its exit status.
function Term:wait_exit()
  return self:eventually(function() return self:exit_status() end, "exited")
end

--- The exit status once orch has exited (nil while it runs).
function Term:exit_status()
  local f = io.open(self.status, "rb")
  if not f then return nil end
  local status = f:read("a")
  f:close()
  return tonumber(status:match("%d+"))
end

-- Processes whose command line holds `marker`: the remote commands.
local processes_with = support.processes_with

describe("orch repl", function()
  if not tmux_path() then pending("needs tmux") return end
  local dir, term
  before_each(function() dir = support.tmpdir() end)
  after_each(function()
    if term then term:close(); term = nil end
    support.remove_tree(dir)
  end)

  local function start(args, env)
    env = env or {}
    env.HOME = env.HOME or dir
    env.ORCH_HISTORY = env.ORCH_HISTORY or (dir .. "/history")
    term = open_term(dir, args, env)
    finally(function() if term then term:close(); term = nil end end)
    term:wait("orch> ")
    return term
  end

  it("evaluates expressions and a function defined over several lines", function()
    start()
    assert.matches("\n2\n", term:eval("1 + 1"), 1, true)
    term:type("function double(x)")
    term:wait(">> ")
    term:type("  return x * 2")
    term:type("end")
    local out = term:eval("double(21)")
    assert.matches("\n42\n", out, 1, true)
    -- several values, tab-separated (the terminal shows the tabs as spaces)
    assert.matches('\n"text"%s+nil%s+3%.5\n', term:eval('"text", nil, 3.5'))
  end)

  it("pretty-prints tables: sorted keys, nesting indented, strings quoted, cycles marked", function()
    start()
    local out = term:eval('{ b = { 1, 2 }, a = "x\\ty", [10] = true, ["two words"] = 2 }')
    assert.matches('\n{ [10] = true, a = "x\\ty", b = { 1, 2 }, ["two words"] = 2 }\n', out, 1, true)
    out = term:eval('{ name = string.rep("n", 150), list = { 1, 2 }, deep = { deeper = { x = 1 } } }')
    assert.matches('\n{\n  deep = { deeper = { x = 1 } },\n  list = { 1, 2 },\n  name = "' .. ("n"):rep(150) .. '",\n}\n',
      out, 1, true)
    out = term:eval("t = { 1 }; t.self = t; return t")
    assert.matches("{ 1, self = <cycle: table 0x%x+> }", out)
  end)

  it("reports an error as file:line: message, then keeps working", function()
    start()
    assert.matches("repl:1: boom", term:eval('error("boom")'), 1, true)
    assert.matches("repl:1: attempt to index a nil value (global 'nosuch')", term:eval("nosuch.field"), 1, true)
    assert.matches("repl:1: unexpected symbol near ')'", term:eval("x = )"), 1, true)
    assert.matches("\n42\n", term:eval("40 + 2"), 1, true)
  end)

  it("drops the line on Ctrl-C at the prompt and stays", function()
    start()
    term:keys("-l", "this is not Lua")
    term:keys("C-c")
    term:eventually(function() return term:prompts() >= 2 end, "a new prompt")
    assert.matches("\n7\n", term:eval("3 + 4"), 1, true)
    assert.is_nil(term:exit_status())
  end)

  it("exits with code 0 on Ctrl-D and keeps the history in $ORCH_HISTORY", function()
    start()
    term:eval("answer = 6 * 7")
    term:eval("answer + 0")
    term:keys("C-d")
    local code = term:wait_exit()
    assert.equals(0, code)
    local history = support.read(dir .. "/history")
    assert.equals("answer = 6 * 7\nanswer + 0\n", history)
    -- the next session can recall it
    term:close(); term = nil
    start()
    term:keys("Up")
    term:wait("orch> answer + 0")
    term:keys("Up")
    term:wait("orch> answer = 6 * 7")
    term:keys("Enter")
    assert.matches("\n42\n", term:eval("answer"), 1, true)
  end)

  it("interrupts a local command with Ctrl-C and comes back to the prompt", function()
    start()
    local marker = "orch-repl-local-" .. support.pid()
    term:type(('on("local"):exec("sleep 30; echo %s")'):format(marker))
    support.eventually(function() return #processes_with(marker) > 0 end, "the command running")
    local before = term:prompts()
    term:keys("C-c")
    -- back well before the 30 s sleep is over: it was stopped, not waited for
    local deadline = loop.now() + 10
    while term:prompts() <= before and loop.now() < deadline do loop.sleep(0.05) end
    assert.is_true(term:prompts() > before, "no prompt 10 s after Ctrl-C:\n" .. term:screen())
    assert.matches("interrupted", term:screen(), 1, true)
    support.eventually(function() return #processes_with(marker) == 0 end, "the command gone")
    assert.matches("local | exit 0", term:eval('on("local"):exec("echo again")'), 1, true)
  end)

  it("interrupts Lua code that loops, at the prompt and inside on(...):each", function()
    start()
    term:type("while true do end")
    term:eventually(function() return term:is_busy() end, "looping")
    term:keys("C-c")
    term:wait("interrupted")
    assert.matches("\n5\n", term:eval("2 + 3"), 1, true)
    term:type('r = on("local"):each(function(h) while true do end end)')
    term:eventually(function() return term:is_busy() end, "looping")
    term:keys("C-c")
    term:wait("interrupted", 2)
    assert.matches("\n6\n", term:eval("3 + 3"), 1, true)
  end)

  it("runs a line in a pipe without a terminal: no prompt, results on stdout", function()
    local res = support.orch("repl", { stdin = "1 + 1\nfunction f(x)\n  return x .. '!'\nend\nf('hi')\nprint('plain')\n",
      env = { HOME = dir } })
    assert.equals(0, res.code, res.stderr)
    assert.equals('2\n"hi!"\nplain\n', res.stdout)
    assert.equals("", res.stderr)
    res = support.orch("repl", { stdin = "error('boom')\n1\n", env = { HOME = dir } })
    assert.equals(1, res.code)
    assert.equals("1\n", res.stdout)
    assert.matches("repl:1: boom", res.stderr, 1, true)
    assert.is_nil(fs.stat(dir .. "/.orch_history"))   -- no history for a script
  end)

  describe("with SSH hosts", function()
    if not sshd.available() then pending("needs sshd") return end
    local lab
    lazy_setup(function() lab = sshd.start(2, { groups = { web = { 1, 2 } } }) end)
    lazy_teardown(function() if lab then lab:stop() end end)

    local function start_lab()
      return start({ "-i", lab:inventory_yaml() }, { HOME = lab.home, SSH_AUTH_SOCK = false,
        ORCH_HISTORY = dir .. "/history" })
    end

    it("shows the hosts and roles, and runs a command on every host, a block per host", function()
      start_lab()
      assert.matches("2 hosts, 1 role (web)", term:screen(), 1, true)
      local out = term:eval('on("all"):exec("echo host-$ORCH_X; hostname")')
      local hostname = proc.run("hostname").stdout:gsub("%s+$", "")
      for _, h in ipairs({ "h1", "h2" }) do
        assert.matches("\n" .. h .. " | exit 0 | %d+%.%d%ds\n  host%-\n  " .. hostname:gsub("%p", "%%%0") .. "\n", out)
      end
      assert.matches("\n2 ok, 0 failed, 0 unreachable\n", out, 1, true)
      -- the result is data too
      assert.matches('\n"h1 h2"\n', term:eval('r = on("role:web"):exec("true", { quiet = true }); '
        .. 'local k = {} for h in pairs(r) do k[#k + 1] = h end table.sort(k) return table.concat(k, " ")'), 1, true)
      assert.matches('\n{ "h1", "h2" }\n', term:eval('on("h*"):hosts()'), 1, true)
      out = term:eval('on("all"):each(function(h) return h:exec("echo $((20 + 1))").stdout:gsub("%s", "") .. h.name end)')
      assert.matches('\nh1 | ok | %d+%.%d%ds\n  "21h1"\n', out)
      -- a failed command names itself, as the user wrote it
      out = term:eval('on("h2"):each(function(h) h:exec("echo oops >&2; exit 3") end)')
      assert.matches("\nh2 | error | [%d.]+s\n  repl:1: h2: command failed %(exit code 3%): echo oops >&2; exit 3\n  oops\n", out)
    end)

    it("prints the facts of every host in one table", function()
      start_lab()
      local out = term:eval('on("all"):facts()')
      local kernel = proc.run("uname -r").stdout:gsub("%s+$", "")
      assert.matches("HOST%s+OS%s+KERNEL%s+CPUS%s+MEMORY\n", out)
      assert.matches("\nh1%s+%S.-" .. kernel:gsub("%p", "%%%0") .. "%s+%d+%s+[%d.]+ %a+\n", out)
      assert.matches("\nh2%s+%S.-" .. kernel:gsub("%p", "%%%0") .. "%s+%d+%s+[%d.]+ %a+\n", out)
    end)

    it("stops a command on every host on Ctrl-C, and the next command works", function()
      start_lab()
      local marker = "orch-repl-remote-" .. support.pid()
      term:eval('on("all"):exec("true")')   -- connected: the sessions are reused
      term:type(('on("all"):exec("sleep 30; echo %s")'):format(marker))
      support.eventually(function() return #processes_with("sleep 30; echo " .. marker) >= 2 end,
        "the command running on both hosts")
      local before = term:prompts()
      term:keys("C-c")
      local deadline = loop.now() + 10
      while term:prompts() <= before and loop.now() < deadline do loop.sleep(0.05) end
      assert.is_true(term:prompts() > before, "no prompt 10 s after Ctrl-C:\n" .. term:screen())
      assert.matches("interrupted", term:screen(), 1, true)
      -- the remote shells and their sleep are gone, not left to finish
      support.eventually(function() return #processes_with(marker) == 0 end, "the remote commands stopped")
      local out = term:eval('on("all"):exec("echo after")')
      assert.matches("\nh1 | exit 0 | [%d.]+s\n  after\n", out)
      assert.matches("\nh2 | exit 0 | [%d.]+s\n  after\n", out)
      assert.not_matches(marker, out, 1, true)
      term:keys("C-d")
      assert.equals(0, term:wait_exit())
    end)
  end)
end)

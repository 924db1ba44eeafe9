local proc = require("orch.proc")
local task = require("orch.task")
local fs = require("orch.core.fs")
local support = require("spec.helpers.support")

local function count_fds()
  return #fs.list("/proc/self/fd")
end

-- Children of this process that are zombies (state Z in /proc/PID/stat).
local function zombies()
  local f = io.open("/proc/self/stat")
  local me = f:read("l"):match("^(%d+)")
  f:close()
  local n = 0
  for _, pid in ipairs(fs.list("/proc")) do
    if pid:match("^%d+$") then
      local f = io.open("/proc/" .. pid .. "/stat")
      local line = f and f:read("l")
      if f then f:close() end
      local state, ppid = line and line:match("^%d+ %b() (%S) (%d+)")
      if state == "Z" and ppid == me then n = n + 1 end
    end
  end
  return n
end

local alive = support.alive

describe("orch.proc", function()
  it("reports exit codes and both streams", function()
    local r = proc.run("echo out; echo err >&2; exit 3")
    assert.equals(3, r.code)
    assert.equals("out\n", r.stdout)
    assert.equals("err\n", r.stderr)
    assert.is_false(r.ok)
    assert.equals("exit code 3", proc.failure(r))
  end)

  it("runs argv without a shell", function()
    local r = proc.run({ "printf", "%s|", "a b", "$HOME", ";" })
    assert.equals(0, r.code)
    assert.equals("a b|$HOME|;|", r.stdout)
  end)

  it("reports the signal that ended a process", function()
    local r = proc.run("kill -USR1 $$")
    assert.is_nil(r.code)
    assert.equals("USR1", r.signal)
    assert.equals("killed by signal USR1", proc.failure(r))
  end)

  it("says so when a command is not found", function()
    local r = proc.run("no-such-command-xyz")
    assert.equals(127, r.code)
    assert.equals("command not found", proc.failure(r))
    local p, err, code = proc.run({ "no-such-command-xyz" })
    assert.is_nil(p)
    assert.matches("no-such-command-xyz: no such file or directory", err, 1, true)
    assert.equals("ENOENT", code)
  end)

  it("passes stdin data and closes it", function()
    local data = string.rep("0123456789", 100000)
    local r = proc.run("wc -c", { stdin = data })
    assert.equals("1000000", r.stdout:match("%d+"))
    assert.equals("", proc.run("cat", { stdin = "" }).stdout)
  end)

  it("gives the child /dev/null as stdin by default", function()
    assert.equals("", proc.run("cat").stdout)
  end)

  it("adds to, removes from, and clears the environment", function()
    local r = proc.run("echo \"$ORCH_A|$HOME|${PATH:+path}\"", { env = { ORCH_A = 42, HOME = false } })
    assert.equals("42||path\n", r.stdout)
    r = proc.run({ "/usr/bin/env" }, { env = { ONLY = "1" }, clear_env = true })
    assert.equals("ONLY=1\n", r.stdout)
  end)

  it("looks argv[0] up on the child's PATH, and runs a script without #! with sh", function()
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    assert(fs.mkdir(dir .. "/bin", "0755"))
    support.write(dir .. "/bin/orch-tool", 'echo "tool $1"\n')
    assert(fs.chmod(dir .. "/bin/orch-tool", "0755"))
    local r = assert(proc.run({ "orch-tool", "a" }, { env = { PATH = dir .. "/bin:/usr/bin:/bin" } }))
    assert.equals("tool a\n", r.stdout)
    -- a relative entry counts from the child's directory, as after a chdir
    r = assert(proc.run({ "orch-tool", "b" }, { env = { PATH = "bin" }, cwd = dir }))
    assert.equals("tool b\n", r.stdout)
    local _, err, code = proc.run({ "orch-tool" })
    assert.matches("orch-tool: no such file or directory", err, 1, true)
    assert.equals("ENOENT", code)
  end)

  it("starts the child with an empty signal mask and no signal ignored", function()
    -- orch ignores SIGPIPE and catches SIGINT and SIGTERM; none of it passes on
    local r = proc.run({ "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status" })
    assert.equals("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", r.stdout)
  end)

  it("runs in the given directory and says when it is missing", function()
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    assert.equals(dir .. "\n", proc.run("pwd -P", { cwd = dir }).stdout)
    local r, err, code = proc.run("pwd", { cwd = dir .. "/missing" })
    assert.is_nil(r)
    assert.matches(dir .. "/missing: No such file or directory", err, 1, true)
    assert.equals("ENOENT", code)
  end)

  it("captures several MiB on both streams without deadlock", function()
    local r = proc.run("head -c 6000000 /dev/zero; head -c 5000000 /dev/zero >&2")
    assert.equals(0, r.code)
    assert.equals(6000000, #r.stdout)
    assert.equals(5000000, #r.stderr)
  end)

  it("streams output line by line as it comes", function()
    local lines = {}
    local r = proc.run("echo one; echo two >&2; printf three", {
      on_stdout = function(l) lines[#lines + 1] = "out:" .. l end,
      on_stderr = function(l) lines[#lines + 1] = "err:" .. l end,
    })
    assert.equals(0, r.code)
    table.sort(lines)
    assert.same({ "err:two", "out:one", "out:three" }, lines)
    assert.equals("one\nthree", r.stdout)
  end)

  it("kills the whole process group on timeout, grandchildren included", function()
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    local pidfile = dir .. "/grandchild"
    local r = proc.run(("sh -c 'echo $$ > %s; exec sleep 60' & wait"):format(pidfile), { timeout = 0.5 })
    assert.is_true(r.timed_out)
    assert.equals("timed out after 0.5 s", proc.failure(r))
    -- The pipes close a moment before the kernel marks the process dead.
    local grandchild = support.read(pidfile):match("%d+")
    support.eventually(function() return not alive(grandchild) end, "killed: the grandchild")
  end)

  it("escalates to KILL when TERM is ignored", function()
    local r = proc.run("trap '' TERM; sleep 30 & wait; sleep 30", { timeout = 0.2, grace = 0.2 })
    assert.is_true(r.timed_out)
    assert.equals("KILL", r.signal)
  end)

  it("stops waiting for a grandchild that keeps the pipes after a timeout", function()
    local r = proc.run("setsid sleep 3 & exit 0", { timeout = 0.3, grace = 0.1 })
    assert.is_true(r.timed_out)
    assert.equals(0, r.code)
  end)

  it("raises with the command and stderr tail from check", function()
    local ok, err = pcall(proc.check, "echo boom >&2; exit 4")
    assert.is_false(ok)
    assert.matches("command failed (exit code 4): echo boom >&2; exit 4\nboom", err, 1, true)
  end)

  it("rejects bad options as programming errors", function()
    assert.has_error(function() proc.run(42) end)
    assert.has_error(function() proc.spawn({ argv = {} }) end, "argv is empty")
    assert.has_error(function() proc.spawn({ argv = { "true" }, env = { ["A=B"] = "x" } }) end)
  end)

  it("waits for many processes at once from tasks", function()
    local res = task.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, 4, function(i)
      return proc.run("echo " .. i).stdout
    end)
    for i = 1, 8 do assert.equals(i .. "\n", res[i].value) end
  end)

  it("leaks no fd and leaves no zombie after 1,000 runs of every outcome", function()
    proc.run("true")  -- warm up lazily opened fds (the loop's own)
    local before = count_fds()
    local outcomes = {
      function() return proc.run("true") end,
      function() return proc.run("exit 1") end,
      function() return proc.run("kill -TERM $$") end,
      function() return proc.run({ "no-such-binary" }) end,
      function() return proc.run("cat", { stdin = "x" }) end,
      function() return proc.run("sleep 5", { timeout = 0.001, grace = 0.001 }) end,
    }
    for i = 1, 1000 do
      outcomes[i % #outcomes + 1]()
    end
    collectgarbage()
    assert.equals(before, count_fds())
    assert.equals(0, zombies())
  end)
end)

local support = require("spec.helpers.support")
local procs = require("spec.helpers.procs")
local fs = require("orch.core.fs")

-- Issue 12: every byte orch installed can be found and restored, from any
-- folder.
describe("nothing lost (#12)", function()
  local dir, elsewhere
  before_each(function()
    dir = support.tmpdir()
    elsewhere = support.tmpdir()
  end)
  after_each(function()
    support.remove_tree(dir)
    support.remove_tree(elsewhere)
  end)

  it("records absolute paths, so history and rollback work from another folder", function()
    local function play(content)
      support.write(dir .. "/site.lua", ('file { playbook.dir .. "/out/../out/./b.txt", content = %q }\n'):format(content))
      local res = support.orch("play", "site.lua", { cwd = dir })
      assert.equals(0, res.code, res.stdout .. res.stderr)
    end
    assert(fs.mkdir(dir .. "/out", "0755"))
    play("v1\n")
    play("v2\n")
    local store = dir .. "/.orch/state.db"
    local res = support.orch("history", "--state", store, { cwd = elsewhere })
    assert.matches(dir .. "/out/b.txt", res.stdout, 1, true)
    res = support.orch("rollback", "--run", "2", "--state", store, { cwd = elsewhere })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("v1\n", support.read(dir .. "/out/b.txt"))
    assert.same({}, fs.list(elsewhere))   -- nothing written where the command ran
    res = support.orch("rollback", dir .. "/out/b.txt", "--to", "2", "--state", store, { cwd = elsewhere })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("v2\n", support.read(dir .. "/out/b.txt"))
  end)
end)

describe("a hand edit (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("is kept as a version before a rollback or a play replaces it", function()
    local f = dir .. "/app.conf"
    local function play(content)
      support.write(dir .. "/site.lua", ("file { %q, content = %q }\n"):format(f, content))
      local res = support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db")
      assert.equals(0, res.code, res.stdout .. res.stderr)
      return res
    end
    play("v1\n")
    play("v2\n")
    support.write(f, "edited by hand\n")
    local res = support.orch("rollback", f, "--state", dir .. "/state.db")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("local:" .. f .. " was changed outside orch: kept that as version 3 first", res.stdout, 1, true)
    assert.equals("v1\n", support.read(f))
    res = support.orch("rollback", f, "--to", "3", "--state", dir .. "/state.db")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("edited by hand\n", support.read(f))
    -- a play over a hand edit keeps it too
    support.write(f, "edited again\n")
    res = play("v3\n")
    assert.matches(f .. " was changed outside orch: kept as version", res.stdout, 1, true)
    res = support.orch("history", f, "--state", dir .. "/state.db")
    assert.matches("drift", res.stdout, 1, true)
  end)
end)

describe("a pipeline run killed mid-stage (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("is marked aborted when the store is next opened, its stage too, with the stage's log", function()
    support.write(dir .. "/ci.lua", ([[pipeline "p" {
  stage "first" { sh = "echo quick" },
  stage "slow" { needs = "first", sh = "echo started slow; echo $$ > $D/pid; sleep 30" },
}]]):gsub("%$D", dir))
    local p = assert(require("orch.core.proc").spawn({ argv = { support.bin, "pipeline", "run", "p", "-f", dir .. "/ci.lua" } }))
    support.wait_for(dir .. "/.orch/runs/p/1/logs/slow.log", "started slow")
    local shell = support.wait_for(dir .. "/pid", "\n"):match("%d+")
    finally(function() require("orch.proc").run({ "pkill", "-KILL", "-P", shell }) end)
    assert(p:kill("KILL"))
    p:wait()
    p:close()
    local res = support.orch("pipeline", "show", "1", "-f", dir .. "/ci.lua", "--json")
    assert.equals(0, res.code, res.stderr)
    local run = require("cjson").decode(res.stdout)
    assert.equals("aborted", run.status)
    local stages = {}
    for _, st in ipairs(run.stages) do stages[st.stage] = st end
    assert.equals("ok", stages.first.status)
    assert.equals("aborted", stages.slow.status)
    assert.matches("started slow", stages.slow.log, 1, true)
    res = support.orch("pipeline", "history", "p", "-f", dir .. "/ci.lua")
    assert.matches("aborted", res.stdout, 1, true)
    assert.not_matches("running", res.stdout, 1, true)
  end)
end)

describe("what a killed orch left running (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  -- the process group of pid (field 5 of /proc/PID/stat, after the name)
  local function group_of(pid)
    return tonumber(support.read(("/proc/%d/stat"):format(pid)):match("%) %S+ %d+ (%d+)"))
  end

  -- start `orch ARGS` in dir, wait until its command wrote $D/pid, kill -9
  -- orch (and with keeper_too, first the keeper that would end the group)
  local function kill_mid_command(keeper_too, ...)
    local p = assert(require("orch.core.proc").spawn({ argv = { support.bin, ... }, cwd = dir }))
    local pid = tonumber(support.wait_for(dir .. "/pid", "\n"):match("%d+"))
    local group = group_of(pid)
    if keeper_too then
      local keeper
      for _, c in ipairs(procs.descendants(p:pid())) do
        if (fs.read(("/proc/%d/cmdline"):format(c.pid)) or ""):find("orch-keeper", 1, true) then keeper = c.pid end
      end
      assert(keeper, "orch started no keeper")
      require("orch.proc").run({ "kill", "-9", tostring(keeper) })
    end
    assert(p:kill("KILL"))
    p:wait()
    p:close()
    return pid, group
  end

  it("dies with it: the command, and what its shell started in the background", function()
    support.write(dir .. "/site.lua", ('command { "sleep 60 & echo $! > %s/bg; echo $$ > %s/pid; wait" }\n')
      :format(dir, dir))
    local pid = kill_mid_command(false, "play", "site.lua")
    local bg = tonumber(support.read(dir .. "/bg"):match("%d+"))
    finally(function() require("orch.proc").run({ "kill", "-9", tostring(pid), tostring(bg) }) end)
    support.eventually(function() return not support.alive(pid) and not support.alive(bg) end,
      "the command and its background child end with orch")
  end)

  for _, case in ipairs({
    { what = "a play", file = "site.lua", body = 'command { "echo $$ > $D/pid; exec sleep 60" }\n', cmd = "play",
      next = { "play", "site.lua" } },
    { what = "an apply", file = "infra.lua", body = 'resource "command" "c" { cmd = "echo $$ > $D/pid; exec sleep 60" }\n',
      cmd = "apply", next = { "apply", "infra.lua", "--auto-approve" } },
  }) do
    it(("is ended, and said, before the next run takes over, had it escaped (%s)"):format(case.what), function()
      support.write(dir .. "/" .. case.file, (case.body:gsub("%$D", dir)))
      local args = { table.unpack(case.next) }
      local pid, group = kill_mid_command(true, table.unpack(args))
      assert.is_true(support.alive(pid))   -- with its keeper gone too, a command outlives orch...
      finally(function() require("orch.proc").run({ "kill", "-9", tostring(pid) }) end)
      os.remove(dir .. "/pid")
      -- ...until the next run: it ends the group first (and runs its own)
      support.write(dir .. "/" .. case.file, (case.body:gsub("echo %$%$ > %$D/pid; exec sleep 60", "true")))
      args[#args + 1] = { cwd = dir }
      local res = support.orch(table.unpack(args))
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("ended what", res.stderr, 1, true)
      assert.matches(("group %d"):format(group), res.stderr, 1, true)
      assert.is_false(support.alive(pid))
    end)
  end
end)

describe("temporaries of an interrupted write (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("are removed by the next run that manages the path, and said", function()
    support.write(dir .. "/.b.txt.orch-Ab12Cd", ("x"):rep(1000))   -- as fs.write names them
    support.write(dir .. "/.other.orch-Ab12Cd", "not ours to touch")
    support.write(dir .. "/site.lua", ('file { %q, content = "new" }\n'):format(dir .. "/b.txt"))
    local res = support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("removed " .. dir .. "/.b.txt.orch-Ab12Cd (1000 bytes), left by an interrupted write", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/.b.txt.orch-Ab12Cd"))
    assert.truthy(fs.stat(dir .. "/.other.orch-Ab12Cd"))
    assert.equals("new", support.read(dir .. "/b.txt"))
  end)
end)

describe("handlers a failed run notified (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body, ...)
    support.write(dir .. "/site.lua", (body:gsub("%$D", dir)))
    return support.orch("play", dir .. "/site.lua", ...)
  end

  local BODY = [[
handler "restart app" (function(h) sh("echo restarted >> $D/restarts") end)
file { "$D/app.conf", content = "%s", notify = "restart app" }
%s
]]

  it("run on the next run of the playbook, and at once with --force-handlers", function()
    -- changes the file, then fails before its handlers
    local res = play(BODY:format("v1", 'error("boom")'))
    assert.equals(2, res.code)
    assert.is_nil(fs.stat(dir .. "/restarts"))
    -- nothing changes now, and yet the restart it owed happens
    res = play(BODY:format("v1", ""))
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("1 handler an earlier run notified but never ran will run now", res.stdout, 1, true)
    assert.equals("restarted\n", support.read(dir .. "/restarts"))
    -- owed once: the next run has nothing to do
    res = play(BODY:format("v1", ""))
    assert.equals("restarted\n", support.read(dir .. "/restarts"))
    -- --force-handlers runs it in the failing run itself
    res = play(BODY:format("v2", 'error("boom")'), "--force-handlers")
    assert.equals(2, res.code)
    assert.equals("restarted\nrestarted\n", support.read(dir .. "/restarts"))
    res = play(BODY:format("v2", ""))
    assert.not_matches("earlier run notified", res.stdout, 1, true)
    assert.equals("restarted\nrestarted\n", support.read(dir .. "/restarts"))
  end)
end)

describe("symbolic links (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body)
    support.write(dir .. "/site.lua", (body:gsub("%$D", dir)))
    return support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db")
  end

  it("line and file edit what a link points at, and the link stays a link", function()
    assert(fs.mkdir(dir .. "/etc", "0755"))
    support.write(dir .. "/etc/real.conf", "a=1\n")
    assert(fs.symlink("etc/real.conf", dir .. "/app.conf"))
    local res = play('line { "$D/app.conf", line = "b=2" }\n')
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("link", fs.lstat(dir .. "/app.conf").type)
    assert.equals("a=1\nb=2\n", support.read(dir .. "/etc/real.conf"))
    res = play('file { "$D/app.conf", content = "whole\\n" }\n')
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("link", fs.lstat(dir .. "/app.conf").type)
    assert.equals("whole\n", support.read(dir .. "/etc/real.conf"))
  end)

  it("a directory is never recursed through a link", function()
    assert(fs.mkdir(dir .. "/tree/sub", "0755"))
    assert(fs.symlink("tree", dir .. "/link"))
    local res = play('directory { "$D/link", mode = "0700", recurse = true }\n')
    assert.equals(1, res.code)
    assert.matches(dir .. "/link is a symbolic link (to tree): orch does not recurse through a link", res.stdout, 1, true)
    assert.equals("0755", ("%04o"):format(fs.stat(dir .. "/tree/sub").mode & 4095))
  end)
end)

describe("a large file (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  -- 192 MiB of content, made in the playbook in one string: orch may hold
  -- it once more while writing (not read it back, not bind it to SQLite)
  local function play(tail, limit, ...)
    support.write(dir .. "/big.lua", ([[
      local block = ("0123456789abcdef"):rep(4096)
      file { playbook.dir .. "/big.bin", content = block:rep(192 * 16 - 1) .. block:sub(1, -2) .. %q }
    ]]):format(tail))
    local argv = { "sh", "-c", (limit or "true") .. ' && exec "$@"', "sh", support.bin, "play", "big.lua", ... }
    return require("orch.proc").run(argv, { cwd = dir })
  end

  it("is versioned beside the store in bounded memory, and rolled back byte for byte", function()
    -- (not under AddressSanitizer, whose shadow memory alone is larger)
    local limit = not os.getenv("ASAN_OPTIONS") and "ulimit -v 800000" or nil
    local res = play("1", limit)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local first = fs.sha256(dir .. "/big.bin")
    res = play("2", limit, "--diff")   -- not diffed: too large to read
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("(diff skipped: 201326592 bytes is over the 104448 a diff shows)", res.stdout, 1, true)
    local blob = dir .. "/.orch/state.db.blobs/" .. first:sub(1, 2) .. "/" .. first
    assert.equals(tonumber("600", 8), fs.stat(blob).mode)
    assert.equals(192 * 1024 * 1024, fs.stat(blob).size)
    res = support.orch("rollback", dir .. "/big.bin", { cwd = dir })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(first, fs.sha256(dir .. "/big.bin"))
  end)

  it("is reported changed, with a warning, when its version can't be recorded", function()
    assert(fs.mkdir(dir .. "/.orch", "0700"))
    support.write(dir .. "/.orch/state.db.blobs", "not a folder\n")
    local res = play("1")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("changed%s+local%s+file %./big%.bin", res.stdout)
    assert.matches("warning: " .. dir .. "/big.bin was changed, but its version could not be recorded", res.stdout, 1, true)
    assert.equals(192 * 1024 * 1024, fs.stat(dir .. "/big.bin").size)
  end)
end)

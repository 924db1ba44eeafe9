local support = require("spec.helpers.support")
local json = require("cjson")
local state = require("orch.state")

local function play(dir, body, ...)
  support.write(dir .. "/site.lua", body)
  return support.orch("play", dir .. "/site.lua", ...)
end

describe("orch play", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("runs the hello playbook, then finds nothing to change", function()
    local dest = dir .. "/hello"
    local state_db = dir .. "/state.db"
    local function hello(...)
      return support.orch("play", support.root .. "/playbooks/hello.lua", "-e", "dest=" .. dest, "--state", state_db, ...)
    end
    local first = hello()
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.matches("changed  local    template " .. dest .. "/conf/greeting.txt", first.stdout, 1, true)
    assert.matches("local        ok=0  changed=8  failed=0  skipped=0", first.stdout, 1, true)
    assert.matches("Hello from hello on .+!\nhello listens on port 8080%.\nUpstreams:\n  1%. 127%.0%.0%.1:9001\n",
      support.read(dest .. "/conf/greeting.txt"))
    assert.equals('{"name":"hello","port":8080}\n', support.read(dest .. "/conf/app.json"))
    assert.matches("uname %-s%s+Linux", support.read(dest .. "/data/facts.txt"))
    assert.matches("hello is configured in " .. dest, first.stdout, 1, true)
    local second = hello()
    assert.equals(0, second.code, second.stderr)
    assert.matches("local        ok=8  changed=0  failed=0  skipped=0", second.stdout, 1, true)
    assert.is_nil(second.stdout:find("handler", 1, true))
    local store = assert(state.open(state_db))
    finally(function() store:close() end)
    local runs = store:runs(10)
    assert.equals(2, #runs)
    assert.equals("ok", runs[1].status)
    assert.equals(8, #store:events(runs[1].id))
  end)

  it("runs the example provider beside the release playbook", function()
    local dest = dir .. "/rel"
    local function release(version)
      return support.orch("play", support.root .. "/playbooks/release.lua", "-e", "dest=" .. dest,
        "-e", "version=" .. version, "--state", dir .. "/state.db")
    end
    local res = release("1.0.0")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("changed  local    archive " .. dest .. "/releases/1.0.0", res.stdout, 1, true)
    assert.equals("1.0.0\n", support.read(dest .. "/current/VERSION"))
    assert.equals("ok=5  changed=0  failed=0  skipped=0", support.recap(release("1.0.0")))
    assert.equals(0, release("1.0.1").code)
    assert.equals("1.0.1\n", support.read(dest .. "/current/VERSION"))
  end)

  it("keeps the state store beside the playbook by default", function()
    assert.equals(0, play(dir, 'step("a", function() end)\n').code)
    assert.truthy(require("orch.core.fs").stat(dir .. "/.orch/state.db"))
  end)

  it("prints one JSON event per line with --json", function()
    local res = play(dir, 'step("make", function() return true end)\nlog("hello")\n', "--json")
    assert.equals(0, res.code, res.stderr)
    local events = {}
    for line in res.stdout:gmatch("[^\n]+") do events[#events + 1] = json.decode(line) end
    assert.same({ "run_start", "step", "log", "recap" },
      { events[1].event, events[2].event, events[3].event, events[4].event })
    assert.equals("changed", events[2].status)
    assert.equals("make", events[2].name)
    assert.equals("hello", events[3].message)
    assert.equals(1, events[4].hosts["local"].changed)
  end)

  it("uses colour on a terminal only, and never with NO_COLOR", function()
    local res = play(dir, 'step("a", function() return true end)\n')
    assert.is_nil(res.stdout:find("\27[", 1, true))
    -- script(1) gives orch a real pseudo-terminal
    local cmd = ("%s play %s/site.lua"):format(support.bin, dir)
    local tty = require("orch.proc").run({ "script", "-qec", cmd, "/dev/null" }, { env = { NO_COLOR = false } })
    assert.matches("\27[33mchanged\27[0m", tty.stdout, 1, true)
    tty = require("orch.proc").run({ "script", "-qec", cmd, "/dev/null" }, { env = { NO_COLOR = "1" } })
    assert.matches("changed  local", tty.stdout, 1, true)
    assert.is_nil(tty.stdout:find("\27[", 1, true))
  end)

  it("stops at a failed step, reports it with its line, and exits 1", function()
    local res = play(dir, table.concat({
      'step("first", function() end)',
      'step("broken", function() sh("echo nope >&2; exit 3") end)',
      'step("never", function() end)',
    }, "\n"))
    assert.equals(1, res.code)
    assert.matches("failed   local    broken", res.stdout, 1, true)
    assert.matches("site.lua:2: command failed (exit code 3): echo nope >&2; exit 3\n    nope", res.stdout, 1, true)
    assert.is_nil(res.stdout:find("never", 1, true))
    assert.matches("ok=1  changed=0  failed=1", res.stdout, 1, true)
    local store = assert(state.open(dir .. "/.orch/state.db"))
    finally(function() store:close() end)
    assert.equals("failed", store:runs(1)[1].status)
  end)

  it("says a command was not found, and exits 1", function()
    local res = play(dir, 'step("x", function() sh("no-such-command-here") end)\n')
    assert.equals(1, res.code)
    assert.matches("command failed (command not found): no-such-command-here", res.stdout, 1, true)
  end)

  it("reports a playbook that does not parse with file:line, exit 2", function()
    local res = play(dir, 'step("a", function()\n  x = = 1\nend)\n')
    assert.equals(2, res.code)
    assert.matches("^orch: " .. dir:gsub("%p", "%%%0") .. "/site.lua:2: unexpected symbol near '='\n$", res.stderr)
  end)

  it("reports a missing playbook, exit 2", function()
    local res = support.orch("play", dir .. "/nope.lua")
    assert.equals(2, res.code)
    assert.equals("orch: playbook not found: " .. dir .. "/nope.lua\n", res.stderr)
  end)

  it("reports an unknown flag with a hint, exit 2", function()
    local res = support.orch("play", "--chekc", dir .. "/site.lua")
    assert.equals(2, res.code)
    assert.equals("orch play: unknown option '--chekc'\ntry 'orch help play'\n", res.stderr)
  end)

  it("reports a YAML error with file:line:col, exit 2", function()
    support.write(dir .. "/bad.yaml", "a: 1\n b: 2\n")
    local res = play(dir, 'local cfg = yaml.load_file(playbook.dir .. "/bad.yaml")\n')
    assert.equals(2, res.code)
    assert.matches("bad.yaml:2:3: mapping values are not allowed", res.stderr, 1, true)
  end)

  it("reports a Lua error in the playbook with its line, exit 2, and records the run", function()
    local res = play(dir, 'step("a", function() end)\nlocal t = nil\nprint(t.x)\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:3: attempt to index a nil value (local 't')", res.stderr, 1, true)
    local store = assert(state.open(dir .. "/.orch/state.db"))
    finally(function() store:close() end)
    assert.equals("failed", store:runs(1)[1].status)
  end)

  it("waits for another run's lock, then gives up naming the holder, exit 1", function()
    local db = dir .. "/state.db"
    local holder = assert(state.open(db))
    local lock = assert(holder:lock({ command = "orch play other.lua" }))
    finally(function() lock:unlock(); holder:close() end)
    local res = play(dir, 'step("a", function() end)\n', "--state", db, "--lock-timeout", "0.3")
    assert.equals(1, res.code)
    assert.matches("is locked by pid " .. support.pid(), res.stderr, 1, true)
    assert.matches("orch play other.lua", res.stderr, 1, true)
    assert.equals(1, select(2, res.stderr:gsub("\n", "")))  -- one line
  end)

  it("passes -e variables and the playbook's directory", function()
    local res = play(dir, 'step("v", function() log(vars.color .. " " .. playbook.dir) end)\n', "-e", "color=blue")
    assert.equals(0, res.code, res.stderr)
    assert.matches("blue " .. dir, res.stdout, 1, true)
    res = play(dir, "", "-e", "novalue")
    assert.equals(2, res.code)
    assert.matches("-e expects KEY=VALUE, got 'novalue'", res.stderr, 1, true)
  end)

  it("takes host and play with their table as a second argument too, with file:line in errors", function()
    local res = play(dir, [[
host("x1", { connection = "local", roles = { "web" } })
host "x2" { connection = "local", roles = { "web" } }
play("p", { on = "role:web", function(h) log("on " .. h.name) end })
]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("on x1", res.stdout, 1, true)
    assert.matches("on x2", res.stdout, 1, true)
    res = play(dir, 'host("x1", { connection = "local" })\nhost("x3", { adress = "10.0.0.1" })\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: host 'x3': unknown attribute 'adress'", res.stderr, 1, true)
    res = play(dir, 'host("x1", { connection = "local" })\n\nplay("p", { on = "nope", function() end })\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:3: play 'p': unknown host 'nope'", res.stderr, 1, true)
  end)

  it("runs steps from concurrent tasks and counts them all", function()
    local res = play(dir, table.concat({
      'local r = task.map({1, 2, 3, 4}, 2, function(i)',
      '  step("item " .. i, function() task.sleep(0.01); return i % 2 == 0 end)',
      'end)',
    }, "\n"))
    assert.equals(0, res.code, res.stderr)
    assert.matches("ok=2  changed=2  failed=0", res.stdout, 1, true)
  end)
end)

describe("orch cli", function()
  it("runs Lua like lua5.4: arg, ... and -e", function()
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    support.write(dir .. "/s.lua", 'print(arg[0], arg[1], select("#", ...), ...)\n')
    local res = support.orch("lua", dir .. "/s.lua", "x", "y")
    assert.equals(0, res.code)
    assert.equals(dir .. "/s.lua\tx\t2\tx\ty\n", res.stdout)
    res = support.orch("-e", "print(1 + 1)")
    assert.equals("2\n", res.stdout)
  end)

  it("reports a script error with its traceback, exit 1", function()
    local res = support.orch("-e", "error('bad thing')")
    assert.equals(1, res.code)
    assert.matches("^orch: %(command line%):1: bad thing\nstack traceback:", res.stderr)
  end)

  it("prints help for every command, and the version", function()
    for _, cmd in ipairs({ "play", "lua", "version", "help" }) do
      local res = support.orch(cmd, "--help")
      assert.equals(0, res.code, cmd)
      assert.matches("^usage: orch " .. cmd, res.stdout)
      assert.equals(res.stdout, support.orch("help", cmd).stdout)
    end
    assert.matches("^orch %d+%.%d+%.%d+", support.orch("version").stdout)
    assert.matches("commands:", support.orch("help").stdout, 1, true)
  end)

  it("rejects an unknown command, exit 2", function()
    local res = support.orch("plya")
    assert.equals(2, res.code)
    assert.equals("orch: unknown command 'plya'\ntry 'orch help'\n", res.stderr)
  end)
end)

describe("orch play interrupted", function()
  it("kills the running command on Ctrl-C, records the run as interrupted, exits 130", function()
    local core = require("orch.core.proc")
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    support.write(dir .. "/site.lua", ([[
step("long", function() sh("echo $$ > %s/pid; exec sleep 30") end)
step("never", function() end)
]]):format(dir))
    local p = assert(core.spawn({ argv = { support.bin, "play", dir .. "/site.lua" }, env = { NO_COLOR = "1" } }))
    local sleeper = support.wait_for(dir .. "/pid", "\n"):match("%d+")
    assert(p:kill("INT"))
    local res = p:wait()
    assert.equals(130, res.code)
    assert.matches("orch: interrupted by SIGINT", res.stderr, 1, true)
    assert.is_nil(res.stdout:find("never", 1, true))
    support.eventually(function() return not support.alive(sleeper) end, "killed: the sleep")
    local store = assert(state.open(dir .. "/.orch/state.db"))
    finally(function() store:close() end)
    assert.equals("interrupted", store:runs(1)[1].status)
  end)

  it("interrupts Lua code that is busy computing, and other tasks start nothing", function()
    local core = require("orch.core.proc")
    local dir = support.tmpdir()
    finally(function() support.remove_tree(dir) end)
    support.write(dir .. "/site.lua", ([[
task.map({ 1, 2 }, 2, function(i)
  step("busy " .. i, function()
    if i == 2 then sh("touch %s/second") end
    fs.write("%s/started", "yes\n")
    local n = 0
    while true do n = n + 1 end
  end)
end)
]]):format(dir, dir))
    local p = assert(core.spawn({ argv = { support.bin, "play", dir .. "/site.lua" }, env = { NO_COLOR = "1" } }))
    support.wait_for(dir .. "/started", "yes")
    assert(p:kill("INT"))
    local res = p:wait()
    assert.equals(130, res.code)
    assert.matches("failed   local    busy 1", res.stdout, 1, true)
    assert.matches("interrupted", res.stdout, 1, true)
    assert.is_nil(require("orch.core.fs").stat(dir .. "/second"))
  end)
end)

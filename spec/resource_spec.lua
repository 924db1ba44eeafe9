local support = require("spec.helpers.support")
local json = require("cjson")
local fs = require("orch.core.fs")
local state = require("orch.state")

-- Write site.lua in dir and play it; the state store is kept in dir.
local function play(dir, body, ...)
  support.write(dir .. "/site.lua", body)
  return support.orch("play", dir .. "/site.lua", ...)
end

local function events(stdout)
  local list = {}
  for line in stdout:gmatch("[^\n]+") do list[#list + 1] = json.decode(line) end
  return list
end

describe("resource engine", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  describe("attribute checks", function()
    it("names an unknown attribute, the resource and the line, exit 2", function()
      local res = play(dir, ('\nfile { "%s/x", mdoe = "0644" }\n'):format(dir))
      assert.equals(2, res.code)
      assert.matches("site.lua:2: file: unknown attribute 'mdoe' (did you mean 'mode'?)", res.stderr, 1, true)
      assert.is_nil(fs.stat(dir .. "/x"))
    end)

    it("names a wrong type with the resource", function()
      local res = play(dir, ('file { "%s/x", content = {} }\n'):format(dir))
      assert.equals(2, res.code)
      assert.matches(('site.lua:1: file "%s/x": attribute \'content\' must be string, got table'):format(dir),
        res.stderr, 1, true)
    end)

    it("refuses a Lua number as a mode: 0644 would be decimal", function()
      local res = play(dir, ('file { "%s/x", content = "", mode = 0644 }\n'):format(dir))
      assert.equals(2, res.code)
      assert.matches([[attribute 'mode' must be a mode string like "0644", got number 644]], res.stderr, 1, true)
    end)

    it("names a missing required attribute and a value outside an enum", function()
      local res = play(dir, 'symlink { "/tmp/orch-never" }\n')
      assert.equals(2, res.code)
      assert.matches([[site.lua:1: symlink "/tmp/orch-never": missing required attribute 'to']], res.stderr, 1, true)
      res = play(dir, 'user { "nobody", state = "gone" }\n')
      assert.equals(2, res.code)
      assert.matches([[attribute 'state' must be one of present, absent; got "gone"]], res.stderr, 1, true)
    end)

    it("says when a type does not exist", function()
      local res = play(dir, 'resource_that_is_not { "x" }\n')
      assert.equals(2, res.code)
      assert.matches("site.lua:1:", res.stderr, 1, true)
    end)
  end)

  it("reads, compares and applies only the difference; a second run changes nothing", function()
    local body = ('directory { "%s/app", mode = "0750" }\nfile { "%s/app/a.conf", content = "a = 1\\n", mode = "0640" }\n')
      :format(dir, dir)
    local first = play(dir, body)
    assert.equals(0, first.code, first.stderr)
    assert.matches("ok=0  changed=2  failed=0  skipped=0", first.stdout, 1, true)
    assert.equals("a = 1\n", support.read(dir .. "/app/a.conf"))
    assert.equals(tonumber("640", 8), fs.stat(dir .. "/app/a.conf").mode)
    assert.equals(tonumber("750", 8), fs.stat(dir .. "/app").mode)
    local second = play(dir, body)
    assert.matches("ok=2  changed=0  failed=0  skipped=0", second.stdout, 1, true)
    assert(fs.chmod(dir .. "/app/a.conf", "0600"))
    local third = play(dir, body)
    assert.matches("ok=1  changed=1", third.stdout, 1, true)
    assert.equals(tonumber("640", 8), fs.stat(dir .. "/app/a.conf").mode)
  end)

  it("changes nothing on disk in --check, yet reports what would change", function()
    support.write(dir .. "/keep.conf", "old\n")
    local before = fs.stat(dir .. "/keep.conf")
    local res = play(dir, ([[
directory { "%s/new" }
file { "%s/keep.conf", content = "new\n", mode = "0600" }
command { "touch %s/ran" }
step("code", function() error("steps must not run in check mode") end)
]]):format(dir, dir, dir), "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("ok=0  changed=3  failed=0  skipped=1", res.stdout, 1, true)
    assert.matches("(check mode: nothing was changed)", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/new"))
    assert.is_nil(fs.stat(dir .. "/ran"))
    local after = fs.stat(dir .. "/keep.conf")
    assert.equals("old\n", support.read(dir .. "/keep.conf"))
    assert.same({ before.mode, before.mtime, before.ino }, { after.mode, after.mtime, after.ino })
    local store = assert(state.open(dir .. "/.orch/state.db"))
    finally(function() store:close() end)
    assert.equals(0, store.db:value("SELECT COUNT(*) FROM file_versions"))
  end)

  it("shows a unified diff of contents and attribute changes with --diff", function()
    support.write(dir .. "/c.ini", "a = 1\nb = 2\nc = 3\n")
    local res = play(dir, ('file { "%s/c.ini", content = "a = 1\\nb = 20\\nc = 3\\n", mode = "0600" }\n'):format(dir),
      "--diff")
    assert.equals(0, res.code, res.stderr)
    assert.matches("-b = 2\n", res.stdout, 1, true)
    assert.matches("+b = 20\n", res.stdout, 1, true)
    assert.matches("@@ -1,3 +1,3 @@", res.stdout, 1, true)
    assert.matches("mode: 0644 -> 0600", res.stdout, 1, true)
  end)

  it("emits one JSON event per resource", function()
    local res = play(dir, ('file { "%s/j", content = "x" }\nabsent { "%s/none" }\n'):format(dir, dir), "--json")
    assert.equals(0, res.code, res.stderr)
    local evs = events(res.stdout)
    local resources = {}
    for _, ev in ipairs(evs) do if ev.event == "resource" then resources[#resources + 1] = ev end end
    assert.equals(2, #resources)
    assert.same({ "file", dir .. "/j", "changed" }, { resources[1].type, resources[1].name, resources[1].status })
    assert.same({ "absent", "ok" }, { resources[2].type, resources[2].status })
    assert.equals("content", resources[1].changes[1].attr)
  end)

  it("never shows a secret: not in output, diffs, JSON, errors or the state store", function()
    local body = ([[
local pw = secret("hunter2-very-secret")
file { "%s/app.env", content = "PASSWORD=" .. pw .. "\n" }
file { "%s/plain", content = "token: " .. pw }
log("the password is " .. tostring(pw))
command { "echo hunter2-very-secret >&2; exit 1", unless = "test -f %s/never" }
]]):format(dir, dir, dir)
    local outputs = {}
    for _, args in ipairs({ { "--diff" }, { "--json", "--diff" } }) do
      support.write(dir .. "/app.env", "PASSWORD=old\n")
      local res = play(dir, body, table.unpack(args))
      assert.equals(1, res.code)
      outputs[#outputs + 1] = res.stdout .. res.stderr
    end
    assert.equals("PASSWORD=hunter2-very-secret\n", support.read(dir .. "/app.env"))
    for _, out in ipairs(outputs) do
      assert.is_nil(out:find("hunter2", 1, true), out)
      assert.matches("(sensitive)", out, 1, true)
    end
    local db = support.read(dir .. "/.orch/state.db")
    local wal = fs.stat(dir .. "/.orch/state.db-wal") and support.read(dir .. "/.orch/state.db-wal") or ""
    assert.is_nil((db .. wal):find("hunter2", 1, true))
  end)

  it("runs a notified handler once, at the end, and only if something changed", function()
    local body = ([[
handler "reload" (function() log("reloading") end)
handler "unused" (function() log("never") end)
file { "%s/a", content = "1", notify = "reload" }
file { "%s/b", content = "2", notify = { "reload" } }
log("resources done")
]]):format(dir, dir)
    local res = play(dir, body)
    assert.equals(0, res.code, res.stderr)
    local _, n = res.stdout:gsub("reloading", "")
    assert.equals(1, n)
    assert.is_nil(res.stdout:find("never", 1, true))
    assert.truthy(res.stdout:find("resources done", 1, true) < res.stdout:find("reloading", 1, true))
    res = play(dir, body)
    assert.is_nil(res.stdout:find("reloading", 1, true))
  end)

  it("fails a run that notifies a handler nobody defined, naming the resource", function()
    local res = play(dir, ('file { "%s/a", content = "1", notify = "restart ap" }\n'):format(dir))
    assert.equals(1, res.code)
    assert.matches(('file "%s/a" (%s/site.lua:1) notified handler \'restart ap\', but no handler has that name')
      :format(dir, dir), res.stderr, 1, true)
  end)

  it("skips a resource with when = false", function()
    local res = play(dir, ('file { "%s/a", content = "1", when = false }\n'):format(dir))
    assert.matches("skipped  local    file " .. dir .. "/a", res.stdout, 1, true)
    assert.matches("skipped=1", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/a"))
  end)

  it("reports a failing resource with its error and stops, exit 1", function()
    local res = play(dir, ('file { "%s/no/such/dir/x", content = "1" }\nlog("not reached")\n'):format(dir))
    assert.equals(1, res.code)
    assert.matches("failed   local    file " .. dir .. "/no/such/dir/x", res.stdout, 1, true)
    assert.matches("No such file or directory", res.stdout, 1, true)
    assert.is_nil(res.stdout:find("not reached", 1, true))
  end)

  it("finds providers beside the playbook and on ORCH_PROVIDERS_PATH", function()
    assert(fs.mkdir(dir .. "/providers"))
    support.write(dir .. "/providers/marker.lua", [[
return { marker = {
  schema = { path = { type = "string", required = true } },
  read = function(ctx, want) return ctx.host:stat(want.path) and {} or nil end,
  apply = function(ctx, want) assert(ctx.host:write(want.path, "mark\n")) end,
} }
]])
    local res = play(dir, ('marker { "%s/m" }\nmarker { "%s/m" }\n'):format(dir, dir))
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("ok=1  changed=1", res.stdout, 1, true)
    local elsewhere = support.tmpdir()
    finally(function() support.remove_tree(elsewhere) end)
    assert(fs.rename(dir .. "/providers/marker.lua", elsewhere .. "/marker.lua"))
    res = support.orch("play", dir .. "/site.lua", { env = { ORCH_PROVIDERS_PATH = elsewhere } })
    assert.equals(0, res.code, res.stdout .. res.stderr)
  end)

  it("names the provider file when a provider is malformed", function()
    assert(fs.mkdir(dir .. "/providers"))
    support.write(dir .. "/providers/broken.lua", "return { broken = { schema = {} } }\n")
    local res = play(dir, 'broken { }\n')
    assert.equals(2, res.code)
    assert.matches("providers/broken.lua: type 'broken' needs read(ctx, want)", res.stderr, 1, true)
  end)
end)

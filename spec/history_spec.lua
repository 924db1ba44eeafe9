local support = require("spec.helpers.support")
local json = require("cjson")
local fs = require("orch.core.fs")
local state = require("orch.state")

local function octal(s) return tonumber(s, 8) end

describe("file versions: history and rollback", function()
  local dir, db
  before_each(function()
    dir = support.tmpdir()
    db = dir .. "/state.db"
  end)
  after_each(function() support.remove_tree(dir) end)

  -- Play a one-file playbook with this content and mode.
  local function converge(content, mode, extra)
    support.write(dir .. "/site.lua", ("file { %q, content = %q, mode = %q }\n%s"):format(
      dir .. "/app.conf", content, mode, extra or ""))
    local res = support.orch("play", dir .. "/site.lua", "--state", db)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    return res
  end

  local function orch(...)
    local args = { ... }
    args[#args + 1] = "--state"
    args[#args + 1] = db
    return support.orch(table.unpack(args))
  end

  it("records the original as version 0 and restores any version byte for byte", function()
    local original = "original \0 bytes\r\nno final newline"
    support.write(dir .. "/app.conf", original)
    assert(fs.chmod(dir .. "/app.conf", "0600"))
    converge("v1\n", "0644")
    converge("v2\n", "0640")
    converge(string.rep("v3 line\n", 1000), "0444")

    local h = orch("history", dir .. "/app.conf")
    assert.equals(0, h.code, h.stderr)
    assert.matches("  0        .-original  0600", h.stdout)
    assert.matches("  3        .-apply     0444", h.stdout)

    local r = orch("rollback", dir .. "/app.conf", "--to", "1")
    assert.equals(0, r.code, r.stderr)
    assert.matches("restored local:" .. dir .. "/app.conf to version 1 (recorded as version 4)", r.stdout, 1, true)
    assert.equals("v1\n", support.read(dir .. "/app.conf"))
    assert.equals(octal("644"), fs.stat(dir .. "/app.conf").mode)

    r = orch("rollback", dir .. "/app.conf", "--to", "0")
    assert.equals(0, r.code, r.stderr)
    assert.equals(original, support.read(dir .. "/app.conf"))
    assert.equals(octal("600"), fs.stat(dir .. "/app.conf").mode)

    r = orch("rollback", dir .. "/app.conf", "--to", "0")
    assert.matches("already is version 0", r.stdout, 1, true)

    r = orch("rollback", dir .. "/app.conf")   -- the version before the latest (5): 4 = v1
    assert.equals("v1\n", support.read(dir .. "/app.conf"))

    local list = json.decode(orch("history", dir .. "/app.conf", "--json").stdout)
    assert.equals(7, #list)
    assert.equals("rollback", list[7].action)
  end)

  it("restores ownership too", function()
    converge("owned\n", "0644")
    support.write(dir .. "/site.lua", ("file { %q, content = 'owned\\n', owner = 'nobody', group = 'nogroup' }\n")
      :format(dir .. "/app.conf"))
    assert.equals(0, support.orch("play", dir .. "/site.lua", "--state", db).code)
    assert.equals("nobody", fs.stat(dir .. "/app.conf").user)
    assert.equals(0, orch("rollback", dir .. "/app.conf").code)
    local st = fs.stat(dir .. "/app.conf")
    assert.same({ 0, 0 }, { st.uid, st.gid })
  end)

  it("rolls back a file orch created by removing it", function()
    converge("new\n", "0644")
    assert.equals(0, orch("rollback", dir .. "/app.conf", "--to", "0").code)
    assert.is_nil(fs.stat(dir .. "/app.conf"))
  end)

  it("undoes every file a run changed with --run, newest first", function()
    support.write(dir .. "/site.lua", ("file { %q, content = 'a1' }\nfile { %q, content = 'b1' }\n")
      :format(dir .. "/a", dir .. "/b"))
    assert.equals(0, support.orch("play", dir .. "/site.lua", "--state", db).code)
    support.write(dir .. "/site.lua", ("file { %q, content = 'a2' }\nfile { %q, content = 'b2' }\n")
      :format(dir .. "/a", dir .. "/b"))
    assert.equals(0, support.orch("play", dir .. "/site.lua", "--state", db).code)
    local r = orch("rollback", "--run", "2")
    assert.equals(0, r.code, r.stderr)
    assert.equals("a1", support.read(dir .. "/a"))
    assert.equals("b1", support.read(dir .. "/b"))
    assert.truthy(r.stdout:find(dir .. "/b", 1, true) < r.stdout:find(dir .. "/a", 1, true))
    assert.matches("run 99 changed no file", orch("rollback", "--run", "99").stderr, 1, true)
  end)

  it("says clearly when there is nothing to roll back to", function()
    local r = orch("history", dir .. "/nothing")
    assert.equals(1, r.code)
    local res = support.orch("history", dir .. "/x", "--state", dir .. "/missing.db")
    assert.matches("no state store at " .. dir .. "/missing.db", res.stderr, 1, true)
    converge("only\n", "0644")
    r = orch("rollback", dir .. "/app.conf", "--to", "7")
    assert.equals(1, r.code)
    assert.matches("has no version 7", r.stderr, 1, true)
  end)

  it("does not store a content that holds a secret, and refuses to roll back to it", function()
    support.write(dir .. "/site.lua", ("file { %q, content = 'key=' .. secret('s3cr3t-value') }\n"):format(dir .. "/k"))
    assert.equals(0, support.orch("play", dir .. "/site.lua", "--state", db).code)
    support.write(dir .. "/site.lua", ("file { %q, content = 'key=public' }\n"):format(dir .. "/k"))
    assert.equals(0, support.orch("play", dir .. "/site.lua", "--state", db).code)
    local h = orch("history", dir .. "/k")
    assert.matches("(secret: not stored)", h.stdout, 1, true)
    local r = orch("rollback", dir .. "/k", "--to", "1")
    assert.equals(1, r.code)
    assert.matches("version 1 held a secret, so its content was not stored", r.stderr, 1, true)
    assert.equals("key=public", support.read(dir .. "/k"))
  end)

  it("leaves the old or the new file after kill -9 mid-write, and a store that opens", function()
    local big_old = string.rep("o", 64 * 1024 * 1024)
    support.write(dir .. "/big", big_old)
    -- a large new content is generated and written by the playbook itself
    support.write(dir .. "/site.lua", ("file { %q, content = string.rep('n', 64 * 1024 * 1024) }\n"):format(dir .. "/big"))
    local core = require("orch.core.proc")
    for _, delay in ipairs({ 0.05, 0.15, 0.3 }) do
      local p = assert(core.spawn({ argv = { support.bin, "play", dir .. "/site.lua", "--state", db } }))
      require("orch.core.loop").sleep(delay)
      p:kill("KILL")
      p:wait()
      local content = support.read(dir .. "/big")
      assert.is_true(content == big_old or content == string.rep("n", 64 * 1024 * 1024))
      local store = assert(state.open(db))
      assert.equals("ok", store.db:value("PRAGMA integrity_check"))
      store:close()
    end
  end)
end)

describe("named configurations", function()
  local dir, db
  before_each(function()
    dir = support.tmpdir()
    db = dir .. "/state.db"
  end)
  after_each(function() support.remove_tree(dir) end)

  local function apply(a, b, with_c)
    support.write(dir .. "/site.lua", ([[
config "web" { function()
  file { "%s/a.conf", content = %q }
  file { "%s/b.conf", content = %q, mode = "0600" }
  %s
end }
]]):format(dir, a, dir, b, with_c and ('file { "%s/c.conf", content = "c" }'):format(dir) or ""))
    local res = support.orch("play", dir .. "/site.lua", "--state", db)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    return res
  end

  it("versions the set together, lists it, and rolls every file back", function()
    support.write(dir .. "/b.conf", "was here first")
    local first = apply("a1", "b1")
    assert.matches("config web is now version 1", first.stdout, 1, true)
    assert.is_nil(apply("a1", "b1").stdout:find("is now version", 1, true))  -- nothing changed
    apply("a2", "b1")
    apply("a3", "b3", true)

    local list = support.orch("config", "list", "--state", db)
    assert.matches("web%s+3%s+3", list.stdout)
    local hist = support.orch("config", "history", "web", "--state", db)
    assert.matches("version 2", hist.stdout, 1, true)
    assert.matches(dir .. "/c.conf @ ", hist.stdout, 1, true)

    local r = support.orch("config", "rollback", "web", "--to", "1", "--state", db)
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.matches("config web rolled back to version 1 (recorded as version 4)", r.stdout, 1, true)
    assert.equals("a1", support.read(dir .. "/a.conf"))
    assert.equals("b1", support.read(dir .. "/b.conf"))
    assert.is_nil(fs.stat(dir .. "/c.conf"))  -- added later: back to before orch (absent)

    r = support.orch("config", "rollback", "web", "--state", db)   -- to version 3
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.equals("a3", support.read(dir .. "/a.conf"))
    assert.equals("c", support.read(dir .. "/c.conf"))
    assert.equals(2, support.orch("config", "frobnicate", "--state", db).code)
    assert.matches("no configuration named 'nope'", support.orch("config", "history", "nope", "--state", db).stderr, 1, true)
  end)
end)

local support = require("spec.helpers.support")
local proc = require("orch.proc")
local fs = require("orch.core.fs")

local function play(dir, body, ...)
  support.write(dir .. "/site.lua", body)
  return support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db", ...)
end

-- The getent line for key (without its newline), or nil.
local function getent(db, key)
  local r = assert(proc.run({ "getent", db, key }))
  return r.code == 0 and r.stdout:gsub("\n$", "") or nil
end

local function groups_of(user)
  local set = {}
  for g in assert(proc.run({ "id", "-Gn", user })).stdout:gmatch("%S+") do set[g] = true end
  return set
end

-- A gid no group has.
local function free_gid()
  while true do
    local gid = math.random(40000, 59999)
    if not getent("group", tostring(gid)) then return gid end
  end
end

local NEEDS_ROOT = "needs root: useradd and groupadd change /etc/passwd and /etc/group"

describe("user and group", function()
  local missing = support.missing({ "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "getent" })
  if missing then pending("needs " .. missing .. " (the user and group providers run it)") return end
  local dir, user, group, extra
  before_each(function()
    dir = support.tmpdir()
    local tag = tostring(math.random(100000, 999999))
    user, group, extra = "orchspec" .. tag, "orchspec" .. tag .. "g", "orchspec" .. tag .. "s"
  end)
  after_each(function() support.remove_tree(dir) end)

  it("creates, leaves alone, changes and removes a user and its groups #machine", function()
    if not support.is_root() then pending(NEEDS_ROOT) return end
    finally(function()
      proc.run({ "userdel", user })
      proc.run({ "groupdel", group })
      proc.run({ "groupdel", extra })
    end)
    local gid = free_gid()
    local home = dir .. "/home"
    local function site(attrs)
      return ('group { %q, gid = %d }\ngroup { %q }\nuser { %q, group = %q, home = %q, comment = "orch spec", %s }\n')
        :format(group, gid, extra, user, group, home, attrs)
    end

    local first = play(dir, site('shell = "/bin/sh"'))
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.matches("local        ok=0  changed=3  failed=0", first.stdout, 1, true)
    assert.equals(("%s:x:%d:"):format(group, gid), getent("group", group))
    assert.matches(("^%s:x:%%d+:%d:orch spec:%s:/bin/sh$"):format(user, gid, home:gsub("%p", "%%%0")),
      getent("passwd", user))
    assert.equals("directory", fs.stat(home).type)

    local again = play(dir, site('shell = "/bin/sh"'))
    assert.equals(0, again.code, again.stdout .. again.stderr)
    assert.matches("local        ok=3  changed=0  failed=0", again.stdout, 1, true)

    local changed = site(('shell = "/bin/bash", groups = { %q }'):format(extra))
    local check = play(dir, changed, "--check", "--diff")
    assert.equals(0, check.code, check.stdout .. check.stderr)
    assert.matches("local        ok=2  changed=1  failed=0", check.stdout, 1, true)
    assert.matches("shell: /bin/sh -> /bin/bash", check.stdout, 1, true)
    assert.matches(("groups: (none) -> %s"):format(extra), check.stdout, 1, true)
    assert.matches(":/bin/sh$", getent("passwd", user))
    assert.is_nil(groups_of(user)[extra])

    local apply = play(dir, changed)
    assert.equals(0, apply.code, apply.stdout .. apply.stderr)
    assert.matches("local        ok=2  changed=1  failed=0", apply.stdout, 1, true)
    assert.matches(":/bin/bash$", getent("passwd", user))
    assert.is_true(groups_of(user)[extra])
    assert.matches("local        ok=3  changed=0  failed=0", play(dir, changed).stdout, 1, true)

    -- the groups listed are exactly the supplementary ones: an empty list empties them
    local none = play(dir, site('shell = "/bin/bash", groups = {}'))
    assert.matches("local        ok=2  changed=1  failed=0", none.stdout, 1, true)
    assert.is_nil(groups_of(user)[extra])

    local gone = ('user { %q, state = "absent", remove_home = true }\ngroup { %q, state = "absent" }\n'
      .. 'group { %q, state = "absent" }\n'):format(user, group, extra)
    local removed = play(dir, gone)
    assert.equals(0, removed.code, removed.stdout .. removed.stderr)
    assert.matches("local        ok=0  changed=3  failed=0", removed.stdout, 1, true)
    assert.is_nil(getent("passwd", user))
    assert.is_nil(getent("group", group))
    assert.is_nil(fs.stat(home))
    assert.matches("local        ok=3  changed=0  failed=0", play(dir, gone).stdout, 1, true)
  end)

  it("changes nothing in check mode, even for a user that does not exist", function()
    local res = play(dir, ('user { %q, create_home = false }\n'):format(user), "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", res.stdout, 1, true)
    assert.is_nil(getent("passwd", user))
  end)

  it("takes the primary group as a gid and keeps supplementary groups apart from it #machine", function()
    if not support.is_root() then pending(NEEDS_ROOT) return end
    finally(function()
      proc.run({ "userdel", user })
      proc.run({ "groupdel", group })
    end)
    local gid = free_gid()
    local body = ('group { %q, gid = %d }\nuser { %q, gid = %d, groups = { %q, "users" }, create_home = false }\n')
      :format(group, gid, user, gid, group)
    local first = play(dir, body)
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.equals(tostring(gid), getent("passwd", user):match("^[^:]*:[^:]*:%d+:(%d+):"))
    assert.is_true(groups_of(user).users)
    local again = play(dir, body)
    assert.matches("local        ok=2  changed=0  failed=0", again.stdout, 1, true)
  end)

  it("names the attribute and line of a typo, for user and group", function()
    local res = play(dir, 'log("x")\nuser { "nobody", shel = "/bin/sh" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: user: unknown attribute 'shel' (did you mean 'shell'?)", res.stderr, 1, true)
    res = play(dir, '\n\ngroup { "nogroup", gidd = 5 }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:3: group: unknown attribute 'gidd'", res.stderr, 1, true)
    res = play(dir, 'user { "nobody", uid = "x" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: user \"nobody\": attribute 'uid' must be integer", res.stderr, 1, true)
    res = play(dir, 'group { "nogroup", state = "gone" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: group \"nogroup\": attribute 'state' must be one of present, absent", res.stderr, 1, true)
  end)

  it("refuses group and gid together", function()
    local res = play(dir, ('user { %q, group = "users", gid = 100 }\n'):format(user))
    assert.equals(1, res.code)
    assert.matches(("user %s: give group or gid, not both"):format(user), res.stdout, 1, true)
    assert.is_nil(getent("passwd", user))
  end)
end)

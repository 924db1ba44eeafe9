local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")

-- orch's own SFTP client (engine/sftp.c, host/sftp.lua) against a real sshd:
-- flights of requests, answered in one round trip each (#13)
describe("SFTP flights (real sshd)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir
  lazy_setup(function() lab = sshd.start(1) end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body) return lab:play(dir, body) end

  it("answers every request of a flight in its place, failures naming the path, in one round trip", function()
    local res = play([[play "p" { on = "h1", function(h)
  step("flight", function()
    local s = h.session
    assert(h:stat("/").user)   -- the channel is open, passwd and group read: what follows is alone
    local before = s:stats().round_trips
    local res, errs, codes = s:sftp({
      { "mkdir", "$D/x", tonumber("750", 8) }, { "stat", "$D/x" }, { "stat", "$D/missing" },
      { "open", "$D/missing", "r" }, { "mkdir", "$D/x" }, { "rmdir", "$D/x" }, { "lstat", "$D/x" },
    })
    log("trips " .. s:stats().round_trips - before)
    for i = 1, 7 do
      local v = res[i]
      if type(v) == "table" then v = v.type .. " " .. string.format("%o", v.mode) end
      log(("%d %s %s %s"):format(i, tostring(v), tostring(codes[i]), tostring(errs[i])))
    end
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("trips 1\n", res.stdout, 1, true)
    assert.matches("1 true nil nil", res.stdout, 1, true)
    assert.matches("2 directory 750 nil nil", res.stdout, 1, true)
    assert.matches("3 false ENOENT h1: " .. dir .. "/missing: No such file or directory", res.stdout, 1, true)
    assert.matches("4 false ENOENT h1: " .. dir .. "/missing: No such file or directory", res.stdout, 1, true)
    assert.matches("5 false EFAILURE h1: " .. dir .. "/x: failed", res.stdout, 1, true)
    assert.matches("6 true nil nil", res.stdout, 1, true)
    assert.matches("7 false ENOENT", res.stdout, 1, true)
  end)

  it("shares one channel between 100 tasks' flights, each getting its own answers", function()
    lab:ssh(1, ("mkdir -p %s/many && cd %s/many && for i in $(seq 100); do head -c $i /dev/zero > f$i; done")
      :format(dir, dir))
    local res = play([[play "p" { on = "h1", function(h)
  step("many", function()
    local items = {}
    for i = 1, 100 do items[i] = i end
    local got = task.map(items, 100, function(i) return h:stat("$D/many/f" .. i).size end)
    local good = 0
    for i, r in ipairs(got) do if r.ok and r.value == i then good = good + 1 end end
    log("good " .. good .. " channels " .. h.session:stats().channels)
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("good 100 channels 0", res.stdout, 1, true)
  end)

  it("reads and writes files of many pieces, empty ones, and /proc files that stat as empty", function()
    local res = play([[play "p" { on = "h1", function(h)
  step("files", function()
    local fs = require("orch.core.fs")
    local parts = {}
    for i = 1, 50000 do parts[i] = ("%07d\n"):format(i * 7919 % 1000003) end
    local big = table.concat(parts) .. "!"   -- 400,001 bytes: several pieces, an odd end
    assert(h:write("$D/big", big))
    log("same " .. tostring(h:read("$D/big") == big))
    log("remote " .. h:exec("sha256sum $D/big").stdout:match("^%x+"))
    log("local " .. fs.sha256_data(big))
    local huge = ("x"):rep(3 * 1024 * 1024 + 5)   -- past one flight of reads
    assert(h:write("$D/huge", huge))
    log("huge " .. tostring(h:read("$D/huge") == huge))
    assert(h:write("$D/empty", ""))
    log("empty [" .. h:read("$D/empty") .. "]")
    log("loadavg " .. tostring(h:read("/proc/loadavg"):match("^[%d.]+ [%d.]+ [%d.]+") ~= nil))
    local st = h:stat("$D/big", { sha256 = true })
    log("sha " .. tostring(st.sha256 == fs.sha256_data(big)))
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("same true", res.stdout, 1, true)
    assert.equals(res.stdout:match("local (%x+)"), res.stdout:match("remote (%x+)"))
    assert.matches("huge true", res.stdout, 1, true)
    assert.matches("empty []", res.stdout, 1, true)
    assert.matches("loadavg true", res.stdout, 1, true)
    assert.matches("sha true", res.stdout, 1, true)
  end)

  it("replaces a file in three round trips, keeping its mode, and leaves no temporary behind", function()
    lab:ssh(1, ("printf old > %s/conf && chmod 600 %s/conf"):format(dir, dir))
    local res = play([[play "p" { on = "h1", function(h)
  step("write", function()
    local s = h.session
    assert(h:stat("/").user)   -- the channel is open, passwd and group read: what follows is alone
    local before = s:stats().round_trips
    assert(h:write("$D/conf", "new"))
    log("trips " .. s:stats().round_trips - before)
    local st = h:stat("$D/conf")
    log(("mode %o"):format(st.mode))
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("trips 3\n", res.stdout, 1, true)
    assert.matches("mode 600", res.stdout, 1, true)
    assert.equals("new", lab:ssh(1, "cat " .. dir .. "/conf").stdout)
    assert.equals("conf\n", lab:ssh(1, "ls -A " .. dir .. " | grep -v '^site.lua$\\|^state.db'").stdout)
  end)

  it("makes a chain of directories in one round trip, with a mode the umask would strip", function()
    local res = play([[play "p" { on = "h1", function(h)
  step("mkdir", function()
    local s = h.session
    assert(h:stat("/").user)   -- the channel is open, passwd and group read: what follows is alone
    local before = s:stats().round_trips
    log("made " .. tostring(h:mkdir("$D/a/b/c", "0750")))
    log("trips " .. s:stats().round_trips - before)
    log("open " .. tostring(h:mkdir("$D/o/p", "0777")))
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("made true", res.stdout, 1, true)
    assert.matches("trips 1\n", res.stdout, 1, true)
    assert.equals("750 750 750\n", lab:ssh(1, ("stat -c %%a %s/a %s/a/b %s/a/b/c | tr '\\n' ' ' | sed 's/ $/\\n/'")
      :format(dir, dir, dir)).stdout)
    assert.equals("777 777\n", lab:ssh(1, ("stat -c %%a %s/o %s/o/p | tr '\\n' ' ' | sed 's/ $/\\n/'")
      :format(dir, dir)).stdout)
  end)

  it("runs every command after a host's first in one round trip, on a channel opened ahead", function()
    local res = play([[play "p" { on = "h1", function(h)
  step("exec", function()
    local s = h.session
    assert(s:exec("true"))
    -- the SFTP channel takes the channel opened after the command; the
    -- next one, asked for behind the first stat, is open by the second's answer
    assert(s:sftp({ { "stat", "/" } }))
    assert(s:sftp({ { "stat", "/" } }))
    local before = s:stats()
    for i = 1, 3 do log("out " .. assert(s:exec("echo " .. i)).stdout) end
    local after = s:stats()
    log(("ahead %d channels %d"):format(after.channels_ahead - before.channels_ahead, after.channels))
    -- one for each request and its answer; the counter also counts the
    -- server's close of a channel when it comes apart from the answer
    log("trips at most 6: " .. tostring(after.round_trips - before.round_trips <= 6))
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("out 3\n", res.stdout, 1, true)
    assert.matches("ahead 3 channels 4\n", res.stdout, 1, true)
    assert.matches("trips at most 6: true", res.stdout, 1, true)
  end)

  it("knows a folder it just made holds only what it put there, until a command runs", function()
    local res = play([[play "p" { on = "h1", function(h)
  step("fresh", function()
    local s = h.session
    assert(h:mkdir("$D/new/sub"))
    assert(h:write("$D/new/sub/mine", "x"))
    local before = s:stats().sftp_ops
    log("absent " .. tostring(h:stat("$D/new/sub/other")) .. " asked " .. s:stats().sftp_ops - before)
    log("mine " .. h:stat("$D/new/sub/mine").size)
    log("sub " .. h:stat("$D/new/sub").type)
    h:exec("touch $D/new/sub/other")
    log("after a command " .. h:stat("$D/new/sub/other").type)
  end)
end }]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("absent nil asked 0\n", res.stdout, 1, true)
    assert.matches("mine 1\n", res.stdout, 1, true)
    assert.matches("sub directory\n", res.stdout, 1, true)
    assert.matches("after a command file\n", res.stdout, 1, true)
  end)
end)

local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local fs = require("orch.core.fs")
local prefetch = require("orch.host.prefetch")

-- Issue 13: what a run read on a host comes in one batch on the next run,
-- and says exactly what a live read would have said.
describe("reads in one batch (#13)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir
  lazy_setup(function() lab = sshd.start(1) end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body)
    local res = lab:play(dir, body)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    return res
  end

  -- every kind of thing a path can be, and names a shell would mangle
  local function make_files()
    assert(fs.mkdir(dir .. "/d", "0750"))
    support.write(dir .. "/d/plain.txt", "hello\n")
    support.write(dir .. "/d/empty", "")
    support.write(dir .. "/d/bin", "a\0b\255\n")
    support.write(dir .. "/d/it's a \"name\" $x", "quoted\n")
    support.write(dir .. "/d/big", ("0123456789abcdef"):rep(70000))   -- past 1 MiB: hashed, not fetched
    assert(fs.chmod(dir .. "/d/plain.txt", "4755"))
    assert(fs.symlink("plain.txt", dir .. "/d/link"))
    assert(fs.symlink("nowhere", dir .. "/d/broken"))
  end

  -- a play that logs, for each path, stat, lstat with sha256, content and
  -- link target as the host object answers them
  local LOOK = [[
play "look" { on = "h1", function(h)
  step("look", function()
    local json = require("cjson")
    for _, name in ipairs({ "plain.txt", "empty", "bin", "it's a \"name\" $x", "big", "link", "broken",
        "missing", "" }) do
      local p = "$D/d/" .. name
      local function shown(st)
        if not st then return "absent" end
        return json.encode({ st.type, st.mode, st.uid, st.gid, st.size, st.mtime, st.sha256, st.target,
          st.content and #st.content })
      end
      local content = h:read(p)
      log(("%s | %s | %s | %s | %s"):format(name, shown(h:stat(p, { sha256 = true })),
        shown(h:stat(p, { link = true, sha256 = true })), content and #content or "-",
        tostring(select(1, h:readlink(p)))))
    end
    log("sftp_ops " .. h.session:stats().sftp_ops)
  end)
end }]]

  local function looks(res)
    local out = {}
    for line in res.stdout:gmatch("log%s+([^\n]*|[^\n]*)\n") do out[#out + 1] = line end
    return out, tonumber(res.stdout:match("sftp_ops (%d+)"))
  end

  it("answers as a live read does, in one command instead of SFTP requests", function()
    make_files()
    local live, live_ops = looks(play(LOOK))
    local batched, batched_ops = looks(play(LOOK))
    assert.equals(9, #live)
    assert.same(live, batched)
    assert.is_true(live_ops > 20)
    -- only what the batch could not answer goes over SFTP: the reads of
    -- absent paths (their errors), the big file's content, readlink of a
    -- path that is no link
    assert.is_true(batched_ops < live_ops / 2, ("%d SFTP ops, live %d"):format(batched_ops, live_ops))
  end)

  it("finds a file changed behind orch's back between runs, and converges it", function()
    local body = [[play "p" { on = "h1", function(h)
      file { "$D/app.conf", content = "v1\n", mode = "0640" }
      line { "$D/limits.conf", line = "max = 5", create = true }
    end }]]
    play(body)
    play(body)   -- the reads recorded, and batched from here on
    support.write(dir .. "/app.conf", "edited by hand\n")
    fs.chmod(dir .. "/limits.conf", "0600")
    local res = play(body)
    assert.matches("changed%s+h1%s+file", res.stdout)
    assert.equals("v1\n", support.read(dir .. "/app.conf"))
    assert.matches("h1%s+ok=1%s+changed=1", res.stdout)
  end)

  it("never answers from before a command of the same run that changed the path", function()
    local body = [[play "p" { on = "h1", function(h)
      h:exec("printf 'by the command\n' > $D/a.conf")
      file { "$D/a.conf", content = "by orch\n" }
      step("after", function() log("now: " .. h:read("$D/a.conf")) end)
    end }]]
    play(body)
    local res = play(body)
    assert.matches("changed%s+h1%s+file", res.stdout)
    assert.matches("now: by orch", res.stdout, 1, true)
  end)

  it("splits a batch too long for one command line into several", function()
    assert(fs.mkdir(dir .. "/many"))
    local long = ("x"):rep(150)
    for i = 1, 300 do support.write(("%s/many/%03d-%s"):format(dir, i, long), tostring(i)) end
    local body = ([[play "p" { on = "h1", function(h)
      step("read", function()
        local sum = 0
        for i = 1, 300 do sum = sum + tonumber(h:read(("$D/many/%%03d-%s"):format(i))) end
        log("sum " .. sum .. " channels " .. h.session:stats().channels .. " sftp " .. h.session:stats().sftp_ops)
      end)
    end }]]):format(long)
    assert.matches("sum 45150 channels 0", play(body).stdout)
    -- 300 paths of about 190 bytes: several commands' worth, none over SFTP
    local channels, sftp = play(body).stdout:match("sum 45150 channels (%d+) sftp (%d+)")
    assert.equals("0", sftp)
    assert.is_true(tonumber(channels) > 1 and tonumber(channels) < 20, channels .. " batches")
  end)

  it("leaves a host whose answer does not parse to live reads", function()
    assert.is_nil(prefetch.parse("L\0/x\0f 644 0 0 1 1.0\0", { ["/x"] = "s" }))   -- no end marker
    assert.is_nil(prefetch.parse("L\0/y\0f 644 0 0 1 1.0\0\0E\0", { ["/x"] = "s" }))   -- not asked
    local got = prefetch.parse("L\0/x\0l 777 0 0 3 1.5\0t\0X\0find: '/y': No such file or directory\n"
      .. "find: '/z': Permission denied\n\0S\0C\0H\0E\0", { ["/x"] = "s", ["/y"] = "s", ["/z"] = "s" })
    -- a link whose target find -L could not stat: its stat is read live
    assert.same({ l = { type = "link", mode = 511, uid = 0, gid = 0, size = 3, mtime = 1, target = "t" } }, got["/x"])
    assert.same({ l = false, s = false }, got["/y"])   -- absent, as SFTP says
    assert.is_nil(got["/z"])   -- read live, for SFTP's own error
  end)
end)

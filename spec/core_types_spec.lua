local support = require("spec.support")
local fs = require("orch.core.fs")

local function octal(s) return tonumber(s, 8) end

describe("core resource types", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  -- Play body (with {dir} replaced by dir); returns the result.
  local function play(body, ...)
    support.write(dir .. "/site.lua", (body:gsub("{dir}", dir)))
    return support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db", ...)
  end

  local function recap(res) return res.stdout:match("ok=%d+  changed=%d+  failed=%d+  skipped=%d+") end

  describe("file", function()
    it("copies src from the playbook's files/ folder, keeps a backup, and is idempotent", function()
      assert(fs.mkdir(dir .. "/files"))
      support.write(dir .. "/files/motd", "welcome\n")
      support.write(dir .. "/motd", "old motd\n")
      local body = 'file { "{dir}/motd", src = "motd", backup = true }\n'
      local res = play(body)
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.equals("welcome\n", support.read(dir .. "/motd"))
      local backups = fs.glob(dir .. "/motd.*~")
      assert.equals(1, #backups)
      assert.equals("old motd\n", support.read(backups[1]))
      assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(play(body)))
    end)

    it("never installs content that fails validation", function()
      support.write(dir .. "/app.json", '{"ok": true}\n')
      local res = play('file { "{dir}/app.json", content = "{\\"a\\": 1,\\n \\"b\\" 2}", validate = "json" }\n')
      assert.equals(1, res.code)
      assert.matches("invalid JSON at line 2", res.stdout, 1, true)
      assert.matches("the file was not changed", res.stdout, 1, true)
      assert.equals('{"ok": true}\n', support.read(dir .. "/app.json"))
      res = play('file { "{dir}/run.sh", content = "echo ok\\n", validate = "sh -n %s" }\n')
      assert.equals(0, res.code, res.stdout)
      res = play('file { "{dir}/v", content = "x", validate = function(c) return c == "y", "want y" end }\n')
      assert.equals(1, res.code)
      assert.matches("want y", res.stdout, 1, true)
      assert.is_nil(fs.stat(dir .. "/v"))
    end)

    it("manages only mode and ownership when no content is given", function()
      support.write(dir .. "/f", "keep me")
      local res = play('file { "{dir}/f", mode = "0600", owner = "nobody" }\n')
      assert.equals(0, res.code, res.stdout)
      local st = fs.stat(dir .. "/f")
      assert.same({ octal("600"), "nobody", "keep me" }, { st.mode, st.user, support.read(dir .. "/f") })
    end)

    it("refuses to write over a directory", function()
      assert(fs.mkdir(dir .. "/d"))
      local res = play('file { "{dir}/d", content = "x" }\n')
      assert.equals(1, res.code)
      assert.matches(dir .. "/d is a directory, not a file", res.stdout, 1, true)
    end)
  end)

  describe("directory", function()
    it("creates parents with a mode, and with recurse fixes ownership below", function()
      local res = play('directory { "{dir}/a/b/c", mode = "0750" }\n')
      assert.equals(0, res.code, res.stdout)
      assert.equals(octal("750"), fs.stat(dir .. "/a/b/c").mode)
      assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(play('directory { "{dir}/a/b/c", mode = "0750" }\n')))
      support.write(dir .. "/a/b/c/file", "x")
      assert(fs.mkdir(dir .. "/a/b/c/sub", "0700"))
      local body = 'directory { "{dir}/a", owner = "nobody", mode = "0755", recurse = true }\n'
      res = play(body)
      assert.equals(0, res.code, res.stdout)
      assert.equals("nobody", fs.stat(dir .. "/a/b/c/file").user)
      assert.equals(octal("755"), fs.stat(dir .. "/a/b/c/sub").mode)
      assert.equals(octal("644"), fs.stat(dir .. "/a/b/c/file").mode & octal("777"))
      assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(play(body)))
    end)

    it("fails when a file is in the way", function()
      support.write(dir .. "/f", "")
      local res = play('directory { "{dir}/f" }\n')
      assert.equals(1, res.code)
      assert.matches(dir .. "/f exists and is a file, not a directory", res.stdout, 1, true)
    end)
  end)

  describe("symlink", function()
    it("points a link, repoints it atomically, and replaces a file only with force", function()
      local res = play('symlink { "{dir}/current", to = "/releases/1" }\n')
      assert.equals(0, res.code, res.stdout)
      assert.equals("/releases/1", fs.readlink(dir .. "/current"))
      assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(play('symlink { "{dir}/current", to = "/releases/1" }\n')))
      play('symlink { "{dir}/current", to = "/releases/2" }\n')
      assert.equals("/releases/2", fs.readlink(dir .. "/current"))
      support.write(dir .. "/plain", "file")
      res = play('symlink { "{dir}/plain", to = "/x" }\n')
      assert.equals(1, res.code)
      assert.matches("set force = true", res.stdout, 1, true)
      res = play('symlink { "{dir}/plain", to = "/x", force = true }\n')
      assert.equals(0, res.code, res.stdout)
      assert.equals("/x", fs.readlink(dir .. "/plain"))
    end)
  end)

  describe("absent", function()
    it("removes a tree, and a link without following it", function()
      assert(fs.mkdir(dir .. "/tree/deep"))
      support.write(dir .. "/tree/deep/f", "x")
      assert(fs.mkdir(dir .. "/keep"))
      support.write(dir .. "/keep/f", "x")
      assert(fs.symlink(dir .. "/keep", dir .. "/link"))
      local res = play('absent { "{dir}/tree" }\nabsent { "{dir}/link" }\n')
      assert.equals(0, res.code, res.stdout)
      assert.is_nil(fs.stat(dir .. "/tree"))
      assert.is_nil(fs.lstat(dir .. "/link"))
      assert.equals("x", support.read(dir .. "/keep/f"))
      assert.equals("ok=2  changed=0  failed=0  skipped=0", recap(play('absent { "{dir}/tree" }\nabsent { "{dir}/link" }\n')))
    end)
  end)

  describe("command", function()
    it("honours creates, removes, unless and onlyif", function()
      local body = [[
command { "echo x >> {dir}/log; touch {dir}/made", creates = "{dir}/made" }
command { "echo removes >> {dir}/log", removes = "{dir}/nothing-here" }
command { "echo unless >> {dir}/log", unless = "true" }
command { "echo onlyif >> {dir}/log", onlyif = "false" }
]]
      local res = play(body)
      assert.equals(0, res.code, res.stdout)
      assert.equals("ok=3  changed=1  failed=0  skipped=0", recap(res))
      assert.equals("ok=4  changed=0  failed=0  skipped=0", recap(play(body)))
      assert.equals("x\n", support.read(dir .. "/log"))
    end)

    it("returns its output, takes env and cwd, and fails with stderr", function()
      local res = play([[
local r = command { "echo $GREETING from $(pwd)", env = { GREETING = "hi" }, cwd = "{dir}" }
log("got: " .. r.stdout)
command { { "sh", "-c", "echo broken >&2; exit 3" } }
]])
      assert.equals(1, res.code)
      assert.matches("got: hi from " .. dir, res.stdout, 1, true)
      assert.matches("command failed (exit code 3)", res.stdout, 1, true)
      assert.matches("broken", res.stdout, 1, true)
    end)

    it("kills a command that runs past its timeout", function()
      local res = play('command { "sleep 30", timeout = 0.3 }\n')
      assert.equals(1, res.code)
      assert.matches("timed out after 0.3 s", res.stdout, 1, true)
    end)
  end)
end)

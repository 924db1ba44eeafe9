-- Every core type honours the same contract: --check changes nothing yet
-- reports the change, a second run changes nothing, --diff shows what a
-- modification would do, and a typo is refused before anything runs.
local support = require("spec.helpers.support")
local fs = require("orch.core.fs")

-- Everything under dir except orch's own state: what --check must not touch.
local function snapshot(dir)
  local seen = {}
  for _, e in ipairs(assert(fs.walk(dir))) do
    if not e.path:match("^state%.db") and e.path ~= "site.lua" then
      local p = dir .. "/" .. e.path
      local st = assert(fs.lstat(p))
      seen[e.path] = table.concat({ e.type, st.mode, st.uid, st.size, tostring(st.mtime),
        e.type == "file" and support.read(p) or "", st.target or "" }, "|")
    end
  end
  return seen
end

-- name, setup(dir), body for version 1 and 2 ($D is the temp dir, $V the version)
local cases = {
  { "file", nil, 'file { "$D/f", content = "v$V\\n", mode = "0640" }' },
  { "template", function(dir)
      assert(fs.mkdir(dir .. "/templates"))
      support.write(dir .. "/templates/t.tmpl", "version {{ v }}\n{% for i = 1, v do %}line {{ i }}\n{% end %}")
    end, 'template { "$D/t", src = "t.tmpl", vars = { v = $V } }' },
  { "directory", nil, 'directory { "$D/d$V/sub", mode = "0750" }' },
  { "line", function(dir) support.write(dir .. "/l", "a = 1\nmax = 10\n") end,
    'line { "$D/l", line = "max = $V00", match = "^max" }' },
  { "block", function(dir) support.write(dir .. "/b", "top\n") end,
    'block { "$D/b", block = "x = $V\\ny = $V\\n" }' },
  { "env_file", nil, 'env_file { "$D/e", vars = { A = "$V", B = "b c" } }' },
  { "symlink", nil, 'symlink { "$D/s", to = "/releases/$V" }' },
  { "absent", function(dir)
      assert(fs.mkdir(dir .. "/gone1/x")); assert(fs.mkdir(dir .. "/gone2"))
    end, 'absent { "$D/gone$V" }' },
  { "command", nil, 'command { "echo $V > $D/c$V", creates = "$D/c$V" }' },
  { "systemd_unit", nil, 'systemd_unit { "app.service", dir = "$D", content = "[Unit]\\nDescription=v$V\\n" }' },
}

describe("every core type", function()
  for _, case in ipairs(cases) do
    local name, setup, template = case[1], case[2], case[3]
    it(name .. ": check, apply, unchanged, diff, typo", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      if setup then setup(dir) end
      local function body(v) return (template:gsub("%$V", tostring(v))) .. "\n" end

      local before = snapshot(dir)
      local res = support.play(dir, body(1), "--check")
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("changed  local    " .. name, res.stdout, 1, true)
      assert.same(before, snapshot(dir))

      res = support.play(dir, body(1))
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.equals("ok=0  changed=1  failed=0  skipped=0", support.recap(res))
      res = support.play(dir, body(1))
      assert.equals("ok=1  changed=0  failed=0  skipped=0", support.recap(res))

      before = snapshot(dir)
      res = support.play(dir, body(2), "--check", "--diff")
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("\n      [^\n]*%S", res.stdout)   -- an indented diff or attribute line
      assert.same(before, snapshot(dir))
      res = support.play(dir, body(2))
      assert.equals("ok=0  changed=1  failed=0  skipped=0", support.recap(res))

      res = support.play(dir, (body(1):gsub(" }\n$", ", bogus = 1 }\n")))
      assert.equals(2, res.code)
      assert.matches("site.lua:1: " .. name .. ": unknown attribute 'bogus'", res.stderr, 1, true)
    end)
  end
end)

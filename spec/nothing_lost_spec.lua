local support = require("spec.helpers.support")
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

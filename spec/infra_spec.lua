local support = require("spec.helpers.support")
local json = require("cjson")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local state = require("orch.state")

describe("orch plan / apply / destroy (#6)", function()
  local dir, objects
  before_each(function()
    dir = support.tmpdir()
    objects = dir .. "/objects"
    assert(fs.mkdir(objects, "0755"))
  end)
  after_each(function() support.remove_tree(dir) end)

  local function env(extra)
    local e = { TOY_OBJECTS = objects, ORCH_PROVIDERS_PATH = support.root .. "/spec/fixtures/providers" }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  -- orch CMD dir/infra.lua ARGS..., with body written there first ($D is dir)
  local function orch(cmd, body, ...)
    if body then support.write(dir .. "/infra.lua", (body:gsub("%$D", function() return dir end))) end
    local args = { cmd, dir .. "/infra.lua", ... }
    local opts = type(args[#args]) == "table" and table.remove(args) or {}
    opts.env = env(opts.env)
    args[#args + 1] = opts
    return support.orch(table.unpack(args))
  end

  local function object(name)
    local text = fs.read(objects .. "/" .. name .. ".json")
    return text and json.decode(text)
  end

  -- the addresses an apply --json finished, in order
  local function applied_in_order(res)
    local order = {}
    for line in res.stdout:gmatch("[^\n]+") do
      local ok, ev = pcall(json.decode, line)
      if ok and ev.event == "infra" then order[#order + 1] = ev.address end
    end
    return order
  end

  local function state_list()
    return support.orch("state", "list", "-f", dir .. "/infra.lua", { env = env() }).stdout
  end

  it("plans create, update, replace, destroy, nothing and drift", function()
    local base = [[
resource "toy.thing" "keep"    { name = "keep" }
resource "toy.thing" "grow"    { name = "grow", size = 1 }
resource "toy.thing" "rename"  { name = "old" }
resource "toy.thing" "doomed"  { name = "doomed" }
resource "toy.thing" "drifty"  { name = "drifty", size = 5 }
]]
    assert.equals(0, orch("apply", base, "--auto-approve").code)
    -- someone changes drifty by hand
    local d = object("drifty"); d.size = 9
    support.write(objects .. "/drifty.json", json.encode(d))
    local cases = {
      { "keep", nil },
      { "grow", '~ toy.thing.grow  will be updated in place\n      ~ size: 1 -> 2' },
      { "rename", '-/+ toy.thing.rename  must be replaced (name forces replacement)' },
      { "rename", '      ~ name: "old" -> "new"  (forces replacement)\n' },
      { "doomed", "- toy.thing.doomed  will be destroyed" },
      { "drifty", '! toy.thing.drifty changed outside orch:\n      size: 5 -> 9\n  ~ toy.thing.drifty  will be updated in place\n      ~ size: 9 -> 5' },
      { "added", '+ toy.thing.added  will be created\n      + fail = false\n      + id = (known after apply)\n      + name = "added"' },
    }
    local res = orch("plan", [[
resource "toy.thing" "keep"    { name = "keep" }
resource "toy.thing" "grow"    { name = "grow", size = 2 }
resource "toy.thing" "rename"  { name = "new" }
resource "toy.thing" "drifty"  { name = "drifty", size = 5 }
resource "toy.thing" "added"   { name = "added" }
]], "--detailed-exitcode")
    assert.equals(2, res.code, res.stderr)
    for _, c in ipairs(cases) do
      if c[2] then assert.matches(c[2], res.stdout, 1, true)
      else assert.not_matches("toy.thing." .. c[1], res.stdout, 1, true) end
    end
    assert.matches("Plan: 2 to add, 2 to change, 2 to destroy.", res.stdout, 1, true)
    -- nothing was touched by planning
    assert.equals(9, object("drifty").size)
    assert.truthy(object("doomed"))
  end)

  it("orders by references and shows what is known only after apply", function()
    local body = [[
local a = resource "toy.thing" "a" { name = "a" }
resource "toy.thing" "b" { name = "b", peer = "peer of " .. a.id }
output "b_peer" { value = "b sees " .. a.id }
]]
    local res = orch("plan", body)
    assert.matches('+ peer = (known after apply)', res.stdout, 1, true)
    res = orch("apply", nil, "--auto-approve", "--json")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local order = applied_in_order(res)
    assert.same({ "toy.thing.a", "toy.thing.b" }, order)
    assert.equals("peer of id-a", object("b").peer)
    local out = support.orch("output", "b_peer", "-f", dir .. "/infra.lua", { env = env() })
    assert.equals("b sees id-a\n", out.stdout)
    assert.equals(0, orch("plan", nil, "--detailed-exitcode").code)
  end)

  it("adds and removes for_each instances by key", function()
    assert.equals(0, orch("apply", [[resource "toy.thing" "t" { for_each = { "x", "y" }, name = "t-" .. each.key }]],
      "--auto-approve").code)
    assert.equals('toy.thing.t["x"]\ntoy.thing.t["y"]\n', state_list())
    local res = orch("apply", [[resource "toy.thing" "t" { for_each = { y = 2, z = 3 }, name = "t-" .. each.key,
      size = each.value }]], "--auto-approve")
    assert.equals(0, res.code, res.stdout)
    assert.equals('toy.thing.t["y"]\ntoy.thing.t["z"]\n', state_list())
    assert.is_nil(object("t-x"))
    assert.equals(3, object("t-z").size)
  end)

  it("names an object by the block's label when the type's name is left out", function()
    local res = orch("apply", [[
resource "toy.thing" "solo" { size = 2 }
resource "toy.thing" "many" { for_each = { "x" } }
resource "toy.thing" "named" { name = "given" }]], "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(2, object("solo").size)
    assert.is_table(object("many-x"))
    assert.is_table(object("given"))
    assert.is_nil(object("named"))
  end)

  it("takes variables from -var, -var-file, ORCH_VAR_ and defaults; keeps outputs", function()
    support.write(dir .. "/vars.yaml", "size: 7\n")
    local body = [[
variable "prefix" { default = "p" }
variable "size" { type = "number" }
variable "suffix" {}
local t = resource "toy.thing" "t" { name = var.prefix .. "-" .. var.suffix, size = var.size }
output "name" { value = t.name }
output "id" { value = t.id }
]]
    local res = orch("apply", body, "--auto-approve", "-var-file", dir .. "/vars.yaml", { env = { ORCH_VAR_suffix = "s" } })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(7, object("p-s").size)
    local out = support.orch("output", "--json", "-f", dir .. "/infra.lua", { env = env() })
    assert.same({ name = { value = "p-s", sensitive = false }, id = { value = "id-p-s", sensitive = false } },
      json.decode(out.stdout))
    res = orch("plan", body, "-var", "prefix=q", { env = { ORCH_VAR_suffix = "s" } })
    assert.equals(2, res.code)
    assert.matches("infra.lua:2: variable 'size' has no value: set it with -var size=VALUE", res.stderr, 1, true)
  end)

  it("takes Terraform's .tfvars and single-dash flags, and records outputs on an apply that changes nothing else", function()
    support.write(dir .. "/prod.tfvars", '# prod\ngreeting = "hi"\ncount = 3\n// lists as JSON writes them\nzones = ["a", "b"]\n')
    local body = [[
variable "greeting" { default = "x" }
variable "count" { type = "number" }
variable "zones" { default = {} }
output "g" { value = var.greeting .. var.count .. table.concat(var.zones) }
]]
    local res = orch("apply", body, "--auto-approve", "-var-file", dir .. "/prod.tfvars")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches('g = "hi3ab"', res.stdout, 1, true)
    local function serial()
      local st = assert(state.open(dir .. "/.orch/state.db"))
      local n = st.db:value("SELECT serial FROM infra_workspaces")
      st:close()
      return n
    end
    local before = serial()
    assert.equals(0, orch("apply", nil, "--auto-approve", "-var-file", dir .. "/prod.tfvars").code)
    assert.equals(before, serial())   -- the same outputs: state untouched
    res = orch("apply", nil, "-auto-approve", "-var-file=" .. dir .. "/prod.tfvars", "-var=greeting=yo", "-parallelism=2")
    assert.matches('g = "yo3ab"', res.stdout, 1, true)
    assert.matches('g = "yo3ab"', support.orch("output", "-f", dir .. "/infra.lua", { env = env() }).stdout, 1, true)
    support.write(dir .. "/bad.tfvars", 'greeting = "hi"\ntags = { a = 1 }\n')
    res = orch("plan", nil, "-var-file", dir .. "/bad.tfvars")
    assert.equals(2, res.code)
    assert.matches("unknown option '-auto-aprove'", orch("apply", nil, "-auto-aprove").stderr, 1, true)
    assert.matches("bad.tfvars:2: tags: the value must be a string, number, boolean or list on one line", res.stderr, 1, true)
  end)

  it("applies a saved plan exactly, and refuses one made against older state", function()
    local body = [[resource "toy.thing" "a" { name = "a", size = 4 }]]
    assert.equals(0, orch("plan", body, "-out", dir .. "/a.plan").code)
    assert.equals("600", require("orch.proc").run({ "stat", "-c", "%a", dir .. "/a.plan" }).stdout:match("%d+"))
    -- the file changes after the plan: apply does what was planned
    support.write(dir .. "/infra.lua", [[resource "toy.thing" "a" { name = "a", size = 9 }]])
    local res = support.orch("apply", dir .. "/a.plan", { env = env() })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(4, object("a").size)
    assert.equals(0, orch("apply", [[resource "toy.thing" "a" { name = "a" }]], "--auto-approve").code)
    -- a plan made before a change elsewhere is stale
    assert.equals(0, orch("plan", [[resource "toy.thing" "a" { name = "a", size = 2 }]], "-out", dir .. "/b.plan").code)
    assert.equals(0, orch("apply", [[resource "toy.thing" "a" { name = "a", size = 3 }]], "--auto-approve").code)
    res = support.orch("apply", dir .. "/b.plan", { env = env() })
    assert.equals(1, res.code)
    assert.matches("b.plan is stale: it was made against state serial %d+ %(lineage [%x%-]+%), and the state is now serial %d+", res.stderr)
    assert.equals(3, object("a").size)
    -- a saved plan to destroy
    assert.equals(0, orch("plan", nil, "--destroy", "-out", dir .. "/d.plan").code)
    res = support.orch("apply", dir .. "/d.plan", { env = env() })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.is_nil(object("a"))
    assert.equals("", state_list())
  end)

  it("keeps going past a failed resource, skips what needs it, and converges on the next apply", function()
    local body = [[
local bad = resource "toy.thing" "bad" { name = "bad", fail = %s }
resource "toy.thing" "after_bad" { name = "after_bad", peer = bad.id }
resource "toy.thing" "fine" { name = "fine" }
]]
    local res = orch("apply", body:format("true"), "--auto-approve")
    assert.equals(1, res.code)
    assert.matches("failed toy.thing.bad: toy bad: refused to apply (fail = true)", res.stdout, 1, true)
    assert.matches("skipped toy.thing.after_bad: toy.thing.bad did not apply", res.stdout, 1, true)
    assert.equals("toy.thing.fine\n", state_list())   -- exactly what was done
    res = orch("apply", body:format("false"), "--auto-approve")
    assert.equals(0, res.code, res.stdout)
    assert.equals("toy.thing.after_bad\ntoy.thing.bad\ntoy.thing.fine\n", state_list())
    assert.matches("Apply complete: 2 added, 0 changed, 0 destroyed.", res.stdout, 1, true)
  end)

  it("survives kill -9 mid-apply: the store opens cleanly, the dead lock is taken over, apply converges", function()
    local body = [[
resource "toy.thing" "quick" { name = "quick" }
resource "toy.thing" "slow" { name = "slow", slow = 30 }
]]
    support.write(dir .. "/infra.lua", body)
    local p = proc.spawn({ argv = { support.bin, "apply", dir .. "/infra.lua", "--auto-approve" }, env = env() })
    finally(function() p:close() end)
    support.eventually(function() return object("quick") end, "quick made")
    support.eventually(function() return state_list():find("toy.thing.quick", 1, true) end, "quick in state")
    assert(p:kill("KILL"))
    p:wait()
    local store = assert(state.open(dir .. "/.orch/state.db"))
    assert.equals("ok", store.db:value("PRAGMA integrity_check"))
    store:close()
    local res = orch("apply", [[
resource "toy.thing" "quick" { name = "quick" }
resource "toy.thing" "slow" { name = "slow" }
]], "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("taking over the lock of a process that died", res.stderr, 1, true)
    assert.equals("toy.thing.quick\ntoy.thing.slow\n", state_list())
  end)

  it("lets one apply at a time: the second waits, then fails naming the holder", function()
    support.write(dir .. "/infra.lua", [[resource "toy.thing" "slow" { name = "slow", slow = 3 }]])
    local p = proc.spawn({ argv = { support.bin, "apply", dir .. "/infra.lua", "--auto-approve" }, env = env() })
    finally(function() p:kill("KILL"); p:close() end)
    support.eventually(function()
      local store = state.open(dir .. "/.orch/state.db")
      local n = store and store.db:value("SELECT COUNT(*) FROM infra_locks")
      if store then store:close() end
      return n == 1
    end, "locked")
    local res = orch("apply", nil, "--auto-approve", "--lock-timeout", "0.5")
    assert.equals(1, res.code)
    assert.matches("workspace default is locked by lock ", res.stderr, 1, true)
    assert.matches((": pid %d on "):format(p:pid()), res.stderr, 1, true)
    assert.matches("`orch apply " .. dir .. "/infra.lua`", res.stderr, 1, true)
    assert.matches("gave up after 0.5 s (orch state unlock ", res.stderr, 1, true)
  end)

  it("destroys dependants first, and refuses what has prevent_destroy", function()
    local body = [[
local a = resource "toy.thing" "a" { name = "a" }
resource "toy.thing" "b" { name = "b", peer = a.id }
]]
    assert.equals(0, orch("apply", body, "--auto-approve").code)
    local res = orch("destroy", nil, "--auto-approve", "--json")
    assert.equals(0, res.code, res.stdout)
    local order = applied_in_order(res)
    assert.same({ "toy.thing.b", "toy.thing.a" }, order)
    assert.equals("", state_list())
    assert.equals(0, orch("apply", [[resource "toy.thing" "p" { name = "p", lifecycle = { prevent_destroy = true } }]],
      "--auto-approve").code)
    res = orch("destroy", nil, "--auto-approve")
    assert.equals(1, res.code)
    assert.matches("toy.thing.p has lifecycle.prevent_destroy", res.stderr, 1, true)
    assert.truthy(object("p"))
  end)

  it("reports mistakes before anything runs, with file:line", function()
    local cases = {
      { 'resource "toy.thingy" "x" { name = "x" }', "infra.lua:1: no resource type 'toy.thingy'" },
      { 'resource "toy.thing" "x" { name = "x", sise = 2 }', "infra.lua:1: toy.thing.x: unknown attribute 'sise' (did you mean 'size'?)" },
      { 'resource "toy.thing" "x" { name = "x", id = "mine" }', "'id' is computed by the provider, it can't be set" },
      { 'resource "toy.thing" "x" { name = "x", depends_on = { "toy.thing.nope" } }', "infra.lua:1: toy.thing.x refers to toy.thing.nope, which is not declared" },
      { 'resource "toy.thing" "a" { name = "a", depends_on = { "toy.thing.b" } }\nresource "toy.thing" "b" { name = "b", depends_on = { "toy.thing.a" } }',
        "resources form a cycle: toy.thing.a -> toy.thing.b -> toy.thing.a" },
      { 'resource "toy.thing" "x" { size = "big" }', "infra.lua:1: toy.thing.x: toy.thing \"x\": attribute 'size' must be number, got string \"big\"" },
    }
    for _, c in ipairs(cases) do
      local res = orch("plan", c[1])
      assert.equals(2, res.code, c[1])
      assert.matches(c[2], res.stderr, 1, true)
    end
    assert.same({}, fs.list(objects))
  end)

  it("asks before applying, and refuses without a terminal unless --auto-approve", function()
    local res = orch("apply", [[resource "toy.thing" "a" { name = "a" }]], { stdin = "yes\n" })
    assert.equals(1, res.code)
    assert.matches("needs confirmation and there is no terminal to ask on: pass --auto-approve", res.stderr, 1, true)
    assert.is_nil(object("a"))
    -- on a terminal (script(1) gives it one): anything but yes cancels
    local function on_tty(cmd, answer)
      return proc.run({ "script", "-qec", ("%s %s %s/infra.lua"):format(support.bin, cmd, dir), "/dev/null" },
        { stdin = answer, env = env({ NO_COLOR = "1" }) })
    end
    res = on_tty("apply", "no\n")
    assert.matches("Only 'yes' will be accepted: Cancelled: nothing was changed.", res.stdout, 1, true)
    assert.is_nil(object("a"))
    res = on_tty("apply", "yes\n")
    assert.matches("Apply complete: 1 added", res.stdout, 1, true)
    assert.truthy(object("a"))
  end)

  it("never shows a sensitive value: plan, --json, state show", function()
    local body = [[resource "toy.thing" "s" { name = "s", secret = "hunter2-very-secret" }]]
    local res = orch("plan", body)
    assert.matches("+ secret = (sensitive)", res.stdout, 1, true)
    assert.not_matches("hunter2", res.stdout .. res.stderr, 1, true)
    res = orch("plan", nil, "--json")
    assert.not_matches("hunter2", res.stdout, 1, true)
    assert.equals(0, orch("apply", nil, "--auto-approve").code)
    res = support.orch("state", "show", "toy.thing.s", "-f", dir .. "/infra.lua", { env = env() })
    assert.matches('secret           = (sensitive)', res.stdout, 1, true)
    assert.not_matches("hunter2", res.stdout, 1, true)
  end)

  it("moves, forgets and imports state records; unlocks by id", function()
    assert.equals(0, orch("apply", [[resource "toy.thing" "a" { name = "a" }]], "--auto-approve").code)
    local function state_cmd(sub, arg)
      return support.orch("state", sub, arg, "-f", dir .. "/infra.lua", { env = env() })
    end
    assert.equals(0, support.orch("state", "mv", "toy.thing.a", "toy.thing.b", "-f", dir .. "/infra.lua", { env = env() }).code)
    assert.equals("toy.thing.b\n", state_list())
    assert.equals(0, state_cmd("rm", "toy.thing.b").code)
    assert.equals("", state_list())
    assert.truthy(object("a"))   -- forgotten, not destroyed
    local res = support.orch("import", "toy.thing.a", "a", "-f", dir .. "/infra.lua", { env = env() })
    assert.equals(0, res.code, res.stderr)
    assert.equals("toy.thing.a\n", state_list())
    assert.equals(0, orch("plan", nil, "--detailed-exitcode").code)
    res = state_cmd("unlock", "nope")
    assert.equals(1, res.code)
    assert.matches("workspace default has no lock nope", res.stderr, 1, true)
  end)

  it("manages orch's own types as resources: created, unchanged on re-plan, destroyed", function()
    support.write(dir .. "/t.tmpl", "hello {{ who }}\n")
    local body = [[
local d = resource "directory" "app" { path = "$D/app", mode = "0750" }
resource "symlink" "cur" { path = "$D/current", to = d.path }
resource "template" "t" { path = d.path .. "/t.txt", src = "t.tmpl", vars = { who = "world" } }
resource "file" "f" { path = d.path .. "/f", content = "x\n", mode = "0600" }
resource "command" "c" { cmd = "touch $D/app/marker", creates = "$D/app/marker" }
]]
    local res = orch("apply", body, "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("hello world\n", support.read(dir .. "/app/t.txt"))
    assert.equals(dir .. "/app", fs.readlink(dir .. "/current"))
    assert.equals(tonumber("750", 8), fs.stat(dir .. "/app").mode)
    assert.truthy(fs.stat(dir .. "/app/marker"))
    res = orch("plan", nil, "--detailed-exitcode")
    assert.equals(0, res.code, res.stdout)
    support.write(dir .. "/app/f", "changed\n")
    res = orch("plan", nil, "--detailed-exitcode")
    assert.equals(2, res.code)
    assert.matches("! file.f changed outside orch:", res.stdout, 1, true)
    assert.matches("~ file.f  will be updated in place", res.stdout, 1, true)
    res = orch("destroy", nil, "--auto-approve")
    assert.equals(0, res.code, res.stdout)
    assert.matches("Destroy complete: 5 destroyed.", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/app"))
    assert.is_nil(fs.lstat(dir .. "/current"))
  end)

  it("runs the file's plays after apply, on hosts whose attributes come from resources", function()
    local body = [[
local t = resource "toy.thing" "box" { name = "box" }
host(t.name, { connection = "local", roles = { "boxes" }, vars = { id = t.id } })
play "configure" { on = "role:boxes", function(h)
  file { "$D/configured", content = h.name .. " has " .. h.vars.id .. "\n" }
end }
]]
    local res = orch("plan", body)
    assert.matches('then: play "configure" on role:boxes (after apply)', res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/configured"))
    res = orch("apply", nil, "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("box has id-box\n", support.read(dir .. "/configured"))
    assert.matches("box +ok=0  changed=1  failed=0", res.stdout)
    res = orch("apply", nil, "--auto-approve")   -- no infrastructure change: the play still converges
    assert.matches("box +ok=1  changed=0  failed=0", res.stdout)
  end)

  it("honours lifecycle: ignore_changes, create_before_destroy; and keeps workspaces apart", function()
    assert.equals(0, orch("apply", [[resource "toy.thing" "t" { name = "one", size = 1,
      lifecycle = { ignore_changes = { "size" }, create_before_destroy = true } }]], "--auto-approve").code)
    local res = orch("plan", [[resource "toy.thing" "t" { name = "one", size = 5,
      lifecycle = { ignore_changes = { "size" }, create_before_destroy = true } }]], "--detailed-exitcode")
    assert.equals(0, res.code, res.stdout)
    res = orch("apply", [[resource "toy.thing" "t" { name = "two",
      lifecycle = { ignore_changes = { "size" }, create_before_destroy = true } }]], "--auto-approve", "--json")
    assert.equals(0, res.code, res.stdout)
    local logs = {}
    for line in res.stdout:gmatch("[^\n]+") do
      local ok, ev = pcall(json.decode, line)
      if ok and ev.event == "log" then logs[#logs + 1] = ev.message end
    end
    assert.same({ "made two", "deleted one" }, logs)   -- the new one first
    -- another workspace has a state of its own
    res = orch("plan", nil, "--workspace", "staging", "--detailed-exitcode")
    assert.equals(2, res.code)
    assert.matches("+ toy.thing.t  will be created", res.stdout, 1, true)
  end)
end)

local support = require("spec.helpers.support")
local leaks = require("spec.helpers.leaks")
local json = require("cjson")
local fs = require("orch.core.fs")

-- Issue 11: a sensitive value is hidden wherever it goes: into tables,
-- strings made with .., references between resources, outputs; nothing
-- orch prints or stores holds it in any common encoding.
describe("secrets in infrastructure (#11)", function()
  local dir, objects
  before_each(function()
    dir = support.tmpdir()
    objects = dir .. "/objects"
    assert(fs.mkdir(objects, "0755"))
  end)
  after_each(function() support.remove_tree(dir) end)

  local PW, TOKEN = "hunter2-pa55/w@rd", "tok-XYZZY+123=="
  local SECRETS = { PW, TOKEN }

  local function env(extra)
    local e = { TOY_OBJECTS = objects, ORCH_PROVIDERS_PATH = support.root .. "/spec/fixtures/providers",
      ORCH_VAR_pw = PW }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local said = {}   -- every byte orch printed in this spec
  local function orch(...)
    local args = { ... }
    local opts = type(args[#args]) == "table" and table.remove(args) or {}
    opts.env = env(opts.env)
    args[#args + 1] = opts
    local res = support.orch(table.unpack(args))
    said[#said + 1] = res.stdout .. res.stderr
    return res
  end

  local function write(body)
    support.write(dir .. "/infra.lua", (body:gsub("%$D", function() return dir end)))
    return dir .. "/infra.lua"
  end

  -- nothing printed, and no file orch keeps, holds a secret (the objects
  -- it was told to make hold them, and the playbook itself names one)
  local function assert_no_leak(skip)
    local form = leaks.in_text(table.concat(said, "\n"), SECRETS)
    assert.is_nil(form, "printed: " .. tostring(form))
    skip = skip or {}
    skip[dir .. "/infra.lua"] = true
    for _, e in ipairs(assert(fs.walk(objects))) do skip[objects .. "/" .. e.path] = true end
    assert.same({}, leaks.in_tree(dir, SECRETS, skip))
  end

  local BODY = [[
variable "pw" { sensitive = true }
local token = secret("]] .. TOKEN .. [[")
local db = resource "toy.vault" "db" { name = "db", password = var.pw }
resource "env_file" "app" { path = "$D/app.env",
  vars = { DATABASE_URL = db.url, TOKEN = token, MODE = "prod", GREETING = "pw is " .. var.pw } }
resource "command" "hello" { cmd = "echo calling with " .. token, env = { TOKEN = token }, creates = "$D/never" }
resource "toy.thing" "t" { name = "t", peer = "x" .. db.url }
output "url" { value = db.url, sensitive = true }
output "mode" { value = "prod" }
]]

  it("plans, applies, shows state and outputs without a secret in any form", function()
    local file = write(BODY)
    local res = orch("plan", file)
    assert.equals(0, res.code, res.stderr)
    assert.matches("+ vars = (sensitive)", res.stdout, 1, true)
    assert.matches("+ cmd = (sensitive)", res.stdout, 1, true)
    assert.matches("+ env = (sensitive)", res.stdout, 1, true)
    assert.matches("+ peer = (known after apply)", res.stdout, 1, true)
    res = orch("plan", file, "--json")
    assert.equals(0, res.code, res.stderr)
    res = orch("plan", file, "-out", dir .. "/p.plan")
    assert.equals(0, res.code, res.stderr)
    res = orch("apply", dir .. "/p.plan", "--json")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    -- what the objects got is the real value
    local envfile = support.read(dir .. "/app.env")
    assert.matches("postgresql://app:" .. PW:gsub("%p", "%%%0") .. "@db.example", envfile)
    assert.matches(TOKEN, envfile, 1, true)
    assert.equals("x" .. json.decode(support.read(objects .. "/db.json")).url,
      json.decode(support.read(objects .. "/t.json")).peer)

    -- every view of state hides them, and state knows which are sensitive
    for _, addr in ipairs({ "env_file.app", "command.hello", "toy.vault.db", "toy.thing.t" }) do
      res = orch("state", "show", addr, "-f", file)
      assert.equals(0, res.code, res.stderr)
      res = orch("state", "show", addr, "-f", file, "--json")
      assert.equals(0, res.code, res.stderr)
    end
    local shown = json.decode(orch("state", "show", "command.hello", "-f", file, "--json").stdout)
    assert.equals("(sensitive)", shown.attrs.cmd)
    assert.equals("(sensitive)", shown.attrs.stdout)   -- it echoed the token
    shown = json.decode(orch("state", "show", "toy.thing.t", "-f", file, "--json").stdout)
    assert.equals("(sensitive)", shown.attrs.peer)
    res = orch("output", "-f", file)
    assert.matches("url = (sensitive)", res.stdout, 1, true)
    assert.matches('mode = "prod"', res.stdout, 1, true)
    orch("output", "-f", file, "--json")
    res = orch("output", "url", "-f", file)
    assert.equals("(sensitive)\n", res.stdout)
    assert.matches("--reveal", res.stderr, 1, true)

    -- a second plan reads the sealed values back: nothing to change but
    -- the unguarded command
    res = orch("plan", file)
    assert.equals(0, res.code, res.stderr)
    assert.matches("Plan: 0 to add, 1 to change, 0 to destroy.", res.stdout, 1, true)
    assert.matches("~ command.hello", res.stdout, 1, true)
    assert_no_leak({ [dir .. "/app.env"] = true })

    -- the env file holds secrets: it was made for its owner only
    assert.equals("0600", ("%04o"):format(fs.stat(dir .. "/app.env").mode & 4095))
    -- asked by name with --reveal, a sensitive output is printed
    res = support.orch("output", "url", "-f", file, "--reveal", { env = env() })
    assert.matches("^postgresql://app:", res.stdout)
  end)

  it("refuses an output made from a sensitive value unless it says so", function()
    local file = write([[
variable "pw" { sensitive = true }
local db = resource "toy.vault" "db" { name = "db", password = var.pw }
local t = resource "toy.thing" "t" { name = "t", peer = "via " .. db.url }
output "plain" { value = "pw is " .. var.pw }
]])
    local res = orch("plan", file)
    assert.equals(2, res.code)
    assert.matches("infra.lua:4: output 'plain' shows a sensitive value (from var.pw): declare it sensitive = true",
      res.stderr, 1, true)
    write([[
variable "pw" { sensitive = true }
local db = resource "toy.vault" "db" { name = "db", password = var.pw }
local t = resource "toy.thing" "t" { name = "t", peer = "via " .. db.url }
output "peer" { value = { p = t.peer } }
]])
    res = orch("plan", file)
    assert.equals(2, res.code)
    assert.matches("output 'peer' shows a sensitive value (from toy.vault.db.url)", res.stderr, 1, true)
    assert_no_leak()
  end)

  it("creates the state store and its key for their owner only, wherever they are", function()
    local file = write(BODY)
    local store = dir .. "/elsewhere/team.db"
    assert.equals(0, orch("apply", file, "--auto-approve", "--state", store).code)
    assert.equals("0600", ("%04o"):format(fs.stat(store).mode & 4095))
    assert.equals("0600", ("%04o"):format(fs.stat(store .. ".key").mode & 4095))
    assert_no_leak({ [dir .. "/app.env"] = true })
    -- without its key, the store's sealed values can't be read: said so
    assert(os.rename(store .. ".key", store .. ".key.moved"))
    local res = orch("plan", file, "--state", store)
    assert.equals(1, res.code)
    assert.matches("key " .. store .. ".key is missing", res.stderr, 1, true)
    -- ORCH_STATE_KEY stands in for the file
    local key = support.read(store .. ".key.moved"):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
    res = orch("plan", file, "--state", store, { env = { ORCH_STATE_KEY = key } })
    assert.equals(0, res.code, res.stderr)
  end)

  it("keeps a secret in a command off the command line that ps shows", function()
    local file = write([[
resource "command" "slow" { cmd = "touch $D/started; sleep 3; echo ]] .. TOKEN .. [[ >/dev/null",
  env = { T = secret("]] .. TOKEN .. [[") } }
]])
    local p = assert(require("orch.core.proc").spawn({ argv = { support.bin, "apply", file, "--auto-approve" },
      env = env({ NO_COLOR = "1" }) }))
    support.eventually(function() return fs.stat(dir .. "/started") end, "the command to start")
    assert.same({}, support.processes_with(TOKEN))
    local r = p:wait()
    p:close()
    assert.equals(0, r.code)
  end)

  describe("on a host over SSH", function()
    local sshd = require("spec.helpers.sshd")
    local lab
    lazy_setup(function() if sshd.available() then lab = sshd.start(1) end end)
    lazy_teardown(function() if lab then lab:stop() end end)

    it("keeps a secret in a command or its environment off the command line", function()
      if not lab then pending("needs sshd") return end
      support.write(dir .. "/site.lua", ([[
local token = secret("]] .. TOKEN .. [[")
play "p" { on = "all", function(h)
  local r = h:exec("touch $D/started-remote; sleep 3; printf %s \"$T\" | wc -c; printf '%s\\n' 'a\\b'", { env = { T = token } })
  assert(r.stdout == "]] .. #TOKEN .. [[\na\\b\n", r.stdout)
  r = h:exec("cat", { stdin = "after " .. "the line", env = { T = token } })
  assert(r.stdout == "after the line", r.stdout)
end }
]]):gsub("%$D", dir))
      local p = assert(require("orch.core.proc").spawn({ argv = { support.bin, "play", dir .. "/site.lua",
        "-i", lab:inventory_yaml(), "--state", dir .. "/state.db" }, env = { HOME = lab.home, NO_COLOR = "1" } }))
      support.eventually(function() return fs.stat(dir .. "/started-remote") end, "the remote command to start")
      assert.same({}, support.processes_with(TOKEN))
      local out = {}
      while true do
        local stream, chunk = p:read()
        if not stream then break end
        out[#out + 1] = chunk
      end
      local r = p:wait()
      p:close()
      assert.equals(0, r.code, table.concat(out))
    end)
  end)
end)

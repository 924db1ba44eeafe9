local support = require("spec.helpers.support")

-- Issue 12: a mistake gets exit 2 and a message that says what and where,
-- never a traceback or a path inside orch.
describe("bad input (#12)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function assert_usage_error(res, expected)
    assert.equals(2, res.code, res.stdout .. res.stderr)
    assert.matches(expected, res.stderr, 1, true)
    assert.not_matches("traceback", res.stderr)
    assert.not_matches("internal error", res.stderr)
    assert.not_matches("lua/orch/", res.stderr, 1, true)
    assert.not_matches("%.lua:%d+: in ", res.stderr)
  end

  it("refuses options out of range, naming the option and the value", function()
    support.write(dir .. "/site.lua", "")
    support.write(dir .. "/ci.lua", [[pipeline "p" { stage "s" { sh = "true" } }]])
    local cases = {
      { { "play", dir .. "/site.lua", "--lock-timeout", "-5" }, "option '--lock-timeout' expects a number of seconds of 0 or more, got '-5'" },
      { { "play", dir .. "/site.lua", "--lock-timeout", "inf" }, "got 'inf'" },
      { { "pipeline", "run", "p", "-f", dir .. "/ci.lua", "--jobs", "0" }, "option '--jobs' expects a whole number of 1 or more, got '0'" },
      { { "run", "all", "--forks", "0", "--", "true" }, "option '--forks' expects a whole number of 1 or more" },
      { { "run", "all", "--timeout", "0", "--", "true" }, "option '--timeout' expects a number of seconds above 0" },
      { { "serve", "-f", dir .. "/ci.lua", "--listen", "99999" }, "option '--listen': expects HOST:PORT or PORT (0 to 65535), got '99999'" },
      { { "serve", "-f", dir .. "/ci.lua", "--listen", "web.example:80" }, "expects an IP address, not the name 'web.example'" },
      { { "serve", "-f", dir .. "/ci.lua", "--max-body", "-1" }, "option '--max-body' expects a whole number from 1 to 1073741824, got '-1'" },
      { { "serve", "-f", dir .. "/ci.lua", "--max-body", "1e20" }, "got '1e20'" },
      { { "serve", "-f", dir .. "/ci.lua", "--max-body", "0.5" }, "got '0.5'" },
      { { "apply", dir .. "/site.lua", "--parallelism", "0" }, "option '--parallelism' expects a whole number of 1 or more, got '0'" },
    }
    for _, c in ipairs(cases) do
      local argv = c[1]
      argv[#argv + 1] = { cwd = dir }
      assert_usage_error(support.orch(table.unpack(argv)), c[2])
    end
  end)

  it("reads .tfvars as Terraform does: comments after values, null as unset; refuses what it can't hold", function()
    support.write(dir .. "/infra.lua", [[
variable "a" { default = "default-a" }
variable "b" { default = 1 }
variable "c" { default = {} }
output "all" { value = { a = var.a, b = var.b, c = var.c } }
]])
    support.write(dir .. "/ok.tfvars", 'a = "has # and // inside" # a comment\nb = null // unset\nc = [1, 2] # list\n')
    local res = support.orch("apply", dir .. "/infra.lua", "--auto-approve", "-var-file", dir .. "/ok.tfvars")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    res = support.orch("output", "all", "--json", "-f", dir .. "/infra.lua")
    assert.same({ a = "has # and // inside", b = 1, c = { 1, 2 } }, require("cjson").decode(res.stdout))
    for text, expected in pairs({
      ["b = 1e999\n"] = "bad.tfvars:1: b: the value must be a string, number, boolean or list on one line (number out of range)",
      ["b = NaN\n"] = "bad.tfvars:1: b: the value must be",
      ['a = "x"\n\na = "y"\n'] = "bad.tfvars:3: a is set twice (first at line 1)",
    }) do
      support.write(dir .. "/bad.tfvars", text)
      assert_usage_error(support.orch("plan", dir .. "/infra.lua", "-var-file", dir .. "/bad.tfvars"), expected)
    end
  end)

  it("refuses NaN and Infinity in JSON, which it could not write back", function()
    local res = support.orch("-e", [[
      local json = require("orch.json")
      for _, text in ipairs({ "[NaN]", '{"x": Infinity}', "[1e999]", "[0x10]" }) do
        local ok, err = pcall(json.decode, text)
        io.write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n")
      end]])
    for line in res.stdout:gmatch("[^\n]+") do assert.matches("^false ", line) end
    assert.equals(4, select(2, res.stdout:gsub("\n", "")))
    -- found by make fuzz: a decoding error pointed into orch's json.lua
    res = support.orch("-e", [[local ok, err = pcall(require("orch.json").decode, "{,}"); io.write(err)]])
    assert.matches("invalid JSON: Expected", res.stdout, 1, true)
    assert.not_matches("json.lua", res.stdout, 1, true)
  end)

  it("checks a pipeline file when it loads, with file:line", function()
    for body, expected in pairs({
      ['pipeline "p" { stage "s" { sh = "true", artifacts = true } }'] = "ci.lua:1: stage 's': artifacts must be a string or a list of strings, not boolean",
      ['pipeline "p" { env = 5, stage "s" { sh = "true" } }'] = "ci.lua:1: pipeline 'p': env must be a table of NAME = value, not number",
      ['pipeline "p" { stage "s" { sh = { 1 } } }'] = "ci.lua:1: stage 's': sh must be a list of strings, but item 1 is number",
      ['pipeline "p" { stage "a" { sh = "true" }, stage "s" { sh = "true", needs = { x = "a" } } }'] =
        "ci.lua:1: stage 's': needs must be a list, not a map (it has the key 'x')",
      ['pipeline "../../../x" { stage "s" { sh = "true" } }'] = [[ci.lua:1: pipeline needs a name of letters, digits, '_', '.', '-' (not first), got "../../../x"]],
      ['pipeline "p" { stage "s" { sh = "true", retry = -1 } }'] = "ci.lua:1: stage 's': retry must be a whole number of retries, 0 or more",
      ['pipeline "p" { triggers = { schedule = "0 0 31 2 *" }, stage "s" { sh = "true" } }'] =
        "ci.lua:1: pipeline 'p': cron: bad expression '0 0 31 2 *': no date ever matches it (like 31 February), so it would never fire",
    }) do
      support.write(dir .. "/ci.lua", body)
      assert_usage_error(support.orch("pipeline", "run", "p", "-f", dir .. "/ci.lua"), expected)
      assert.is_nil(require("orch.core.fs").stat(dir .. "/.orch/runs"))   -- nothing ran
    end
  end)

  it("names an undeclared var.NAME with its line, and a failed apply's reason", function()
    support.write(dir .. "/infra.lua", ('variable "a" { default = "x" }\nresource "file" "f" { path = "%s/o.txt", content = var.nope }\n'):format(dir))
    assert_usage_error(support.orch("plan", dir .. "/infra.lua"),
      'infra.lua:2: var.nope is not declared: add variable "nope" { ... } above the line that uses it')
    support.write(dir .. "/infra.lua", ('resource "file" "f" { path = "%s/no/such/dir/o.txt", content = "x" }\n'):format(dir))
    local res = support.orch("apply", dir .. "/infra.lua", "--auto-approve")
    assert.equals(1, res.code)
    assert.matches("no/such/dir/o.txt: No such file or directory", res.stdout, 1, true)
    res = support.orch("apply", dir .. "/infra.lua", "--auto-approve", "--json")
    assert.matches("No such file or directory", res.stdout, 1, true)
  end)

  it("says there is no store for state and output, and makes none", function()
    for _, argv in ipairs({ { "state", "list" }, { "state", "show", "file.f" }, { "output" }, { "output", "x" } }) do
      argv[#argv + 1] = { cwd = dir }
      local res = support.orch(table.unpack(argv))
      assert.equals(1, res.code, res.stdout)
      assert.matches("no state store at ./.orch/state.db: nothing has run there yet", res.stderr, 1, true)
    end
    assert.is_nil(require("orch.core.fs").stat(dir .. "/.orch"))
  end)

  -- orch under a 1 GB address-space limit: a bomb must be refused, not fed
  -- (not under AddressSanitizer, whose shadow memory alone is larger)
  local function orch_limited(...)
    local limit = os.getenv("ASAN_OPTIONS") and "true" or "ulimit -v 1000000"
    local argv = { "sh", "-c", limit .. ' && exec "$@"', "sh", support.bin, ... }
    local res = require("orch.proc").run(argv, { cwd = dir })
    return res
  end

  it("refuses a billion laughs and a huge host range, with file and line, in bounded memory", function()
    local lines = { 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]' }
    for i = 1, 24 do
      lines[#lines + 1] = ("a%d: &a%d [%s]"):format(i, i, ("*a%d,"):rep(10, ""):format(i - 1, i - 1, i - 1,
        i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1):sub(1, -2))
    end
    support.write(dir .. "/bomb.yaml", table.concat(lines, "\n") .. "\n")
    support.write(dir .. "/infra.lua", 'variable "x" { default = 1 }\n')
    assert_usage_error(orch_limited("plan", "infra.lua", "-var-file", "bomb.yaml"),
      "bomb.yaml:6:")
    assert_usage_error(orch_limited("plan", "infra.lua", "-var-file", "bomb.yaml"),
      "aliases expand this document past 1000000 values")
    support.write(dir .. "/inv.yaml", "all:\n  children:\n    web:\n      hosts:\n        web[0:99999999]:\n")
    assert_usage_error(orch_limited("run", "all", "-i", "inv.yaml", "--", "true"),
      "inv.yaml:5: group 'web': bad host range 'web[0:99999999]': it names 100000000 hosts or more, past the 100000 a range may")
  end)

  it("waits for file descriptors instead of failing many commands at once", function()
    support.write(dir .. "/site.lua", [[
local task = require("orch.task")
local ts, ok = {}, 0
for i = 1, 300 do ts[i] = task.spawn(function() sh("sleep 0.05") end) end
for i = 1, 300 do if ts[i]:wait() then ok = ok + 1 end end
log(ok .. " of 300 ran")
]])
    local res = require("orch.proc").run({ "sh", "-c", 'ulimit -n 64 && exec "$@"', "sh", support.bin, "play",
      dir .. "/site.lua", "--state", dir .. "/state.db" })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("300 of 300 ran", res.stdout, 1, true)
    assert.not_matches("task failed", res.stderr, 1, true)
  end)

  it("says what a failed task's error object says", function()
    local res = support.orch("-e", [[
      local task = require("orch.task")
      task.spawn(function() error(setmetatable({}, { __tostring = function() return "a failure that explains itself" end })) end)
      require("orch.core.loop").sleep(0.05)]])
    assert.matches("orch: task failed: a failure that explains itself", res.stderr, 1, true)
  end)

  it("refuses a command timeout of 0 or less in a playbook, naming the line", function()
    support.write(dir .. "/site.lua", 'local h = require("orch.host").localhost()\nh:exec("true", { timeout = 0 })\n')
    local res = support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db")
    assert.are_not.equal(0, res.code)
    assert.matches("site.lua:2: timeout must be a number of seconds above 0, got 0", res.stdout .. res.stderr, 1, true)
  end)
end)
